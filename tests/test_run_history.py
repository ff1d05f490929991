"""Run history in process: every run recorded with the right fields, read through the API
and ``get_runs``, bounded, paged and filtered, pruned, and with the counts behind its totals
always equal to a real count. On a SQLite file and, when there is one, on PostgreSQL."""

from __future__ import annotations

import base64
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from apscheduler.executors.debug import DebugExecutor
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from authmw import compare_secrets
from scheduler_api import engine
from scheduler_api.history import MAX_MESSAGE, MAX_RESULT, MAX_TRACEBACK, Run, RunHistory

from . import tasks
from .api_helpers import APIClient, make_scheduler, running_api
from .test_faults import held_sqlite_write_lock

NOW_PLUS = {"trigger": "date"}  # a date trigger without run_date: once, at once


@pytest.fixture(autouse=True)
def closed_gate() -> Iterator[None]:
    tasks.gate.clear()
    yield
    tasks.gate.set()  # whatever still waits ends


@pytest.fixture
def history_api(tmp_path, store_config):
    """A started scheduler and its API client, on SQLite or PostgreSQL."""
    with running_api(tmp_path / "jobs.sqlite", **store_config) as (scheduler, client):
        yield scheduler, client


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """``condition()``'s first true value, or its last one after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def ended_runs(scheduler, job_id: str, count: int = 1, timeout: float = 10.0) -> list[Run]:
    """The job's runs once ``count`` of them have ended (newest first)."""
    def ended() -> list[Run]:
        scheduler.recorder.flush()
        runs = scheduler.get_runs(job_id).runs
        return runs if sum(run.outcome != "running" for run in runs) >= count else []

    runs = wait_until(ended, timeout)
    assert runs, f"{count} run(s) of {job_id} not recorded within {timeout} s: " \
                 f"{scheduler.get_runs(job_id).runs}"
    return runs


def real_counts(history: RunHistory) -> tuple[Counter, Counter]:
    """(job id, outcome) -> runs, as counted in the runs table and as the counts table says
    (zero counts left out)."""
    runs, counts = history.runs, history.counts
    with history.engine.connect() as connection:
        real = Counter({(job_id, outcome): n for job_id, outcome, n in connection.execute(
            select(runs.c.job_id, runs.c.outcome, func.count())
            .group_by(runs.c.job_id, runs.c.outcome))})
        kept = Counter({(row.job_id, row.outcome): int(row.n) for row in connection.execute(
            select(counts).where(counts.c.scope == "job")) if row.n})
        every = Counter({row.outcome: int(row.n) for row in connection.execute(
            select(counts).where(counts.c.scope == "all")) if row.n})
    by_outcome: Counter = Counter()
    for (_, outcome), n in real.items():
        by_outcome[outcome] += n
    assert every == by_outcome, "the all-jobs counts differ from a real count"
    return real, kept


def assert_totals_are_real_counts(scheduler) -> None:
    real, kept = real_counts(scheduler.history)
    assert kept == real, "the counts table differs from a real count of the runs"
    for job_id in {job_id for job_id, _ in real}:
        assert scheduler.get_runs(job_id, limit=1).total == sum(
            n for (job, _), n in real.items() if job == job_id)
    assert scheduler.get_runs(limit=1).total == sum(real.values())


def every_stored_text(history: RunHistory) -> str:
    """Every value of every column of every history table, as one text."""
    texts = []
    with history.engine.connect() as connection:
        for table in history.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                texts.extend(str(value) for value in row)
    return "\n".join(texts)


# -- each outcome, with its fields ---------------------------------------------------------

def test_a_success_is_recorded_with_its_result_times_host_and_pid(history_api):
    scheduler, client = history_api
    before = datetime.now(timezone.utc)
    scheduler.add_job("answer", "tests.tasks:give", args=[{"answer": 42}], **NOW_PLUS)
    run, = ended_runs(scheduler, "answer")
    body = client.get("/jobs/answer/runs").json
    assert body["total"] == 1 and body["limit"] == 100 and body["offset"] == 0
    shown, = body["runs"]
    assert shown == run.to_json()
    assert shown["id"] == run.id and len(run.id) == 32
    assert (shown["job_id"], shown["reason"], shown["outcome"]) == ("answer", "schedule",
                                                                    "success")
    assert shown["result"] == "{'answer': 42}" and shown["error"] is None
    assert (shown["host"], shown["pid"]) == (socket.gethostname().lower(), os.getpid())
    scheduled, started, finished = (datetime.fromisoformat(shown[field]) for field in (
        "scheduled_at", "started_at", "finished_at"))
    assert before - timedelta(seconds=1) <= scheduled <= started <= finished
    assert shown["duration"] == pytest.approx((finished - started).total_seconds(), abs=1e-3)


def test_an_error_shows_its_type_message_and_traceback_through_the_api(history_api):
    scheduler, client = history_api
    scheduler.add_job("broken", "tests.tasks:fail", args=["the disk is on fire"], **NOW_PLUS)
    ended_runs(scheduler, "broken")
    shown, = client.get("/runs", query_string={"outcome": "error"}).json["runs"]
    assert shown["outcome"] == "error" and shown["result"] is None
    error = shown["error"]
    assert (error["type"], error["message"]) == ("RuntimeError", "the disk is on fire")
    assert error["traceback"].startswith("Traceback (most recent call last)")
    assert "tasks.py" in error["traceback"] and "in fail" in error["traceback"]
    assert error["traceback"].rstrip().endswith("RuntimeError: the disk is on fire")
    assert shown["finished_at"] is not None and shown["duration"] >= 0


def test_a_run_later_than_its_misfire_grace_time_is_recorded_missed(history_api):
    scheduler, client = history_api
    due = datetime.now(timezone.utc) - timedelta(seconds=30)
    scheduler.add_job("late", "tests.tasks:record", trigger="date", run_date=due,
                      misfire_grace_time=1)
    run, = ended_runs(scheduler, "late")
    assert (run.outcome, run.reason, run.scheduled_at) == ("missed", "schedule", due)
    assert run.started_at is None and run.finished_at is None and run.duration is None
    assert client.get("/jobs/late/runs").json["runs"][0]["outcome"] == "missed"


def test_runs_past_max_instances_are_recorded_skipped(history_api):
    scheduler, client = history_api
    scheduler.add_job("hog", "tests.tasks:wait_for_gate", trigger="interval", seconds=1,
                      max_instances=1, next_run_time=datetime.now(timezone.utc))
    skipped = wait_until(lambda: scheduler.recorder.flush() and scheduler.get_runs(
        "hog", outcome="skipped").runs, timeout=10)
    assert skipped, "no skipped run recorded while the only instance ran"
    assert skipped[-1].reason == "schedule" and skipped[-1].started_at is None
    running, = scheduler.get_runs("hog", outcome="running").runs
    scheduler.pause_job("hog")
    tasks.gate.set()
    run = wait_until(lambda: scheduler.recorder.flush() and (
        found := scheduler.history.get(running.id)) and found.outcome != "running" and found)
    assert run.outcome == "success" and run.result == "'gate opened'"
    # More may have been skipped (each second) until the pause: every one of them is shown.
    shown = client.get("/jobs/hog/runs", query_string={"outcome": "skipped"}).json
    assert shown["total"] == len(shown["runs"]) >= len(skipped)
    assert {run.id for run in skipped} <= {run["id"] for run in shown["runs"]}
    assert {run["outcome"] for run in shown["runs"]} == {"skipped"}
    assert_totals_are_real_counts(scheduler)


def test_a_manual_run_is_reason_run_and_one_refused_by_max_instances_is_skipped(history_api):
    scheduler, client = history_api
    scheduler.add_job("gated", "tests.tasks:wait_for_gate", next_run_time=None,
                      max_instances=1)  # paused: it runs only when asked
    assert client.post("/jobs/gated/run").status_code == 200
    wait_until(lambda: scheduler.recorder.flush() and scheduler.get_runs(
        "gated", outcome="running").total)
    refused = client.post("/jobs/gated/run")
    assert refused.status_code == 409, refused.json
    tasks.gate.set()
    runs = ended_runs(scheduler, "gated", count=2)
    assert sorted((run.reason, run.outcome) for run in runs) == [("run", "skipped"),
                                                                 ("run", "success")]
    assert_totals_are_real_counts(scheduler)


# -- bounded fields, and values no database stores as they are -----------------------------

def check_bounded(run: Run) -> None:
    for field, bound in (("error_message", MAX_MESSAGE), ("traceback", MAX_TRACEBACK),
                         ("result", MAX_RESULT), ("error_type", 255)):
        value = getattr(run, field)
        assert value is None or len(value) <= bound, f"{field}: {len(value)} > {bound}"


@pytest.mark.parametrize("func, args, outcome, shows", [
    ("tests.tasks:fail_with_text", [1_000_000], "error", {"error_message": "mmm"}),
    ("tests.tasks:give_text", [5_000_000], "success", {"result": "'rrr"}),
    ("tests.tasks:give", [list(range(100_000))], "success", {"result": "[0, 1, 2"}),
    ("tests.tasks:give_unprintable", [], "success", {"result": "Unprintable"}),
    ("tests.tasks:fail_unprintably", [], "error", {"error_type": "UnprintableError"}),
    ("tests.tasks:give_unstorable", [], "success", {"result": "surrogate"}),
    ("tests.tasks:fail_unstorably", [], "error", {"error_message": "surrogate"}),
    ("tests.tasks:fail_with_long_type_name", [], "error", {"error_type": "EEEE"}),
    ("tests.tasks:fail_treacherously", [], "error",
     {"error_type": "TreacherousError", "error_message": "a treacherous message"}),
    ("tests.tasks:give_nameless_unprintable", [], "success",
     {"result": "NamelessUnprintable object: repr() failed"}),
], ids=["a 1 MB exception message is cut", "a 5 MB result is cut to its repr's bound",
        "a list of 100,000 numbers is cut", "a result whose repr fails is still recorded",
        "an error whose str fails is still recorded",
        "a result repr with NUL and a lone surrogate is stored escaped",
        "an error message with NUL and a lone surrogate is stored escaped",
        "an exception class name of 300 characters is cut to its column",
        "an error whose str is a str subclass that raises and whose class name raises",
        "a result whose repr raises and whose class name raises"])
def test_fields_are_bounded_and_storable_and_later_runs_still_recorded(history_api, func, args,
                                                                      outcome, shows):
    scheduler, client = history_api
    scheduler.add_job("odd", func, args=args, **NOW_PLUS)
    run, = ended_runs(scheduler, "odd")
    assert run.outcome == outcome
    check_bounded(run)
    for field, text in shows.items():
        assert text in getattr(run, field)
    # the writer goes on: a run after it is recorded too, and the API shows both
    scheduler.add_job("after", "tests.tasks:record", **NOW_PLUS)
    ended_runs(scheduler, "after")
    response = client.get("/runs")
    assert response.status_code == 200 and response.json["total"] == 2
    assert_totals_are_real_counts(scheduler)


# -- last_run in the job JSON ---------------------------------------------------------------

def test_last_run_is_shown_in_every_job_answer_and_null_before_any_run(history_api):
    scheduler, client = history_api
    added = client.post("/jobs", json={"id": "nightly", "func": "tests.tasks:fail",
                                       "trigger": "cron", "hour": "3"})
    assert added.status_code == 200 and added.json["last_run"] is None
    assert client.get("/jobs/nightly").json["last_run"] is None
    assert client.post("/jobs/nightly/run").status_code == 200
    run, = ended_runs(scheduler, "nightly")
    expected = {"id": run.id, "outcome": "error",
                "scheduled_at": run.to_json()["scheduled_at"],
                "started_at": run.to_json()["started_at"], "duration": run.duration,
                "error_message": "boom"}
    listing = client.get("/jobs").json
    assert [job["last_run"] for job in listing] == [expected]
    assert client.get("/jobs", query_string={"limit": 10}).json["jobs"][0]["last_run"] == expected
    assert client.get("/jobs/nightly").json["last_run"] == expected
    patched = client.patch("/jobs/nightly", json={"hour": "4"})
    assert patched.status_code == 200 and patched.json["last_run"] == expected
    assert client.post("/jobs/nightly/pause").json["last_run"] == expected
    assert client.post("/jobs/nightly/resume").json["last_run"] == expected
    # a later run replaces it
    assert client.patch("/jobs/nightly", json={"func": "tests.tasks:record"}).status_code == 200
    assert client.post("/jobs/nightly/run").status_code == 200
    ended_runs(scheduler, "nightly", count=2)
    last = client.get("/jobs/nightly").json["last_run"]
    assert last["outcome"] == "success" and last["error_message"] is None


# -- pages, totals and filters ---------------------------------------------------------------

#: Recent enough that no retention rule removes the runs a test records from it.
BASE = (datetime.now(timezone.utc) - timedelta(hours=2)).replace(minute=0, second=0,
                                                                 microsecond=0)


def at(minutes: int, hours_east: int = 0) -> str:
    """BASE + ``minutes`` as ISO 8601, at an offset of ``hours_east``."""
    return (BASE + timedelta(minutes=minutes)).astimezone(
        timezone(timedelta(hours=hours_east))).isoformat()


def recorded_series(scheduler) -> list[tuple[str, str, datetime]]:
    """25 runs of two jobs, recorded in order, one a minute from BASE."""
    outcomes = ["success", "error", "missed", "skipped", "success"]
    series = [("alpha" if n % 3 else "beta", outcomes[n % 5], BASE + timedelta(minutes=n))
              for n in range(25)]
    for job_id, outcome, when in series:
        scheduler.recorder.record(job_id, "schedule", when, outcome)
        scheduler.recorder.flush()  # each its own write: recorded in this order
    return series


def ids_of(body: dict) -> list[tuple[str, str]]:
    return [(run["job_id"], run["scheduled_at"]) for run in body["runs"]]


def test_pages_are_newest_first_with_totals_and_filters(history_api):
    scheduler, client = history_api
    for job_id in ("alpha", "beta"):
        scheduler.add_job(job_id, "tests.tasks:record", trigger="cron", hour="3")
    series = recorded_series(scheduler)
    newest_first = [(job_id, when.isoformat()) for job_id, _, when in reversed(series)]

    body = client.get("/runs", query_string={"limit": 10, "offset": 5}).json
    assert (body["total"], body["limit"], body["offset"]) == (25, 10, 5)
    assert ids_of(body) == newest_first[5:15]
    assert ids_of(client.get("/runs", query_string={"offset": 20}).json) == newest_first[20:]
    beyond = client.get("/runs", query_string={"offset": 100}).json
    assert beyond["runs"] == [] and beyond["total"] == 25

    alpha = [run for run in newest_first if run[0] == "alpha"]
    body = client.get("/jobs/alpha/runs", query_string={"limit": 3}).json
    assert body["total"] == len(alpha) and ids_of(body) == alpha[:3]

    def expect(job_id, outcomes=(), since=None, until=None):
        return [(job, when.isoformat()) for job, outcome, when in reversed(series)
                if job_id in (None, job) and (not outcomes or outcome in outcomes)
                and (since is None or when >= since) and (until is None or when < until)]

    cases = [
        ("/runs", {"outcome": "error"}, expect(None, ["error"])),
        ("/runs", {"outcome": "error,missed"}, expect(None, ["error", "missed"])),
        ("/runs", [("outcome", "error"), ("outcome", "skipped")],
         expect(None, ["error", "skipped"])),
        ("/jobs/beta/runs", {"outcome": "success"}, expect("beta", ["success"])),
        ("/runs", {"since": (BASE + timedelta(minutes=20)).isoformat()},
         expect(None, since=BASE + timedelta(minutes=20))),
        ("/runs", {"until": at(5)}, expect(None, until=BASE + timedelta(minutes=5))),
        ("/jobs/alpha/runs", {"since": at(4), "until": at(14, hours_east=1),
                              "outcome": "success"},
         expect("alpha", ["success"], BASE + timedelta(minutes=4),
                BASE + timedelta(minutes=14))),
        ("/runs", {"outcome": "lost"}, []),
    ]
    for path, query, expected in cases:
        body = client.get(path, query_string=query).json
        assert (ids_of(body), body["total"]) == (expected, len(expected)), (path, query)
    assert scheduler.get_runs("beta", outcome="error").total == len(expect("beta", ["error"]))
    assert scheduler.get_runs(outcome=("missed",), since=BASE + timedelta(minutes=10),
                              limit=2).total == len(expect(None, ["missed"],
                                                           BASE + timedelta(minutes=10)))
    assert_totals_are_real_counts(scheduler)


def test_dates_without_an_offset_are_in_the_schedulers_time_zone(tmp_path):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_TIMEZONE="Asia/Tokyo") as (
            scheduler, client):
        for job_id in ("alpha", "beta"):
            scheduler.add_job(job_id, "tests.tasks:record", trigger="cron", hour="3")
        series = recorded_series(scheduler)
        after_ten = [when for _, _, when in series if when >= BASE + timedelta(minutes=10)]
        tokyo = at(10, hours_east=9)[:-len("+09:00")]  # no offset: the scheduler's zone
        body = client.get("/runs", query_string={"since": tokyo}).json
        assert body["total"] == len(after_ten)
        assert body["runs"][-1]["scheduled_at"] == at(10, hours_east=9)
        naive = datetime.fromisoformat(tokyo)
        assert scheduler.get_runs(since=naive).total == len(after_ten)
        assert scheduler.get_runs(until=naive).total == len(series) - len(after_ten)


@pytest.mark.parametrize("path", ["/runs", "/jobs/alpha/runs"])
@pytest.mark.parametrize("query, field", [
    ({"outcome": "succes"}, "outcome"),
    ({"outcome": "success,"}, "outcome"),
    ({"outcome": "RUNNING"}, "outcome"),
    ({"since": "yesterday"}, "since"),
    ({"until": "2026-13-01T00:00:00Z"}, "until"),
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"offset": "-1"}, "offset"),
    ({"outcomes": "error"}, "outcomes"),
    ({"job_id": "alpha"}, "job_id"),
], ids=["misspelt outcome", "empty outcome after a comma", "outcome in capitals",
        "since not a date", "until with month 13", "limit 0", "limit over 1000",
        "limit not a number", "negative offset", "unknown parameter outcomes",
        "unknown parameter job_id"])
def test_a_bad_query_is_a_400_naming_its_parameter(history_api, path, query, field):
    scheduler, client = history_api
    scheduler.add_job("alpha", "tests.tasks:record", trigger="cron", hour="3")
    response = client.get(path, query_string=query)
    assert response.status_code == 400, response.json
    assert response.json["error_message"].startswith(field)


def test_runs_of_an_unknown_job_are_a_404_and_of_a_deleted_one_still_listed(history_api):
    scheduler, client = history_api
    assert client.get("/jobs/nobody/runs").status_code == 404
    client.post("/jobs", json={"id": "brief", "func": "tests.tasks:record",
                               "trigger": "cron", "hour": "3"})
    assert client.get("/jobs/brief/runs").json == {"runs": [], "total": 0, "limit": 100,
                                                   "offset": 0}
    assert client.post("/jobs/brief/run").status_code == 200
    run, = ended_runs(scheduler, "brief")
    assert client.delete("/jobs/brief").status_code == 204
    assert client.get("/jobs/brief").status_code == 404
    body = client.get("/jobs/brief/runs").json
    assert body["total"] == 1 and body["runs"][0]["id"] == run.id
    assert [r["id"] for r in client.get("/runs").json["runs"]] == [run.id]
    # a filter that matches none of its runs is an empty page, not a 404
    filtered = client.get("/jobs/brief/runs", query_string={"outcome": "error"})
    assert filtered.status_code == 200 and filtered.json["total"] == 0


# -- retention ------------------------------------------------------------------------------

def test_prune_keeps_each_jobs_last_runs_and_young_ones_and_the_counts_stay_true(history_api):
    scheduler, client = history_api
    history = scheduler.history
    live = ("alpha", "beta", "gamma")  # "removed" is no job: its runs are kept for age only
    for job_id in live:
        scheduler.add_job(job_id, "tests.tasks:record", trigger="cron", hour="3")
    old = datetime.now(timezone.utc) - timedelta(days=10)
    young = datetime.now(timezone.utc) - timedelta(hours=1)
    for n in range(8):  # 8 old runs of each job, then 2 young ones of "alpha"
        for job_id in ("alpha", "beta"):
            scheduler.recorder.record(job_id, "schedule", old + timedelta(minutes=n),
                                      ["success", "error"][n % 2])
    scheduler.recorder.record("gamma", "schedule", old, "success")  # alone: the last of gamma
    for n in range(2):
        scheduler.recorder.record("removed", "schedule", old + timedelta(minutes=n), "error")
    for n in range(2):
        scheduler.recorder.record("alpha", "schedule", young + timedelta(minutes=n), "success")
    assert scheduler.recorder.flush()
    before = {job_id: scheduler.get_runs(job_id).runs for job_id in ("alpha", "beta", "gamma")}

    deleted = history.prune(keep_runs=3, keep_seconds=7 * 86_400, keep_events_seconds=86_400,
                            live_jobs=live, batch=2)  # small batches: several transactions
    after = {job_id: scheduler.get_runs(job_id).runs for job_id in ("alpha", "beta", "gamma")}
    # alpha: its 2 young runs and 1 more of its last 3; beta: its last 3; gamma: its only one
    assert after == {"alpha": before["alpha"][:3], "beta": before["beta"][:3],
                     "gamma": before["gamma"]}
    # (the removed job's 2 may have gone already: the new leader prunes as it starts)
    assert (10 - 3) + (8 - 3) <= deleted <= (10 - 3) + (8 - 3) + 2
    assert scheduler.get_runs("removed").total == 0
    assert scheduler.last_runs(["removed"]) == {}  # its last run went with its runs
    assert client.get("/jobs/removed/runs").status_code == 404
    assert_totals_are_real_counts(scheduler)
    assert client.get("/runs").json["total"] == 7

    # nothing old is kept beyond the last N when N is 0; young runs stay
    history.prune(keep_runs=0, keep_seconds=86_400, keep_events_seconds=86_400,
                  live_jobs=live)
    assert [run.scheduled_at for run in scheduler.get_runs().runs] == [
        young + timedelta(minutes=1), young]
    assert_totals_are_real_counts(scheduler)


def test_the_leaders_housekeeping_prunes_with_the_configured_retention(tmp_path,
                                                                     store_config):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_HISTORY_KEEP_RUNS=2,
                     SCHEDULER_HISTORY_KEEP_DAYS=0.5, **store_config) as (scheduler, _):
        recorder = scheduler.recorder
        assert (recorder.keep_runs, recorder.keep_days) == (2, 0.5)
        scheduler.add_job("alpha", "tests.tasks:record", trigger="cron", hour="3")
        old = datetime.now(timezone.utc) - timedelta(days=1)
        for n in range(5):
            recorder.record("alpha", "schedule", old + timedelta(minutes=n), "success")
        recorder.record("alpha", "schedule", datetime.now(timezone.utc), "error")
        assert recorder.flush()
        recorder.housekeeping_now()
        assert wait_until(lambda: scheduler.get_runs("alpha").total == 2)
        assert [run.outcome for run in scheduler.get_runs("alpha").runs] == ["error", "success"]
        assert_totals_are_real_counts(scheduler)


# -- lost runs ----------------------------------------------------------------------------

def test_a_run_marked_lost_that_ends_after_all_gets_its_real_outcome(history_api):
    scheduler, client = history_api
    scheduler.add_job("long", "tests.tasks:wait_for_gate", **NOW_PLUS)
    running = wait_until(lambda: scheduler.recorder.flush() and scheduler.get_runs(
        "long", outcome="running").runs)
    assert running, "the run was not recorded as it started"
    # as another leader would see it: its heartbeat is older than any allowed
    marked = scheduler.history.mark_lost("another-host", 1, (), time.time() + 3600)
    assert [row["id"] for row in marked] == [running[0].id]
    shown = client.get("/jobs/long/runs").json["runs"][0]
    assert shown["outcome"] == "lost" and shown["error"]["type"] == "ProcessLost"
    assert "found by another-host" in shown["error"]["message"]
    assert client.get("/runs", query_string={"outcome": "lost"}).json["total"] == 1
    assert_totals_are_real_counts(scheduler)

    tasks.gate.set()
    run = wait_until(lambda: scheduler.recorder.flush() and scheduler.get_runs(
        "long", outcome="success").runs)
    assert run and run[0].id == running[0].id and run[0].error_type is None
    assert scheduler.get_runs("long").total == 1
    assert client.get("/runs", query_string={"outcome": "lost"}).json["total"] == 0
    assert_totals_are_real_counts(scheduler)


def test_the_leader_marks_lost_the_runs_of_a_dead_process_and_its_own_forgotten_ones(
        history_api):
    scheduler, _ = history_api
    history = scheduler.history
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    host, node = scheduler.recorder.host, scheduler.recorder.node
    now = time.time()
    rows = [{"id": f"{job_id:<32}", "job_id": job_id, "reason": "schedule",
             "outcome": "running", "scheduled_at": now, "started_at": now,
             "finished_at": None, "duration": None, "heartbeat_at": now, "error_type": None,
             "error_message": None, "traceback": None, "result": None, "host": host,
             "node": node, "pid": pid}
            for job_id, pid in (("dead", dead), ("alive", os.getppid()),
                                ("forgotten", os.getpid()))]
    with history.engine.begin() as connection:
        history.write(connection, rows, [], [])
    marked = history.mark_lost(node, os.getpid(), set(), time.time() - 60)
    # The leader's own housekeeping may have marked some first: judge by what is stored.
    assert {row["job_id"] for row in marked} <= {"dead", "forgotten"}
    assert {job_id: scheduler.get_runs(job_id).runs[0].outcome
            for job_id in ("dead", "alive", "forgotten")} == {
        "dead": "lost", "alive": "running", "forgotten": "lost"}
    assert_totals_are_real_counts(scheduler)


# -- other executors and stores ------------------------------------------------------------

def test_a_foreign_executor_still_gets_its_runs_recorded_by_outcome(tmp_path, store_config):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_EXECUTORS={
            "default": ThreadPoolExecutor()}, **store_config) as (scheduler, client):
        scheduler.add_job("fine", "tests.tasks:give", args=[7], **NOW_PLUS)
        scheduler.add_job("bad", "tests.tasks:fail", next_run_time=None)
        scheduler.run_job("bad")
        fine, = ended_runs(scheduler, "fine")
        bad, = ended_runs(scheduler, "bad")
        assert (fine.outcome, fine.result) == ("success", "7")
        assert (bad.outcome, bad.error_type, bad.error_message) == ("error", "RuntimeError",
                                                                    "boom")
        assert client.get("/jobs/bad").json["last_run"]["outcome"] == "error"
        assert_totals_are_real_counts(scheduler)


def test_a_run_released_after_its_pool_shut_down_gives_its_instance_back(tmp_path):
    """A shutdown racing a scheduling step: the store write that releases a held run finds
    the pool shut down. Neither the scheduling thread (whose write it is) may die of it, nor
    the job keep an instance that never runs (max_instances would skip it after a restart)."""
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, _):
        job = scheduler.add_job("held", "tests.tasks:record", next_run_time=None,
                                max_instances=1)
        executor = engine.executors(scheduler.scheduler)["default"]
        executor._pool.shutdown(wait=True)  # as APScheduler's shutdown does, mid-step
        executor.submit_job(job, [datetime.now(timezone.utc)])  # held until stored
        store = engine.jobstores(scheduler.scheduler)["default"]
        store.update_job(job)  # the write that releases it: no error reaches the writer
        executor._pool = type(executor._pool)(1)
        executor.submit_job(job, engine.ManualRun([datetime.now(timezone.utc)]))
        ended_runs(scheduler, "held")  # the instance was given back: it runs


def test_a_paused_scheduler_shut_down_hands_no_overdue_job_to_its_closed_pool(tmp_path,
                                                                                caplog):
    """APScheduler's loop takes one more step after shutdown() closed the pool: each overdue
    job of a paused scheduler failed to start there, was logged as an error, recorded as a
    failed run, and lost its run (its next run time moved on)."""
    overdue = datetime(2020, 1, 1, tzinfo=timezone.utc)
    with running_api(tmp_path / "jobs.sqlite", paused=True) as (scheduler, _):
        for number in range(3):
            scheduler.add_job(f"overdue-{number}", "tests.tasks:record", trigger="interval",
                              seconds=3600, next_run_time=overdue)
        scheduler.shutdown(wait=True)
        time.sleep(0.3)  # where the scheduling thread's last step ran
        assert scheduler.recorder is not None and scheduler.recorder.flush()
        store = engine.jobstores(scheduler.scheduler)["default"]
        with store.engine.connect() as connection:
            stored = dict(connection.execute(select(store.jobs_t.c.id,
                                                    store.jobs_t.c.next_run_time)).all())
        assert stored == {f"overdue-{number}": overdue.timestamp() for number in range(3)}
        assert scheduler.get_runs().total == 0
    assert [record.getMessage() for record in caplog.records
            if record.levelno >= logging.WARNING] == []


def test_the_memory_job_store_keeps_its_history_in_a_private_sqlite_file(tmp_path):
    with running_api(tmp_path / "unused.sqlite",
                     SCHEDULER_JOBSTORES={"default": MemoryJobStore()}) as (scheduler, client):
        database = scheduler.history.engine.url.database
        assert database and database.endswith("history.sqlite")
        assert not str(database).startswith(str(tmp_path))
        assert client.post("/jobs", json={"id": "mem", "func": "tests.tasks:fail",
                                          "trigger": "cron", "hour": "3"}).status_code == 200
        assert client.post("/jobs/mem/run").status_code == 200
        run, = ended_runs(scheduler, "mem")
        assert client.get("/jobs/mem/runs").json["runs"][0]["error"]["message"] == "boom"
        assert client.get("/jobs").json[0]["last_run"]["id"] == run.id
        assert_totals_are_real_counts(scheduler)


def test_a_locked_database_loses_no_record_once_it_is_back(tmp_path):
    store = tmp_path / "jobs.sqlite"
    with running_api(store) as (scheduler, _):
        for job_id, func in (("quick", "record"), ("bad", "fail"), ("quick too", "record")):
            scheduler.add_job(job_id, f"tests.tasks:{func}", next_run_time=None)
        with held_sqlite_write_lock(store, "EXCLUSIVE"):
            for job_id in ("quick", "bad", "quick too"):
                scheduler.run_job(job_id)  # runs at once; its records wait for the database
            # longer than SQLite's 5 s busy timeout: the writer fails and tries again
            assert not scheduler.recorder.flush(timeout=6.5)
        assert scheduler.recorder.flush(timeout=20)
        outcomes = sorted(run.outcome for run in scheduler.get_runs().runs)
        assert outcomes == ["error", "success", "success"]
        assert_totals_are_real_counts(scheduler)


def test_the_writer_backs_off_while_the_database_is_away_and_then_writes_everything(
        history_api, monkeypatch):
    scheduler, client = history_api
    recorder, history = scheduler.recorder, scheduler.history
    write, attempts = history.write, []

    def unreachable(*args: Any) -> None:
        attempts.append(time.monotonic())
        raise OperationalError("INSERT ...", {}, ConnectionError("the database is away"))

    monkeypatch.setattr(history, "write", unreachable)
    started = time.monotonic()
    for n in range(50):  # every record, and every flush, wakes the writer
        recorder.record("away", "schedule", BASE + timedelta(minutes=n), "success")
        recorder.flush(timeout=0.03)
    elapsed = time.monotonic() - started
    # tries at 0.2, 0.4, 0.8 s... apart, not one for each of the 50 records and flushes
    assert 2 <= len(attempts) <= 3 + elapsed / 0.2, (len(attempts), elapsed)
    monkeypatch.setattr(history, "write", write)
    assert recorder.flush(timeout=15)
    assert client.get("/runs").json["total"] == 50
    assert_totals_are_real_counts(scheduler)


def test_a_job_id_no_database_stores_as_it_is_is_recorded_escaped_and_later_runs_too(
        tmp_path):
    with running_api(tmp_path / "unused.sqlite",
                     SCHEDULER_JOBSTORES={"default": MemoryJobStore()}) as (scheduler, client):
        # A memory store takes any id; UTF-8 cannot encode this one.
        scheduler.add_job("lone \ud800 surrogate", "tests.tasks:record", **NOW_PLUS)
        scheduler.add_job("plain", "tests.tasks:record", **NOW_PLUS)
        ended_runs(scheduler, "plain")

        def shown() -> list[str]:
            scheduler.recorder.flush()
            return sorted(run["job_id"] for run in client.get("/runs").json["runs"])

        # (both: the pool's thread of the first may start after the second's run ended)
        wait_until(lambda: len(shown()) >= 2)
        assert shown() == ["lone \\ud800 surrogate", "plain"]
        scheduler.add_job("later", "tests.tasks:record", **NOW_PLUS)
        ended_runs(scheduler, "later")
        assert_totals_are_real_counts(scheduler)


def test_a_host_not_allowed_to_run_the_scheduler_shows_the_runs_of_those_that_are(
        tmp_path, store_config):
    with running_api(tmp_path / "jobs.sqlite", **store_config) as (scheduler, _):
        watcher, app = make_scheduler(tmp_path / "jobs.sqlite",
                                      SCHEDULER_ALLOWED_HOSTS=["elsewhere"], **store_config)
        assert watcher.start() is False
        client = APIClient(app)
        scheduler.add_job("shared", "tests.tasks:fail", trigger="cron", hour="3")
        scheduler.run_job("shared")
        run, = ended_runs(scheduler, "shared")
        assert [r["id"] for r in client.get("/runs").json["runs"]] == [run.id]
        assert client.get("/jobs/shared/runs").json["total"] == 1
        assert client.get("/runs", query_string={"outcome": "error"}).json["total"] == 1
        assert watcher.get_runs("shared").runs == [run]
        assert watcher.last_runs(["shared"])["shared"].startswith(f'{{"id":"{run.id}"')


def test_before_any_process_started_on_a_store_there_are_no_runs(tmp_path, store_config):
    scheduler, app = make_scheduler(tmp_path / "jobs.sqlite", **store_config)  # not started
    body = APIClient(app).get("/runs")
    assert body.status_code == 200
    assert body.json == {"runs": [], "total": 0, "limit": 100, "offset": 0}
    assert scheduler.last_runs(["any"]) == {}


# -- secrets ----------------------------------------------------------------------------------

PASSWORD = "Zq8-history-pass-7731"


def test_no_password_or_authorization_value_is_ever_stored_in_the_history(tmp_path,
                                                                         store_config):
    scheduler, app = make_scheduler(tmp_path / "jobs.sqlite", SCHEDULER_EXECUTORS={
        "default": engine.StoreFirstThreadPoolExecutor(), "inline": DebugExecutor()},
        **store_config)
    scheduler.authenticate(lambda auth: compare_secrets(auth["username"], "admin")
                           and compare_secrets(auth["password"], PASSWORD))
    scheduler.start()
    try:
        token = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        client = APIClient(app)
        headers = {"Authorization": f"Basic {token}", "X-Api-Key": PASSWORD}
        for executor in ("default", "inline"):  # the inline one runs in the request's thread
            job_id = f"nosy-{executor}"
            added = client.post("/jobs", headers=headers, auth=False, json={
                "id": job_id, "func": "tests.tasks:fail_with_request", "executor": executor,
                "trigger": "cron", "hour": "3"})
            assert added.status_code == 200, added.json
            assert client.post(f"/jobs/{job_id}/run", headers=headers,
                               auth=False).status_code == 200
            ended_runs(scheduler, job_id)
        for query in ({"outcome": PASSWORD}, {"since": PASSWORD}, {PASSWORD: "1"}):
            assert client.get("/runs", headers=headers, auth=False,
                              query_string=query).status_code == 400
        assert client.get("/runs", auth=False, headers={
            "Authorization": "Basic " + base64.b64encode(b"admin:wrong-9931").decode()
        }).status_code == 401
        assert client.post("/jobs/nosy-default/run", headers=headers,
                           auth=False).status_code == 200
        ended_runs(scheduler, "nosy-default", count=2)
        scheduler.recorder.flush()
        shown = client.get("/runs", headers=headers, auth=False).json["runs"]
        assert len(shown) == 3 and all(run["outcome"] == "error" for run in shown)
        stored = every_stored_text(scheduler.history)
        assert "in fail_with_request" in stored  # the scan does see the runs
        for secret in (PASSWORD, token, "wrong-9931"):
            assert secret not in stored
    finally:
        scheduler.shutdown(wait=False)


def test_run_ids_are_unique_and_a_forked_process_draws_its_own():
    from scheduler_api.recorder import RUN_ID_PROCESS_DIGITS, new_run_id

    ids = [new_run_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and {len(run_id) for run_id in ids} == {32}
    assert ids == sorted(ids), "a process's serials keep their order"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a gunicorn worker or a Celery child after the fork
        os.write(write, new_run_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert len(child) == 32 and child[:RUN_ID_PROCESS_DIGITS] != ids[0][:RUN_ID_PROCESS_DIGITS]
