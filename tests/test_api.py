"""The job API over HTTP semantics: routes, status codes, JSON errors, safety, persistence."""

from __future__ import annotations

import datetime
import gc
import io
import json
import os
import socket
import sys
import threading
import time

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_SUBMITTED

from scheduler_api.web import MAX_BODY_BYTES

from . import tasks
from .api_helpers import AUTH, APIClient, make_scheduler, running_api
from .conftest import call

INTERVAL_JOB = {"id": "every-minute", "func": "tests.tasks:record", "trigger": "interval",
                "minutes": 1}


def test_scheduler_info(api):
    _, client = api
    response = client.get()
    assert response.status_code == 200
    host = socket.gethostname().lower()
    info = response.json
    leader = info.pop("leader")
    assert info == {"current_host": host, "current_pid": os.getpid(),
                             "allowed_hosts": ["*"], "running": True, "state": "running"}
    assert (leader["host"], leader["pid"]) == (host, os.getpid())
    assert leader["since"].endswith("+00:00")


def test_the_api_needs_credentials_and_the_rest_of_the_app_does_not(api):
    _, client = api
    assert client.get("/jobs", auth=False).status_code == 401
    assert client.post("/jobs", auth=False, json=INTERVAL_JOB).status_code == 401
    assert client.client.get("/elsewhere").data == b"the wrapped app"


def test_add_get_list_delete(api):
    _, client = api
    added = client.post("/jobs", json=INTERVAL_JOB)
    assert added.status_code == 200
    assert added.json["id"] == "every-minute"
    assert added.json["name"] == "every-minute"
    assert added.json["minutes"] == 1
    assert client.get("/jobs/every-minute").json == added.json
    assert [job["id"] for job in client.get("/jobs").json] == ["every-minute"]
    assert client.delete("/jobs/every-minute").status_code == 204
    assert client.get("/jobs").json == []
    assert client.get("/jobs/every-minute").json == {"error_message": "Job every-minute not found"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/jobs/missing", 404), ("PATCH", "/jobs/missing", 404),
     ("DELETE", "/jobs/missing", 404), ("POST", "/jobs/missing/pause", 404),
     ("POST", "/jobs/missing/resume", 404), ("POST", "/jobs/missing/run", 404),
     ("GET", "/no-such-route", 404), ("DELETE", "/jobs", 405), ("GET", "/pause", 405),
     ("PUT", "/jobs/x", 405)],
    ids=["get-unknown-job", "patch-unknown-job", "delete-unknown-job", "pause-unknown-job",
         "resume-unknown-job", "run-unknown-job", "unknown-route", "delete-collection",
         "get-an-action", "put-a-job"],
)
def test_errors_are_json(api, method, path, status):
    _, client = api
    response = client.request(method, path, json={"minutes": 2})
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert isinstance(response.json["error_message"], str)
    if status == 405:
        assert response.headers["Allow"]


def test_405_names_the_allowed_methods(api):
    _, client = api
    assert set(client.delete("/jobs").headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}


@pytest.mark.parametrize("path", ["", "/jobs", "/jobs/every-minute", "/openapi.json"],
                         ids=["scheduler-info", "job-list", "one-job", "openapi"])
def test_head_has_the_headers_of_get_and_no_body(api, path):
    _, client = api
    client.post("/jobs", json=INTERVAL_JOB)
    got, head = client.get(path), client.request("HEAD", path)
    assert head.status_code == got.status_code == 200
    assert head.headers["Content-Type"] == "application/json"
    assert head.headers["Content-Length"] == str(len(got.data))
    assert head.data == b""


def test_no_content_answers_have_no_body_or_content_type(api):
    _, client = api
    client.post("/jobs", json=INTERVAL_JOB)
    response = client.delete("/jobs/every-minute")
    assert (response.status_code, response.data) == (204, b"")
    assert "Content-Type" not in response.headers


def test_duplicate_id_is_409(api):
    _, client = api
    client.post("/jobs", json=INTERVAL_JOB)
    response = client.post("/jobs", json=INTERVAL_JOB)
    assert response.status_code == 409
    assert response.json == {"error_message": "Job every-minute already exists."}


def test_replace_existing_replaces(api):
    _, client = api
    client.post("/jobs", json=INTERVAL_JOB)
    response = client.post("/jobs", json={**INTERVAL_JOB, "minutes": 5, "replace_existing": True})
    assert response.status_code == 200
    assert client.get("/jobs/every-minute").json["minutes"] == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"func": "tests.tasks:record"}, "id"),
        ({"id": "", "func": "tests.tasks:record"}, "id"),
        ({"id": "a/b", "func": "tests.tasks:record"}, "id"),
        ({"id": "x" * 192, "func": "tests.tasks:record"}, "id"),
        ({"id": 7, "func": "tests.tasks:record"}, "id"),
        ({"id": "..", "func": "tests.tasks:record"}, "id"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "and", "triggers": [
            {"trigger": "cron", "minute": 0}, {"trigger": "cron", "minute": 30}]}, "triggers"),
        ({"id": "x", "func": "tests.tasks:slow", "args": [1, 2, 3]}, "args"),
        ({"id": "x"}, "func"),
        ({"id": "x", "func": "tests.tasks:record", "color": "red"}, "color"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "sometimes"}, "trigger"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "cron", "hour": "25"}, "hour"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "cron", "day_of_week": "funday"},
         "day_of_week"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "cron", "hour": [1]}, "hour"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "interval"}, "seconds"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "interval", "seconds": "ten"},
         "seconds"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "interval", "seconds": -1},
         "seconds"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "interval", "seconds": True},
         "seconds"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "interval", "hour": 1}, "hour"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "date", "run_date": "tomorrow"},
         "run_date"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "interval", "seconds": 1,
          "timezone": "Mars/Olympus"}, "timezone"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "interval", "seconds": 1,
          "start_date": "2030-01-01", "end_date": "2029-01-01"}, "end_date"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "and", "triggers": []}, "triggers"),
        ({"id": "x", "func": "tests.tasks:record", "args": {"a": 1}}, "args"),
        ({"id": "x", "func": "tests.tasks:record", "kwargs": [1]}, "kwargs"),
        ({"id": "x", "func": "tests.tasks:record", "name": ""}, "name"),
        ({"id": "x", "func": "tests.tasks:record", "max_instances": 0}, "max_instances"),
        ({"id": "x", "func": "tests.tasks:record", "misfire_grace_time": "soon"},
         "misfire_grace_time"),
        ({"id": "x", "func": "tests.tasks:record", "coalesce": "yes"}, "coalesce"),
        ({"id": "x", "func": "tests.tasks:record", "next_run_time": "now"}, "next_run_time"),
        ({"id": "x", "func": "tests.tasks:record", "jobstore": "elsewhere"}, "jobstore"),
        ({"id": "x", "func": "tests.tasks:record", "executor": "gpu"}, "executor"),
        ({"id": "x", "func": "tests.tasks:record", "replace_existing": "yes"},
         "replace_existing"),
        ({"id": "x", "func": "tests.tasks:missing_function"}, "func"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "interval", "seconds": 60,
          "jitter": 10**19}, "jitter"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "or", "triggers": [
            {"trigger": "cron", "hour": 3}], "jitter": 10**10}, "jitter"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "calendarinterval", "days": 1,
          "jitter": 10**19}, "jitter"),
        ({"id": "x", "func": "tests.tasks:record", "misfire_grace_time": 10**19},
         "misfire_grace_time"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "calendarinterval",
          "years": 9000}, "calendarinterval"),
        ({"id": "x", "func": "tests.tasks:record", "trigger": "interval", "weeks": 10**6,
          "start_date": "2020-01-01T00:00:00+00:00"}, "interval"),
    ],
    ids=["missing-id", "empty-id", "slash-in-id", "id-too-long", "id-not-a-string", "dotdot-id",
         "and-trigger-that-never-fires", "args-do-not-fit-the-func",
         "missing-func", "unknown-key", "unknown-trigger", "bad-cron-hour", "bad-cron-weekday",
         "cron-field-wrong-type", "interval-without-length", "interval-not-a-number",
         "negative-interval", "boolean-interval", "cron-field-on-interval", "bad-run-date",
         "unknown-timezone", "end-before-start", "empty-combination", "args-not-a-list",
         "kwargs-not-an-object", "empty-name", "zero-max-instances", "misfire-not-a-number",
         "coalesce-not-a-bool", "bad-next-run-time", "unknown-jobstore", "unknown-executor",
         "replace-existing-not-a-bool", "allowed-module-missing-function",
         "jitter-past-a-timedelta", "jitter-over-31-years-on-or", "jitter-on-calendarinterval",
         "misfire-grace-time-past-a-timedelta", "second-run-past-the-year-9999",
         "next-run-past-the-year-9999"],
)
def test_invalid_fields_are_400_naming_the_field(api, body, field):
    _, client = api
    response = client.post("/jobs", json=body)
    assert response.status_code in (400, 403)
    message = response.json["error_message"]
    assert message.startswith(f"{field}") or field in message
    assert "Traceback" not in message
    assert client.get("/jobs").json == []


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [("{not json", "application/json", 400), ("[1, 2]", "application/json", 400),
     ('"text"', "application/json", 400), ("", "application/json", 400),
     ('{"id": "x", "func": "tests.tasks:record"}', "text/plain", 415),
     ("id=x&func=tests.tasks:record", "application/x-www-form-urlencoded", 415),
     ('{"id": "x", "func": "tests.tasks:record"}', None, 415),
     ("[" * 100000 + "]" * 100000, "application/json", 400),
     ('{"id": "x", "func": "tests.tasks:record"}', "application/json\xa0", 415),
     ('{"id": "x", "func": "tests.tasks:record"}', "\x1capplication/json", 415)],
    ids=["invalid-json", "json-array", "json-string", "empty-body", "text-plain-cross-site",
         "form-cross-site", "no-content-type", "deeply-nested", "trailing-no-break-space",
         "leading-separator-control"],
)
def test_bodies_that_are_not_a_json_object(api, data, content_type, status):
    _, client = api
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/jobs", data=data, headers=headers)
    assert response.status_code == status
    assert "error_message" in response.json
    assert client.get("/jobs").json == []


def test_json_with_charset_is_accepted(api):
    _, client = api
    response = client.post("/jobs", data='{"id": "x", "func": "tests.tasks:record", '
                           '"trigger": "interval", "hours": 1}',
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200


class TrickleStream(io.BytesIO):
    """A wsgi.input that hands out at most 7 bytes a read, as a slow socket may."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(7 if size is None or size < 0 else min(size, 7))


def test_a_body_that_arrives_in_pieces_is_read_whole(api):
    _, client = api
    body = json.dumps(INTERVAL_JOB).encode()
    response = client.post("/jobs", input_stream=TrickleStream(body),
                           headers={"Content-Type": "application/json",
                                    "Content-Length": str(len(body))})
    assert response.status_code == 200
    assert response.json["id"] == "every-minute"


class EndlessStream:
    """A chunked wsgi.input that never ends; counts what the API read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        assert size >= 0, "the API must never read a chunked body to its end"
        self.read_bytes += size
        return b" " * size


def post_environ(client, **environ: object):  # type: ignore[no-untyped-def]
    """POST /scheduler/jobs in process with a body of '{}' and ``environ`` laid over it."""
    return call(client.client.application, "/scheduler/jobs", "POST", AUTH["Authorization"],
                **{"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "2",
                   "wsgi.input": io.BytesIO(b"{}"), **environ})


def test_a_chunked_body_is_read_only_up_to_the_limit(api):
    _, client = api
    stream = EndlessStream()
    answer = post_environ(client, **{"wsgi.input": stream, "wsgi.input_terminated": True,
                                     "HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": ""})
    assert answer.status == 413
    assert stream.read_bytes == MAX_BODY_BYTES + 1
    assert client.get("/jobs").json == []


@pytest.mark.parametrize(
    ("declared", "status", "message"),
    [("9" * 5000, 413, "the body must be at most"),
     ("1" + "0" * 19, 413, "the body must be at most"),
     ("0" * 5000 + "2", 400, "id: ")],
    ids=["past-the-int-digit-limit", "past-64-bits", "leading-zeros-read-as-2-bytes"],
)
def test_a_long_content_length_is_read_not_a_500(api, declared, status, message):
    _, client = api
    answer = post_environ(client, CONTENT_LENGTH=declared)
    assert answer.status == status
    assert json.loads(answer.body)["error_message"].startswith(message)


def test_oversized_body_is_413(api):
    _, client = api
    response = client.post("/jobs", json={"id": "x", "func": "tests.tasks:record",
                                          "args": ["x" * (1024 * 1024)]})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "func",
    ["os:system", "builtins:eval", "subprocess:run", "subprocess:*", "tests.tasks:system",
     "tests.tasks:os.system", "tests.tasks:Helpers.nested", "tests.never_imported:anything",
     "no.such.module:thing", "tests.tasks", ":record", "tests.tasks:__import__", 42, None],
    ids=["os-system", "builtins-eval", "subprocess-run", "wildcard-as-func",
         "name-imported-into-allowed-module", "dotted-path-through-allowed-module",
         "nested-attribute", "module-never-imported", "module-does-not-exist", "no-colon",
         "no-module", "dunder", "not-a-string", "null"],
)
def test_only_allowed_funcs_can_be_scheduled(api, func):
    _, client = api
    response = client.post("/jobs", json={"id": "x", "func": func, "args": ["id"]})
    assert response.status_code in (400, 403)
    assert client.get("/jobs").json == []
    assert "tests.never_imported" not in sys.modules


def test_patch_cannot_swap_in_a_forbidden_func(api):
    _, client = api
    before = client.post("/jobs", json=INTERVAL_JOB).json
    response = client.patch("/jobs/every-minute", json={"func": "os:system", "args": ["id"]})
    assert response.status_code == 403
    assert client.get("/jobs/every-minute").json == before


@pytest.mark.parametrize(
    "change",
    [{"args": [["sh", "-c", "id"]]}, {"kwargs": {"shell": True}}, {"trigger": "cron",
                                                                  "minute": "*"},
     {"seconds": 1}, {"name": "renamed"}, {"func": "tests.tasks:record"}, {}],
    ids=["args", "kwargs", "trigger", "trigger-field", "name", "allowed-func", "empty"],
)
def test_a_job_whose_func_is_not_allowed_cannot_be_changed(api, change):
    """An operator's job added from Python with a func outside the allow-list: the API may
    read, pause, resume, run and delete it, never change it (/run would run the change)."""
    scheduler, client = api
    scheduler.add_job("operator", "subprocess:run", args=[["true"]], trigger="interval",
                      hours=1)
    before = client.get("/jobs/operator").json
    response = client.patch("/jobs/operator", json=change)
    assert response.status_code == 403
    assert response.json["error_message"].startswith("func 'subprocess:run' of job operator")
    assert client.get("/jobs/operator").json == before
    assert scheduler.get_job("operator").args == (["true"],)


def test_a_job_whose_func_is_not_allowed_can_be_read_paused_resumed_and_deleted(api):
    scheduler, client = api
    scheduler.add_job("operator", "json:dumps", args=[1], trigger="interval", hours=1)
    assert client.get("/jobs/operator").json["func"] == "json:dumps"
    assert client.post("/jobs/operator/pause").json["next_run_time"] is None
    assert client.post("/jobs/operator/resume").json["next_run_time"] is not None
    assert client.post("/jobs/operator/run").status_code == 200
    assert client.delete("/jobs/operator").status_code == 204


def test_opting_out_of_the_allow_list_is_possible_and_warned(tmp_path, caplog):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_API_ALLOW_ANY_FUNC=True) as (_, client):
        response = client.post("/jobs", json={"id": "x", "func": "json:dumps", "args": [1],
                                              "trigger": "interval", "hours": 1})
        assert response.status_code == 200
    assert "SCHEDULER_API_ALLOW_ANY_FUNC" in caplog.text


def test_funcs_of_config_jobs_are_allowed(tmp_path):
    jobs = [{"id": "from-config", "func": "json:dumps", "args": [1], "trigger": "interval",
             "hours": 1}]
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_JOBS=jobs,
                     SCHEDULER_API_ALLOWED_FUNCS=[]) as (_, client):
        assert client.get("/jobs/from-config").json["func"] == "json:dumps"
        assert client.post("/jobs", json={"id": "again", "func": "json:dumps", "args": [2],
                                          "trigger": "interval", "hours": 1}).status_code == 200
        assert client.post("/jobs", json={"id": "no", "func": "json:loads",
                                          "args": ["1"]}).status_code == 403


def test_task_decorator_allows_a_module_level_function(tmp_path):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_API_ALLOWED_FUNCS=[]) as (
            scheduler, client):
        scheduler.task("interval", id="task", hours=1)(tasks.slow)
        response = client.post("/jobs", json={"id": "copy", "func": "tests.tasks:slow",
                                              "args": [0], "trigger": "interval", "hours": 1})
        assert response.status_code == 200
        assert client.post("/jobs", json={"id": "other", "func": "tests.tasks:record"}
                           ).status_code == 403


def test_patch_merges_fields_of_the_same_trigger(api):
    _, client = api
    client.post("/jobs", json={**INTERVAL_JOB, "args": ["a"]})
    response = client.patch("/jobs/every-minute", json={"hours": 2, "name": "renamed"})
    assert response.status_code == 200
    assert (response.json["hours"], response.json["minutes"]) == (2, 1)
    assert response.json["name"] == "renamed"
    assert response.json["args"] == ["a"]


def test_patch_replaces_the_trigger_when_trigger_is_given(api):
    _, client = api
    client.post("/jobs", json=INTERVAL_JOB)
    response = client.patch("/jobs/every-minute", json={"trigger": "cron", "hour": "3"})
    assert response.status_code == 200
    assert response.json["trigger"] == "cron"
    assert response.json["hour"] == "3"
    assert response.json["next_run_time"].endswith("T03:00:00+00:00")


def test_patch_with_its_own_id_is_accepted_and_another_id_refused(api):
    _, client = api
    client.post("/jobs", json=INTERVAL_JOB)
    assert client.patch("/jobs/every-minute", json={"id": "every-minute", "name": "n"}
                        ).status_code == 200
    assert client.patch("/jobs/every-minute", json={"id": "other"}).status_code == 400


@pytest.mark.parametrize(
    "change",
    [{"name": "new", "hour": "25", "trigger": "cron"}, {"name": "new", "func": "os:system"},
     {"name": "new", "seconds": "x"}, {"name": "new", "max_instances": 0},
     {"name": "new", "unknown": 1}, {"name": "new", "jobstore": "default"},
     {"name": "new", "func": "tests.tasks:missing_function"},
     {"name": "new", "jitter": 10**19}, {"name": "new", "misfire_grace_time": 10**19},
     {"name": "new", "trigger": "calendarinterval", "years": 9000}],
    ids=["bad-trigger", "forbidden-func", "bad-interval", "bad-option", "unknown-key",
         "jobstore-change", "func-not-importable", "jitter-past-a-timedelta",
         "misfire-grace-time-past-a-timedelta", "second-run-past-the-year-9999"],
)
def test_a_rejected_patch_changes_nothing(api, change):
    scheduler, client = api
    before = client.post("/jobs", json=INTERVAL_JOB).json
    response = client.patch("/jobs/every-minute", json=change)
    assert 400 <= response.status_code < 500
    assert client.get("/jobs/every-minute").json == before
    assert scheduler.get_job("every-minute").name == "every-minute"


def test_patch_requires_json(api):
    _, client = api
    before = client.post("/jobs", json=INTERVAL_JOB).json
    response = client.patch("/jobs/every-minute", data='{"name": "x"}',
                            headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert client.get("/jobs/every-minute").json == before


def test_pause_and_resume_a_job(api):
    _, client = api
    client.post("/jobs", json=INTERVAL_JOB)
    paused = client.post("/jobs/every-minute/pause")
    assert paused.status_code == 200
    assert paused.json["next_run_time"] is None
    patched = client.patch("/jobs/every-minute", json={"minutes": 3})
    assert patched.json["next_run_time"] is None  # a paused job stays paused
    resumed = client.post("/jobs/every-minute/resume")
    assert resumed.status_code == 200
    assert resumed.json["next_run_time"] is not None


def test_run_goes_through_the_executor_without_waiting_and_fires_events(api):
    scheduler, client = api
    events: list[int] = []
    scheduler.add_listener(lambda event: events.append(event.code),
                           EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED)
    # A job of 3 s: the second POST must come while it runs, and a loaded machine's POST
    # can take most of a second.
    client.post("/jobs", json={"id": "slow", "func": "tests.tasks:slow", "args": [3.0],
                               "trigger": "interval", "hours": 1})
    started = time.monotonic()
    response = client.post("/jobs/slow/run")
    assert response.status_code == 200
    assert response.json["id"] == "slow"
    assert time.monotonic() - started < 1.5  # did not wait for the three-second job
    assert client.post("/jobs/slow/run").status_code == 409  # max_instances 1 holds
    deadline = time.monotonic() + 10
    while EVENT_JOB_EXECUTED not in events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events == [EVENT_JOB_SUBMITTED, EVENT_JOB_EXECUTED]
    assert client.get("/jobs/slow").json["next_run_time"] == response.json["next_run_time"]


def test_a_job_added_to_run_now_runs(api):
    _, client = api
    tasks.ran.clear()
    response = client.post("/jobs", json={"id": "now", "func": "tests.tasks:record",
                                          "args": ["now", 1]})
    assert response.status_code == 200
    assert tasks.ran.wait(5)
    assert ("now", (1,)) in tasks.runs
    wait_until_gone(client, "now")


def wait_until_gone(client, job_id: str) -> None:
    """A run-once job is removed by the scheduler thread just after it is submitted."""
    deadline = time.monotonic() + 5
    while client.get(f"/jobs/{job_id}").status_code != 404:
        assert time.monotonic() < deadline, f"{job_id} was not removed after its run"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("action", "state_before", "status", "state_after"),
    [("pause", "running", 204, "paused"), ("resume", "paused", 204, "running"),
     ("pause", "stopped", 409, "stopped"), ("resume", "stopped", 409, "stopped"),
     ("start", "running", 409, "running"), ("start", "stopped", 204, "running"),
     ("shutdown", "running", 204, "stopped"), ("shutdown", "stopped", 409, "stopped"),
     ("pause", "paused", 204, "paused")],
    ids=["pause-running", "resume-paused", "pause-stopped", "resume-stopped", "start-running",
         "start-stopped", "shutdown-running", "shutdown-stopped", "pause-paused"],
)
def test_scheduler_state_transitions(api, action, state_before, status, state_after):
    scheduler, client = api
    if state_before == "paused":
        scheduler.pause()
    elif state_before == "stopped":
        scheduler.shutdown()
    response = client.post(f"/{action}")
    assert response.status_code == status
    if status != 204:
        assert response.json["error_message"]
    assert client.get().json["state"] == state_after


def test_shutdown_takes_wait_false_and_refuses_other_bodies(api):
    _, client = api
    assert client.post("/shutdown", json={"wait": "no"}).status_code == 400
    assert client.post("/shutdown", data="wait=false",
                       headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.get().json["state"] == "running"
    assert client.post("/shutdown", json={"wait": False}).status_code == 204
    assert client.get().json["state"] == "stopped"


def test_jobs_run_again_after_shutdown_and_start_through_the_api(api):
    _, client = api
    assert client.post("/shutdown").status_code == 204
    assert client.post("/start").status_code == 204
    tasks.ran.clear()
    client.post("/jobs", json={"id": "after-restart", "func": "tests.tasks:record",
                               "args": ["after-restart"]})
    assert tasks.ran.wait(5)
    wait_until_gone(client, "after-restart")


def test_start_on_a_host_that_is_not_allowed_is_409(tmp_path):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_ALLOWED_HOSTS=["elsewhere"]) as (
            scheduler, client):
        assert not scheduler.running  # the start in running_api was refused
        response = client.post("/start")
        assert response.status_code == 409
        assert "not allowed" in response.json["error_message"]
        assert client.get().json["allowed_hosts"] == ["elsewhere"]


def test_jobs_survive_a_restart_on_the_default_sqlite_store(tmp_path):
    store = tmp_path / "jobs.sqlite"
    with running_api(store) as (_, client):
        created = client.post("/jobs", json={**INTERVAL_JOB, "args": ["kept"]}).json
    assert store.exists()
    with running_api(store) as (_, client):
        assert client.get("/jobs").json == [created]


def test_default_store_is_a_sqlite_file_in_the_working_directory(tmp_path, monkeypatch):
    from scheduler_api import APScheduler

    from .api_helpers import plain_app

    monkeypatch.chdir(tmp_path)
    scheduler = APScheduler()
    scheduler.init_app(plain_app, config={"SCHEDULER_API_ENABLED": True})
    scheduler.start(paused=True)
    try:
        assert (tmp_path / "scheduler.sqlite").exists()
    finally:
        scheduler.shutdown()


@pytest.mark.parametrize(
    ("args", "shown"),
    [([datetime.date(2030, 1, 2), {1, 2}], ["2030-01-02", [1, 2]]),
     (["\ud800", "Zürich"], ["\ud800", "Zürich"]),
     ([float("nan"), 1.5], "[nan, 1.5]")],
    ids=["date-and-set", "unpaired-surrogate", "nan"],
)
def test_a_job_with_args_json_cannot_encode_does_not_break_the_listing(api, args, shown):
    scheduler, client = api
    client.post("/jobs", json=INTERVAL_JOB)
    scheduler.add_job("odd", "tests.tasks:record", args=args, trigger="interval", hours=1)
    response = client.get("/jobs")
    assert response.status_code == 200
    listed = json.loads(response.data, parse_constant=pytest.fail)  # strict JSON
    assert {job["id"]: job["args"] for job in listed}["odd"] == shown
    assert client.get("/jobs/odd").json["args"] == shown


@pytest.mark.parametrize(
    "body",
    [b'{"id": "x", "func": "tests.tasks:record", "name": "\\ud800"}',
     b'{"id": "x\\udc00", "func": "tests.tasks:record"}',
     b'{"id": "x", "func": "tests.tasks:record", "args": ["\xed\xa0\x80"]}',
     b'{"id": "x", "func": "tests.tasks:record", "trigger": "interval", "seconds": 1e400}'],
    ids=["escaped-unpaired-surrogate-in-name", "escaped-unpaired-surrogate-in-id",
         "utf-8-encoded-surrogate", "number-beyond-a-float"],
)
def test_bodies_a_listing_could_not_show_are_refused(api, body):
    _, client = api
    response = client.post("/jobs", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json["error_message"].startswith("the body is not valid JSON")
    assert client.get("/jobs").json == []


def test_a_job_posted_before_the_scheduler_starts_is_scheduled_from_the_start(tmp_path):
    scheduler, app = make_scheduler(tmp_path / "jobs.sqlite")
    client = APIClient(app)
    response = client.post("/jobs", json={"id": "every-second", "func": "tests.tasks:record",
                                          "trigger": "cron", "second": "*"})
    assert response.status_code == 200
    assert "next_run_time" not in response.json  # pending: APScheduler schedules it at start
    time.sleep(1.1)  # a fire time computed at the POST would now be in the past
    started = datetime.datetime.now(datetime.timezone.utc)
    scheduler.start(paused=True)
    try:
        shown = client.get("/jobs/every-second").json["next_run_time"]
        assert datetime.datetime.fromisoformat(shown) >= started
    finally:
        scheduler.shutdown(wait=False)


def test_a_post_leaves_no_reference_cycles_behind(api):
    """Every request a cycle (environ <-> Request, the router's closure) meant collections."""
    scheduler, client = api
    scheduler.pause()

    def post(job_id: str) -> int:
        body = json.dumps({**INTERVAL_JOB, "id": job_id}).encode()
        return call(client.client.application, "/scheduler/jobs", "POST", AUTH["Authorization"],
                    CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)),
                    **{"wsgi.input": io.BytesIO(body)}).status

    assert post("first") == 200  # imports and first-use memos settle
    gc.collect()
    gc.disable()
    try:
        assert post("second") == 200
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert [job["id"] for job in client.get("/jobs").json] == ["first", "second"]


def test_only_routes_without_a_job_id_are_remembered(api):
    scheduler, client = api
    for index in range(50):
        client.get(f"/jobs/job-{index}")
        client.post(f"/jobs/job-{index}/pause")
        client.get("/jobs")
    mount = scheduler.middleware.app.mounts["/scheduler"]
    routes = getattr(mount, "api", mount)._static_routes  # the metrics' counting wraps it
    assert routes == {("/jobs", "GET"): "get_jobs"}
    assert client.delete("/jobs").status_code == 405  # a remembered path, another method


def test_concurrent_posts_each_land_once(api):
    _, client = api
    statuses: list[int] = []

    def post(index: int) -> None:
        statuses.append(client.post("/jobs", json={**INTERVAL_JOB, "id": f"job-{index}"}
                                    ).status_code)

    threads = [threading.Thread(target=post, args=(index,)) for index in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 10
    assert len(client.get("/jobs").json) == 10


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [("/pause", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
     ("/shutdown", {"Content-Type": "text/plain"}, 415),
     ("/jobs/target/run", {"Content-Type": "multipart/form-data; boundary=x"}, 415),
     ("/jobs/target/pause", {"Origin": "https://evil.example"}, 403),
     ("/pause", {"Origin": "null"}, 403),
     ("/pause", {"Sec-Fetch-Site": "cross-site"}, 403),
     ("/jobs/target/pause", {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
      200),
     ("/jobs/target/pause", {}, 200)],
    ids=["empty-form-post", "text-plain-post", "multipart-post", "foreign-origin",
         "opaque-origin", "cross-site-fetch", "same-origin-page", "curl-without-body"],
)
def test_cross_site_requests_cannot_act(api, path, headers, status):
    _, client = api
    client.post("/jobs", json={**INTERVAL_JOB, "id": "target"})
    response = client.post(path, headers=headers)
    assert response.status_code == status, response.json
    if status != 200:
        assert client.get().json["state"] == "running"
        assert client.get("/jobs/target").json["next_run_time"] is not None
