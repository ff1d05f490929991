"""``GET /scheduler/events``: live events as Server-Sent Events (scheduler_api.events).

In process, a werkzeug test client reads the stream's iterator chunk by chunk (each stream
ends by itself after SCHEDULER_EVENTS_MAX_SECONDS, so no test waits forever); then real
gunicorn servers: a stream on every worker sees the leader's runs, and on PostgreSQL a
stream on one server sees a change made through another.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from apscheduler.triggers.interval import IntervalTrigger

from scheduler_api import events as events_module
from scheduler_api.config import make_engine
from scheduler_api.events import SEND_TIMEOUT_SECONDS, EventLimits
from scheduler_api.history import EVENT_KINDS, RunHistory

from .api_helpers import AUTH, APIClient, event_stream_fields, make_scheduler, running_api
from .conftest import POSTGRES_URL, gunicorn, needs_postgres
from .test_cluster import AUTH as CLUSTER_AUTH
from .test_cluster import api as cluster_api
from .test_cluster import cluster_env, leader_pid
from .test_scheduling_bounds import write_directly

FAR = "2999-01-01T00:00:00+00:00"
#: A job that never runs during a test.
IDLE_JOB = {"id": "idle", "func": "tests.tasks:record", "trigger": "date", "run_date": FAR}
#: Each stream of these tests ends by itself after this long.
STREAM_SECONDS = 30


# -- reading a stream -------------------------------------------------------------------------

def parse_events(text: str) -> list[dict[str, Any]]:
    """The events of a text/event-stream body: id a number, data decoded."""
    return [{"id": int(fields["id"]), "event": fields["event"],
             "data": json.loads(fields["data"])} for fields in event_stream_fields(text)]


class Stream:
    """An event stream read chunk by chunk: from the in-process app, or a real server."""

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], None]) -> None:
        self.chunks = chunks
        self._close = close
        self.text = ""
        self.ended = False

    def read_until(self, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """Events read so far once ``done(events)``, or all of them when the stream ends."""
        while not done(self.events) and not self.ended:
            self.read_chunk()
        return self.events

    def read_chunk(self) -> None:
        try:
            self.text += next(self.chunks).decode()
        except StopIteration:
            self.ended = True

    def read_to_end(self) -> list[dict[str, Any]]:
        return self.read_until(lambda _: False)

    @property
    def events(self) -> list[dict[str, Any]]:
        return parse_events(self.text)

    def kinds(self) -> list[str]:
        return [event["event"] for event in self.events]

    def close(self) -> None:
        self._close()


def seen(kind: str, **data: Any) -> Callable[[list[dict[str, Any]]], bool]:
    """Stop reading once an event of ``kind`` with these data (run fields: ``run_*``)."""
    def done(events: list[dict[str, Any]]) -> bool:
        return any(event["event"] == kind and matches(event["data"], data) for event in events)
    return done


def matches(data: dict[str, Any], wanted: dict[str, Any]) -> bool:
    for key, value in wanted.items():
        if key.startswith("run_"):
            if (data.get("run") or {}).get(key[4:]) != value:
                return False
        elif data.get(key) != value:
            return False
    return True


@contextmanager
def open_stream(client: APIClient, scheduler: Any = None, **kwargs: Any) -> Iterator[Stream]:
    """A stream from the in-process app. With ``scheduler``: once what it recorded so far is
    written (a stream starts at the newest event written; one still queued would come)."""
    if scheduler is not None:
        assert scheduler.recorder.flush()
    response = client.get("/events", buffered=False, **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    stream = Stream(iter(response.response), response.close)
    try:
        yield stream
    finally:
        stream.close()


@pytest.fixture
def api(tmp_path):
    with running_api(tmp_path / "jobs.sqlite",
                     SCHEDULER_EVENTS_MAX_SECONDS=STREAM_SECONDS) as (scheduler, client):
        yield scheduler, client


# -- the format, resuming, limits ---------------------------------------------------------------

def test_a_stream_is_text_event_stream_with_one_block_per_event(api):
    scheduler, client = api
    assert scheduler.recorder.flush()
    response = client.get("/events", buffered=False)
    try:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert "Content-Length" not in response.headers
        chunks = iter(response.response)
        first = next(chunks).decode()
        assert first.startswith("retry: 2000\n")
        assert f"pid {os.getpid()}" in first
        assert client.post("/jobs", json=IDLE_JOB).status_code == 200
        chunk = next(chunks).decode()
        newest = scheduler.history.last_event()
        assert chunk == f'id: {newest}\nevent: job_added\ndata: {{"job_id": "idle"}}\n\n'
    finally:
        response.close()


def test_without_last_event_id_only_new_events_come(api):
    scheduler, client = api
    assert client.post("/jobs", json={**IDLE_JOB, "id": "before"}).status_code == 200
    with open_stream(client, scheduler) as stream:
        assert client.post("/jobs", json={**IDLE_JOB, "id": "after"}).status_code == 200
        events = stream.read_until(seen("job_added", job_id="after"))
    assert [(event["event"], event["data"]) for event in events] == [
        ("job_added", {"job_id": "after"})]


def make_history(client: APIClient) -> None:
    """Seven job events: three added, one changed, one paused, one resumed, one removed."""
    for index in range(3):
        assert client.post("/jobs", json={**IDLE_JOB, "id": f"job-{index}"}).status_code == 200
    assert client.patch("/jobs/job-0", json={"name": "renamed"}).status_code == 200
    assert client.post("/jobs/job-1/pause").status_code == 200
    assert client.post("/jobs/job-1/resume").status_code == 200
    assert client.delete("/jobs/job-2").status_code == 204


RESUME_FROM = {
    "header": ({"headers": {"Last-Event-ID": "{id}"}}, ""),
    "query": ({}, "?last_event_id={id}"),
    "header-wins-over-query": ({"headers": {"Last-Event-ID": "{id}"}}, "?last_event_id=1"),
}


@pytest.mark.parametrize(("kwargs", "query"), RESUME_FROM.values(), ids=RESUME_FROM.keys())
@pytest.mark.parametrize("read_limit", [100, 2], ids=["one-read", "reads-of-two"])
def test_last_event_id_replays_the_events_after_it(api, monkeypatch, kwargs, query,
                                                   read_limit):
    scheduler, client = api
    monkeypatch.setattr(events_module, "READ_LIMIT", read_limit)
    make_history(client)
    assert scheduler.recorder.flush()
    everything = scheduler.history.events_after(0, 1000)
    after = next(seq for seq, kind, data in everything
                 if kind == "job_added" and json.loads(data) == {"job_id": "job-0"})
    kwargs = json.loads(json.dumps(kwargs).replace("{id}", str(after)))
    response = client.get("/events" + query.replace("{id}", str(after)), buffered=False,
                          **kwargs)
    stream = Stream(iter(response.response), response.close)
    try:
        events = stream.read_until(seen("job_removed", job_id="job-2"))
    finally:
        stream.close()
    assert [(event["id"], event["event"], event["data"]) for event in events] == [
        (seq, kind, json.loads(data)) for seq, kind, data in everything if seq > after]
    assert [event["event"] for event in events] == [
        "job_added", "job_added", "job_changed", "job_changed", "job_changed", "job_removed"]


def test_a_stream_resumed_from_the_feeds_recent_events_gets_the_same(api):
    scheduler, client = api
    with open_stream(client, scheduler) as watching:  # the feed now reads each new event
        make_history(client)
        first = watching.read_until(seen("job_removed", job_id="job-2"))
        with open_stream(client, headers={"Last-Event-ID": str(first[0]["id"])}) as resumed:
            again = resumed.read_until(seen("job_removed", job_id="job-2"))
    assert again == first[1:]


def test_a_last_event_id_past_the_newest_starts_from_the_newest(api):
    scheduler, client = api
    with open_stream(client, scheduler, headers={"Last-Event-ID": "999999"}) as stream:
        assert client.post("/jobs", json=IDLE_JOB).status_code == 200
        events = stream.read_until(seen("job_added", job_id="idle"))
    assert [event["event"] for event in events] == ["job_added"]


MALFORMED = {
    "letters": {"headers": {"Last-Event-ID": "abc"}},
    "negative": {"headers": {"Last-Event-ID": "-1"}},
    "fraction": {"headers": {"Last-Event-ID": "1.5"}},
    "exponent": {"headers": {"Last-Event-ID": "1e3"}},
    "arabic-indic-digits": {"headers": {"Last-Event-ID": "\u0661\u0662"}},
    "superscript-digit": {"headers": {"Last-Event-ID": "\u00b2"}},
    "past-64-bits": {"headers": {"Last-Event-ID": "9" * 19}},
    "query-letters": {"query_string": "last_event_id=abc"},
    "unknown-query-parameter": {"query_string": "since=0"},
}


@pytest.mark.parametrize("kwargs", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_last_event_id_is_a_json_400(api, kwargs):
    _, client = api
    response = client.get("/events", **kwargs)
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert set(response.json) == {"error_message"}
    name = "since" if "since" in str(kwargs) else "ast_event_id" if "query" in str(
        kwargs) else "Last-Event-ID"
    assert name in response.json["error_message"]


def test_a_stream_ends_after_its_maximum_duration(tmp_path):
    with running_api(tmp_path / "jobs.sqlite",
                     SCHEDULER_EVENTS_MAX_SECONDS=1) as (scheduler, client):
        with open_stream(client, scheduler) as stream:
            assert client.post("/jobs", json=IDLE_JOB).status_code == 200
            events = stream.read_to_end()
    assert stream.ended
    assert [event["event"] for event in events] == ["job_added"]


def test_a_quiet_stream_sends_keepalive_comments(api, monkeypatch):
    scheduler, client = api
    monkeypatch.setattr(events_module, "KEEPALIVE_SECONDS", 0.2)
    with open_stream(client, scheduler) as stream:
        stream.read_chunk()  # retry: and the greeting
        stream.read_chunk()
    assert stream.text.endswith("\n\n: keepalive\n\n")


def test_streams_beyond_the_cap_are_a_503_until_one_closes(tmp_path):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_EVENTS_MAX_SECONDS=STREAM_SECONDS,
                     SCHEDULER_EVENTS_MAX_STREAMS=2) as (scheduler, client):
        with open_stream(client, scheduler), open_stream(client):
            refused = client.get("/events")
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "5"
            assert "at most 2" in refused.json["error_message"]
            assert client.get("").status_code == 200  # the rest of the API answers
        with open_stream(client, scheduler) as again:
            again.read_chunk()
            assert again.text.startswith("retry:")


def test_a_stream_read_to_its_end_frees_its_place_even_unclosed(tmp_path):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_EVENTS_MAX_SECONDS=1,
                     SCHEDULER_EVENTS_MAX_STREAMS=1) as (_, client):
        response = client.get("/events", buffered=False)
        assert b"".join(response.response).startswith(b"retry:")  # and never closed
        assert client.get("/events").status_code == 200


def test_no_streams_allowed_is_always_a_503(tmp_path):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_EVENTS_MAX_STREAMS=0) as (_, client):
        response = client.get("/events")
    assert (response.status_code, response.mimetype) == (503, "application/json")


def test_head_answers_the_headers_without_a_stream(tmp_path):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_EVENTS_MAX_STREAMS=0) as (_, client):
        response = client.request("HEAD", "/events")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.get_data() == b""


def test_before_the_scheduler_starts_there_are_no_events(tmp_path):
    _, app = make_scheduler(tmp_path / "jobs.sqlite")
    response = APIClient(app).get("/events")
    assert response.status_code == 503  # its tables are created when it starts
    assert response.json["error_message"]


def test_a_client_that_stops_reading_gets_a_send_timeout_on_gunicorns_socket(api):
    _, client = api
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        assert server_side.gettimeout() is None
        with open_stream(client, environ_overrides={"gunicorn.socket": server_side}) as stream:
            stream.read_chunk()
            assert server_side.gettimeout() == SEND_TIMEOUT_SECONDS
        assert server_side.gettimeout() is None  # as gunicorn left it, for the next request


def test_streams_of_one_process_share_one_reader(api, monkeypatch):
    scheduler, client = api
    readers = []
    events_after = scheduler.history.events_after

    def counting(seq: int, limit: int = 100) -> Any:
        readers.append(threading.current_thread().name)
        return events_after(seq, limit)

    monkeypatch.setattr(scheduler.history, "events_after", counting)
    with open_stream(client, scheduler) as first, open_stream(client) as second, \
            open_stream(client) as third:
        assert client.post("/jobs", json=IDLE_JOB).status_code == 200
        for stream in (first, second, third):
            assert stream.read_until(seen("job_added", job_id="idle"))[-1]["data"] == {
                "job_id": "idle"}
    assert readers and set(readers) == {"scheduler_api-events"}


@pytest.mark.parametrize(("setting", "value"), [
    ("SCHEDULER_EVENTS_MAX_SECONDS", 0),
    ("SCHEDULER_EVENTS_MAX_SECONDS", 86_401),
    ("SCHEDULER_EVENTS_MAX_SECONDS", "60"),
    ("SCHEDULER_EVENTS_MAX_SECONDS", True),
    ("SCHEDULER_EVENTS_MAX_STREAMS", -1),
    ("SCHEDULER_EVENTS_MAX_STREAMS", 1.5),
    ("SCHEDULER_EVENTS_MAX_STREAMS", "10"),
    ("SCHEDULER_EVENTS_MAX_STREAM", 10),
], ids=lambda value: str(value))
def test_a_wrong_events_setting_is_an_error_naming_it(tmp_path, setting, value):
    with pytest.raises((TypeError, ValueError), match=setting):
        make_scheduler(tmp_path / "jobs.sqlite", **{setting: value})


def test_the_events_settings_are_read(tmp_path):
    scheduler, _ = make_scheduler(tmp_path / "jobs.sqlite", SCHEDULER_EVENTS_MAX_SECONDS=30,
                                  SCHEDULER_EVENTS_MAX_STREAMS=4)
    assert scheduler.event_limits == EventLimits(max_seconds=30.0, max_streams=4)
    assert make_scheduler(tmp_path / "other.sqlite")[0].event_limits == EventLimits()


# -- what is announced --------------------------------------------------------------------------

def remove_all(scheduler: Any, client: APIClient) -> None:
    scheduler.remove_all_jobs()


JOB_CHANGES: dict[str, tuple[Callable[[Any, APIClient], Any], str, dict[str, Any]]] = {
    "add": (lambda _, client: client.post("/jobs", json={**IDLE_JOB, "id": "new"}),
            "job_added", {"job_id": "new"}),
    "patch": (lambda _, client: client.patch("/jobs/idle", json={"name": "renamed"}),
              "job_changed", {"job_id": "idle"}),
    "pause-job": (lambda _, client: client.post("/jobs/idle/pause"),
                  "job_changed", {"job_id": "idle"}),
    "delete": (lambda _, client: client.delete("/jobs/idle"), "job_removed", {"job_id": "idle"}),
    "remove-all-from-python": (remove_all, "all_jobs_removed", {"job_id": None}),
}


@pytest.mark.parametrize(("change", "kind", "data"), JOB_CHANGES.values(),
                         ids=JOB_CHANGES.keys())
def test_each_change_to_the_jobs_is_one_event(api, change, kind, data):
    scheduler, client = api
    assert client.post("/jobs", json=IDLE_JOB).status_code == 200
    with open_stream(client, scheduler) as stream:
        response = change(scheduler, client)
        assert response is None or response.status_code < 300
        events = stream.read_until(seen(kind))
    assert [(event["event"], event["data"]) for event in events] == [(kind, data)]


def test_resuming_a_paused_job_is_a_change(api):
    scheduler, client = api
    assert client.post("/jobs", json={"id": "idle", "func": "tests.tasks:record",
                                      "trigger": "cron", "hour": 3,
                                      "next_run_time": None}).status_code == 200
    with open_stream(client, scheduler) as stream:
        assert client.post("/jobs/idle/resume").status_code == 200
        events = stream.read_until(seen("job_changed"))
    assert [(event["event"], event["data"]) for event in events] == [
        ("job_changed", {"job_id": "idle"})]


STATE_CHANGES = {
    "pause": (["/pause"], "paused"),
    "resume": (["/pause", "/resume"], "running"),
    "shutdown": (["/shutdown"], "stopped"),
    "start": (["/shutdown", "/start"], "running"),
}


@pytest.mark.parametrize(("actions", "state"), STATE_CHANGES.values(), ids=STATE_CHANGES.keys())
def test_each_change_of_the_schedulers_state_through_the_api_is_an_event(api, actions, state):
    scheduler, client = api
    with open_stream(client, scheduler) as stream:
        for action in actions:
            assert client.post(action).status_code == 204
        events = stream.read_until(lambda events: len(events) >= len(actions))
    assert [(event["event"], event["data"]["state"]) for event in events][-1] == (
        "scheduler_state", state)
    assert [event["event"] for event in events] == ["scheduler_state"] * len(actions)


def test_the_leader_announces_itself(api):
    _, client = api
    with open_stream(client, headers={"Last-Event-ID": "0"}) as stream:
        events = stream.read_until(seen("leader_changed"))
    assert events[0]["event"] == "leader_changed"
    assert events[0]["data"] == {"host": socket.gethostname().lower(), "pid": os.getpid()}


RUNS = {
    "success": ({"func": "tests.tasks:record", "args": ["ok"]}, "success", None),
    "error": ({"func": "tests.tasks:slow", "args": ["not a number"]}, "error", "TypeError"),
}


@pytest.mark.parametrize(("job", "outcome", "error_type"), RUNS.values(), ids=RUNS.keys())
def test_a_run_is_announced_as_it_starts_and_ends_and_the_done_job_as_removed(
        api, job, outcome, error_type):
    scheduler, client = api
    with open_stream(client, scheduler) as stream:
        assert client.post("/jobs", json={"id": "once", **job}).status_code == 200
        events = stream.read_until(lambda events: seen("run_finished")(events)
                                   and seen("job_removed")(events))
    kinds = [event["event"] for event in events]
    assert sorted(kinds) == ["job_added", "job_removed", "run_finished", "run_started"]
    assert kinds[0] == "job_added" and kinds.index("run_started") < kinds.index("run_finished")
    started, finished = (next(event["data"]["run"] for event in events if event["event"] == kind)
                         for kind in ("run_started", "run_finished"))
    assert started["id"] == finished["id"] and started["job_id"] == "once"
    assert (started["outcome"], started["finished_at"]) == ("running", None)
    assert finished["outcome"] == outcome and finished["finished_at"] is not None
    assert (finished["error"] or {}).get("type") == error_type
    assert finished["pid"] == os.getpid() and finished["reason"] == "schedule"


def test_a_run_refused_for_max_instances_is_announced_as_skipped(api):
    scheduler, client = api
    assert client.post("/jobs", json={**IDLE_JOB, "func": "tests.tasks:slow",
                                      "args": [1], "max_instances": 1}).status_code == 200
    with open_stream(client, scheduler) as stream:
        assert client.post("/jobs/idle/run").status_code == 200
        stream.read_until(seen("run_started"))
        assert client.post("/jobs/idle/run").status_code == 409
        events = stream.read_until(seen("run_finished", run_outcome="success"))
    finished = [event["data"]["run"] for event in events if event["event"] == "run_finished"]
    assert [(run["outcome"], run["reason"]) for run in finished] == [
        ("skipped", "run"), ("success", "run")]


def test_a_job_with_no_fire_time_left_after_a_long_stop_is_announced_as_removed(tmp_path):
    store = tmp_path / "jobs.sqlite"
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    write_directly(store, IntervalTrigger(seconds=1, end_date=epoch + datetime.timedelta(
        days=400), timezone=datetime.timezone.utc), epoch)
    with running_api(store, SCHEDULER_EVENTS_MAX_SECONDS=STREAM_SECONDS) as (_, client):
        with open_stream(client, headers={"Last-Event-ID": "0"}) as stream:
            events = stream.read_until(seen("job_removed", job_id="behind"))
        assert client.get("/jobs/behind").status_code == 404
    assert ("job_removed", {"job_id": "behind"}) in [
        (event["event"], event["data"]) for event in events]


# -- authentication ------------------------------------------------------------------------------

def test_no_credentials_no_stream(api):
    _, client = api
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()}):
        response = client.get("/events", auth=False, headers=headers)
        assert response.status_code == 401
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "WWW-Authenticate" in response.headers


def test_the_authorization_header_is_in_no_event_and_no_log(api, caplog):
    _, client = api
    caplog.set_level(logging.DEBUG)
    token = AUTH["Authorization"].split()[1]
    with open_stream(client, headers={"Last-Event-ID": "0"}) as stream:
        make_history(client)
        assert client.post("/jobs", json={"id": "runs", "func": "tests.tasks:record",
                                          "args": [AUTH["Authorization"][:5]]}).status_code == 200
        stream.read_until(seen("run_finished", run_job_id="runs"))
    assert set(stream.kinds()) <= set(EVENT_KINDS)
    for text in (stream.text, caplog.text):
        assert token not in text and "secret" not in text
        assert "Authorization" not in text and "admin:" not in text


# -- real servers ------------------------------------------------------------------------------

def remote_stream(base: str, headers: dict[str, str] | None = None) -> tuple[int, Stream]:
    """A stream from a real server through a new connection; (status, stream)."""
    response = requests.get(f"{base}/scheduler/events", auth=CLUSTER_AUTH, stream=True,
                            timeout=(5, 30), headers={"Connection": "close", **(headers or {})})
    return response.status_code, Stream(response.iter_content(chunk_size=None),
                                         response.close)


def greeting_pid(stream: Stream) -> int:
    while "\n\n" not in stream.text and not stream.ended:
        stream.read_chunk()
    found = re.search(r"pid (\d+)", stream.text)
    assert found, stream.text
    return int(found.group(1))


def streams_on_every_worker(base: str, workers: int) -> dict[int, Stream]:
    """One open stream per worker pid, opening more (and closing the extra ones at the end)
    until each worker has one."""
    streams: dict[int, Stream] = {}
    extra: list[Stream] = []
    # Until a deadline, not a number of tries: a worker still booting on a loaded machine
    # takes no connection, while the others, full, answer 503.
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            status, stream = remote_stream(base)
            if status != 200:
                stream.close()
                time.sleep(0.2)
                continue
            pid = greeting_pid(stream)
            if pid in streams:
                extra.append(stream)  # kept open meanwhile, so the next goes elsewhere
            else:
                streams[pid] = stream
            if len(streams) == workers:
                break
    finally:
        for stream in extra:
            stream.close()
    return streams


def test_a_stream_on_every_gunicorn_worker_sees_the_leaders_runs(tmp_path):
    env = {**cluster_env(tmp_path / "runs.log", f"sqlite:///{tmp_path / 'jobs.sqlite'}"),
           "SCHEDULER_EVENTS_MAX_STREAMS": "3", "SCHEDULER_EVENTS_MAX_SECONDS": "60"}
    # A worker holding 3 connections accepts no more: the next stream goes to another one
    # (else the worker that accepted last tends to win every connection).
    with gunicorn("tests.cluster_app:app", "--workers", "4", "-k", "gthread", "--threads", "4",
                  "--worker-connections", "3", env=env) as (host, port):
        base = f"http://{host}:{port}"
        leader = leader_pid(base)
        streams = streams_on_every_worker(base, 4)
        try:
            assert len(streams) == 4, f"streams on only {sorted(streams)}"
            assert leader in streams
            response = cluster_api(base, "POST", "/jobs", json={"id": "once",
                                                              "func": "tests.tasks:record"})
            assert response.status_code == 200
            for pid, stream in streams.items():
                # job_added is written by the worker that took the POST, the rest by the
                # leader: two writers, in no set order (the leader may run the job first).
                events = stream.read_until(lambda events: seen("run_finished")(events)
                                           and seen("job_removed")(events)
                                           and seen("job_added")(events))
                kinds = [event["event"] for event in events]
                assert sorted(kinds) == ["job_added", "job_removed", "run_finished",
                                         "run_started"], f"worker {pid}: {kinds}"
                finished = next(event["data"]["run"] for event in events
                                if event["event"] == "run_finished")
                assert (finished["job_id"], finished["outcome"], finished["pid"]) == (
                    "once", "success", leader)
        finally:
            for stream in streams.values():
                stream.close()


@needs_postgres
def test_on_postgres_a_change_through_one_host_reaches_a_stream_on_another(tmp_path,
                                                                          postgres_table):
    env = {**cluster_env(tmp_path / "runs.log", POSTGRES_URL, postgres_table),
           "SCHEDULER_EVENTS_MAX_SECONDS": "60"}
    args = ("--workers", "2", "-k", "gthread", "--threads", "4")
    with gunicorn("tests.cluster_app:app", *args, env=env) as first, \
            gunicorn("tests.cluster_app:app", *args, env=env) as second:
        one, other = (f"http://{host}:{port}" for host, port in (first, second))
        status, stream = remote_stream(other)
        try:
            assert status == 200
            greeting_pid(stream)
            assert cluster_api(one, "POST", "/jobs", json={**IDLE_JOB, "id": "far"}
                               ).status_code == 200
            assert cluster_api(one, "POST", "/jobs", json={"id": "now",
                                                           "func": "tests.tasks:record"}
                               ).status_code == 200
            # job_added is written by the worker that took each POST, the run's events by
            # the leader: writers in no set order (the leader may run "now" first).
            events = stream.read_until(lambda events: all(done(events) for done in (
                seen("run_finished", run_job_id="now"), seen("job_added", job_id="far"),
                seen("job_added", job_id="now"))))
        finally:
            stream.close()
    pairs = [(event["event"], event["data"].get("job_id")) for event in events]
    assert pairs.count(("job_added", "far")) == pairs.count(("job_added", "now")) == 1
    finished, = [event["data"]["run"] for event in events if event["event"] == "run_finished"]
    assert (finished["job_id"], finished["outcome"]) == ("now", "success")
    assert [event["id"] for event in events] == sorted({event["id"] for event in events})


def test_a_stream_far_behind_finds_its_place_and_an_idle_feed_keeps_nothing(tmp_path):
    history = RunHistory(make_engine(f"sqlite:///{tmp_path / 'events.sqlite'}"), "feed")
    history.create_schema()
    feed = events_module.EventFeed(history)
    with history.engine.begin() as connection:
        history.write(connection, [], [], [
            {"kind": "job_added", "data": json.dumps({"job_id": f"j{index}"}), "at": 1.0}
            for index in range(3000)])
    feed._read_new()  # what the reader thread does when woken
    assert [event.seq for event in feed.read(1500, timeout=0)] == list(range(1501, 1601))
    assert [event.seq for event in feed.read(2950, timeout=0)] == list(range(2951, 3001))
    assert feed.read(3000, timeout=0) == []
    feed.streams = 1
    feed.release()  # the last stream closed
    assert not feed.recent and feed.floor == feed.latest == 3000
    # A stream resuming from further back reads the database: nothing is lost.
    assert [event.seq for event in feed.read(10, timeout=0)] == list(range(11, 111))
