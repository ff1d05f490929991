"""Run history over HTTP under attack: query strings, last_run, totals and a page past the
end. Each test here failed when it was written."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from scheduler_api.history import RunHistory

from .api_helpers import running_api
from .test_run_history import BASE, wait_until

# -- query numbers too long for int() --------------------------------------------------------

@pytest.mark.parametrize("path", ["/runs", "/jobs/alpha/runs"])
@pytest.mark.parametrize("name", ["limit", "offset"])
def test_a_number_of_more_than_4300_digits_is_a_400_naming_it(tmp_path, path, name):
    """query_int checked isdigit() and then called int(raw), which refuses more than 4300
    digits (ValueError): a 500 "internal error" with a logged traceback. Over HTTP through
    the demo server (werkzeug, request lines up to 64 KiB); gunicorn's 4094-byte request
    line answers 414 before the app. Leading zeros are still only zeros."""
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, client):
        scheduler.add_job("alpha", "tests.tasks:record", trigger="cron", hour="3")
        response = client.get(path, query_string={name: "9" * 4301})
        assert response.status_code == 400, response.json
        assert response.json["error_message"].startswith(name)
        padded = client.get(path, query_string={name: "0" * 5000 + "1"})
        assert padded.status_code == 200 and padded.json[name] == 1


# -- since and until: ISO 8601 as written -----------------------------------------------------

def recorded_around_a_second(scheduler) -> str:
    """Two runs, due 0.2 s and 0.7 s after a whole second; that second, as ISO 8601 (UTC)."""
    second = BASE + timedelta(minutes=30)
    for fraction in (0.2, 0.7):
        scheduler.recorder.record("alpha", "schedule", second + timedelta(seconds=fraction),
                                  "success")
    assert scheduler.recorder.flush()
    return second.strftime("%Y-%m-%dT%H:%M:%S")


@pytest.mark.parametrize("fraction", [".5", ".500"],
                         ids=["half a second in one digit",
                              "milliseconds, as JavaScript's toISOString writes them"])
def test_a_fraction_of_a_second_in_since_and_until_is_read_as_a_fraction(tmp_path, fraction):
    """APScheduler's date regex reads the fraction's digits as a count of microseconds:
    '.5' is 5 us and '.500' is 500 us, not half a second. since=<second>.5 lists the run due
    at <second>.2, and until=<second>.5 leaves it out."""
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, client):
        scheduler.add_job("alpha", "tests.tasks:record", trigger="cron", hour="3")
        second = recorded_around_a_second(scheduler)
        moment = f"{second}{fraction}Z"
        later = client.get("/runs", query_string={"since": moment}).json
        earlier = client.get("/runs", query_string={"until": moment}).json
        assert [run["scheduled_at"][17:26] for run in later["runs"]] == ["00.700000"]
        assert [run["scheduled_at"][17:26] for run in earlier["runs"]] == ["00.200000"]


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", [
    "\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661",  # 2026-01-01, Arabic-Indic
    "\uff12\uff10\uff12\uff16-\uff10\uff11-\uff10\uff11",  # 2026-01-01, fullwidth
    "2026-01-01\n",
], ids=["Arabic-Indic digits", "fullwidth digits", "a trailing newline"])
def test_a_date_that_is_not_iso_8601_as_written_is_a_400(tmp_path, name, value):
    """The regex's \\d takes any Unicode digit and its $ a final newline: these are read as
    2026-01-01 (limit and offset refuse such digits: query_int's isascii)."""
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        response = client.get("/runs", query_string={name: value})
        assert response.status_code == 400, response.json
        assert response.json["error_message"].startswith(name)


# -- last_run of a job added again under a deleted job's id -----------------------------------

@pytest.mark.parametrize("read", [
    lambda client: client.get("/jobs/again").json["last_run"],
    lambda client: client.get("/jobs").json[0]["last_run"],
    lambda client: client.get("/jobs", query_string={"limit": 10}).json["jobs"][0]["last_run"],
], ids=["GET /jobs/<id>", "GET /jobs", "GET /jobs?limit=10"])
def test_a_job_added_again_after_delete_shows_no_last_run_at_once(tmp_path, store_config, read):
    """docs/run-history.md: "A job added under the id of one removed before (by DELETE ...)
    starts with null". The POST answers null, but the forgetting is only queued for the
    writer (up to 50 ms and a write later): a GET right after it shows the deleted job's
    last run (every time, in process; under gunicorn through any worker)."""
    with running_api(tmp_path / "jobs.sqlite", **store_config) as (scheduler, client):
        job = {"id": "again", "func": "tests.tasks:fail", "trigger": "cron", "hour": "3"}
        assert client.post("/jobs", json=job).status_code == 200
        assert client.post("/jobs/again/run").status_code == 200
        assert wait_until(lambda: scheduler.recorder.flush()
                          and client.get("/jobs/again").json["last_run"])
        assert client.delete("/jobs/again").status_code == 204
        added = client.post("/jobs", json=job)
        assert added.status_code == 200 and added.json["last_run"] is None
        assert read(client) is None


# -- total against the page, while runs are recorded ------------------------------------------

def test_total_matches_the_runs_of_the_same_page_while_runs_are_recorded(tmp_path,
                                                                        store_config):
    """history.page reads the page and then the count in two statements, each its own
    snapshot (SQLite without BEGIN, PostgreSQL's READ COMMITTED): a write committed between
    them makes total differ from the runs listed. Under gunicorn (3 workers, 5 jobs a second)
    3 of 180 pages did (total 96, 92 runs); in process about one page in five."""
    with running_api(tmp_path / "jobs.sqlite", **store_config) as (scheduler, client):
        stop = threading.Event()

        def record() -> None:
            while not stop.is_set():
                scheduler.recorder.record("busy", "schedule", datetime.now(timezone.utc),
                                          "success")
                time.sleep(0.002)

        writer = threading.Thread(target=record)
        writer.start()
        differing = []
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                body = client.get("/runs", query_string={"limit": 1000}).json
                if body["total"] > 1000:
                    break
                if body["total"] != len(body["runs"]):
                    differing.append((body["total"], len(body["runs"])))
        finally:
            stop.set()
            writer.join()
        assert differing == []


# -- a page past the end of a long history ------------------------------------------------------

@pytest.mark.parametrize("query", [
    {"offset": 2**31 - 1}, {"outcome": "error,success", "offset": 2**31 - 1},
    {"job_id": "job1", "offset": 10}, {"since": "2000-01-01", "offset": 50},
], ids=["all runs", "two outcomes", "one job's", "a time range"])
def test_a_page_past_the_total_reads_no_runs(tmp_path, query):
    """The page was read with OFFSET even when the offset was past the total the same request
    counts; with two outcomes SQLite walked every run (no index gives them in seq order): on
    1,000,000 runs, /runs?outcome=error,success&offset=2147483647 took 3 s of CPU for an
    empty page, the newest page 6 ms. Now only the count is read."""
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, client):
        history: RunHistory = scheduler.history
        now = time.time() - 2_000
        rows = [{"id": f"{n:032x}", "job_id": f"job{n % 2}", "reason": "schedule",
                 "outcome": "error" if n % 7 == 0 else "success", "scheduled_at": now + n,
                 "started_at": now + n, "finished_at": now + n, "duration": 0.0,
                 "heartbeat_at": now + n, "error_type": None, "error_message": None,
                 "traceback": None, "result": None, "host": "h", "node": "h/1", "pid": 1}
                for n in range(20)]
        with history.engine.begin() as connection:
            history.write(connection, rows, [], [])
        path = "/jobs/job1/runs" if query.pop("job_id", None) else "/runs"
        reading = threading.get_ident()
        statements: list[str] = []

        @event.listens_for(history.engine, "before_cursor_execute")
        def record(connection, cursor, statement, *_):  # type: ignore[no-untyped-def]
            if threading.get_ident() == reading:  # not the recorder's writer
                statements.append(" ".join(statement.split()))

        try:
            past = client.get(path, query_string=query).json
            statements_past = list(statements)
            statements.clear()
            newest = client.get(path, query_string={**query, "offset": 0}).json
        finally:
            event.remove(history.engine, "before_cursor_execute", record)
        assert past["runs"] == [] and past["total"] == newest["total"] > 0
        assert [s for s in statements_past if "OFFSET" in s.upper()] == []
        assert [s for s in statements if "OFFSET" in s.upper()]  # the newest page reads runs
