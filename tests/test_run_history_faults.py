"""Run history under attack: what the independent review of issue 15 broke, as tests.

Each case once stopped recording for good, lost a run's end, or showed wrong data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select
from sqlalchemy.exc import OperationalError

from scheduler_api import APScheduler
from scheduler_api import recorder as recorder_module
from scheduler_api.history import RunHistory, clip
from scheduler_api.recorder import RunRecorder

from . import tasks
from .api_helpers import APIClient, running_api
from .conftest import POSTGRES_URL


def raise_surrogate() -> None:
    raise ValueError("cannot process /data/r\udcffport.csv")


def raise_nul() -> None:
    raise ValueError("bad byte: \x00 here")


def raise_long_name() -> None:
    raise type("E" * 400, (Exception,), {})("a class name longer than a column")


class ExitingRepr:
    def __repr__(self) -> str:
        raise SystemExit(3)


class SurrogateRepr:
    def __repr__(self) -> str:
        return "report for \udcff"


class InterruptingError(Exception):
    def __str__(self) -> str:
        raise KeyboardInterrupt


def return_exiting_repr() -> ExitingRepr:
    return ExitingRepr()


def return_surrogate_repr() -> SurrogateRepr:
    return SurrogateRepr()


def raise_interrupting_error() -> None:
    raise InterruptingError


def succeed() -> str:
    return "ok"


HERE = __name__


def wait_for_runs(scheduler: APScheduler, count: int, **filters: Any) -> list[Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert scheduler.recorder is not None
        scheduler.recorder.flush()
        runs = scheduler.get_runs(**filters).runs
        if len(runs) >= count and all(run.outcome != "running" for run in runs):
            return runs
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} ended runs: {scheduler.get_runs(**filters)}")


STORES = [pytest.param("sqlite", id="sqlite"),
          pytest.param("postgresql", id="postgresql", marks=pytest.mark.skipif(
              not POSTGRES_URL, reason="set SCHEDULER_TEST_POSTGRES_URL to test PostgreSQL"))]


@pytest.fixture(params=STORES)
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[APScheduler,
                                                                         APIClient]]:
    config = {}
    if request.param == "postgresql":
        table = f"faults_{int(time.time() * 1e6)}"
        config = {"SCHEDULER_JOBSTORE_URL": POSTGRES_URL, "SCHEDULER_JOBSTORE_TABLE": table}
    with running_api(tmp_path / "jobs.sqlite", **config) as started:
        yield started


@pytest.mark.parametrize("job, outcome, field, shown", [
    ("raise_surrogate", "error", "error_message", "r\\udcffport.csv"),
    ("raise_nul", "error", "error_message", "bad byte: \\x00 here"),
    ("raise_long_name", "error", "error_type", "E" * 100),
    ("return_surrogate_repr", "success", "result", "report for \\udcff"),
    ("return_exiting_repr", "success", "result", "repr() failed"),
    ("raise_interrupting_error", "error", "error_message", "<str() failed>"),
], ids=["lone surrogate in a message", "NUL in a message", "class name of 400 characters",
        "lone surrogate in a repr", "repr raising SystemExit", "str raising KeyboardInterrupt"])
def test_a_run_any_database_refuses_as_is_is_stored_escaped_and_recording_goes_on(
        api: tuple[APScheduler, APIClient], job: str, outcome: str, field: str,
        shown: str) -> None:
    scheduler, client = api
    scheduler.add_job("odd", f"{HERE}:{job}", trigger="date", run_date=datetime(2100, 1, 1))
    scheduler.add_job("plain", f"{HERE}:succeed", trigger="date", run_date=datetime(2100, 1, 1))
    scheduler.run_job("odd")
    (run,) = wait_for_runs(scheduler, 1, job_id="odd")
    assert run.outcome == outcome
    assert shown in getattr(run, field)
    assert len(run.error_type or "") <= 255
    scheduler.run_job("plain")  # the writer was not stuck on the odd one
    (after,) = wait_for_runs(scheduler, 1, job_id="plain")
    assert (after.outcome, after.result) == ("success", "'ok'")
    listed = client.get("/jobs").json
    assert {job["id"]: job["last_run"]["outcome"] for job in listed} == {
        "odd": outcome, "plain": "success"}


@settings(deadline=None)  # (a loaded machine's pause is no failure of clip)
@given(st.text(), st.integers(min_value=1, max_value=20_000))
def test_clip_never_answers_more_than_its_limit(text: str, limit: int) -> None:
    clipped = clip(text * 3, limit)
    assert len(clipped) <= limit
    clipped.encode("utf-8")
    assert "\x00" not in clipped


def test_the_writer_outlives_a_thousand_failed_writes_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, _):
        recorder = scheduler.recorder
        assert recorder is not None and scheduler.history is not None
        write = scheduler.history.write
        failures = {"left": 1100}

        def failing_write(*args: Any, **kwargs: Any) -> None:
            if failures["left"]:
                failures["left"] -= 1
                raise OperationalError("INSERT ...", {}, Exception("database is locked"))
            write(*args, **kwargs)

        monkeypatch.setattr(scheduler.history, "write", failing_write)
        monkeypatch.setattr(recorder._stopped, "wait", lambda timeout: False)  # no backoff
        scheduler.add_job("plain", f"{HERE}:succeed", trigger="date",
                          run_date=datetime(2100, 1, 1), max_instances=3)
        for _ in range(3):
            scheduler.run_job("plain")
        runs = wait_for_runs(scheduler, 3, job_id="plain")
        assert failures["left"] == 0
        assert [run.outcome for run in runs] == ["success"] * 3
        assert recorder._thread is not None and recorder._thread.is_alive()


def _old_run(job_id: str, seconds_ago: float, outcome: str = "success") -> dict:
    moment = time.time() - seconds_ago
    return {"id": f"{job_id}-{seconds_ago}".ljust(32, "0")[:32], "job_id": job_id,
            "reason": "schedule", "outcome": outcome, "scheduled_at": moment,
            "started_at": moment, "finished_at": moment, "duration": 0.0,
            "heartbeat_at": moment, "error_type": None, "error_message": None,
            "traceback": None, "result": None, "host": "h", "node": "h/1", "pid": 1}


def test_retention_forgets_removed_jobs_and_keeps_what_it_promises(tmp_path: Path) -> None:
    week, day = 7 * 86_400, 86_400
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, _):
        assert scheduler.history is not None
        # Tables of its own: the leader's housekeeping prunes the scheduler's meanwhile.
        history = RunHistory(scheduler.history.engine, "retention")
        history.create_schema()
        rows = [_old_run(f"gone-{index}", week + day) for index in range(1200)]
        rows += [_old_run("live", week + day + index) for index in range(5)]
        rows += [_old_run("live", 60 + index) for index in range(3)]
        rows += [_old_run("gone-young", 60)]
        with history.engine.begin() as connection:
            history.write(connection, rows, [], [])
        deleted = history.prune(keep_runs=4, keep_seconds=week, keep_events_seconds=day,
                                live_jobs=["live"])
        assert deleted == 1200 + 4  # removed jobs' old runs; live's beyond its last 4
        with history.engine.connect() as connection:
            kept = sorted(connection.execute(select(history.runs.c.job_id)).scalars())
            count_rows = sorted(connection.execute(
                select(history.counts.c.scope, history.counts.c.job_id).where(
                    history.counts.c.scope != "changes")).all())
            last_runs = set(connection.execute(select(history.last_runs.c.job_id)).scalars())
        assert kept == ["gone-young"] + ["live"] * 4
        assert count_rows == [("all", ""), ("job", "gone-young"), ("job", "live"),
                              ("ran", "gone-young"), ("ran", "live"), ("ran_all", "")]
        assert last_runs == {"live", "gone-young"}
        assert history.page().total == 5


def test_a_job_added_again_under_a_removed_jobs_id_has_no_last_run(
        api: tuple[APScheduler, APIClient]) -> None:
    scheduler, client = api
    scheduler.add_job("again", f"{HERE}:raise_nul", trigger="date",
                      run_date=datetime(2100, 1, 1))
    scheduler.run_job("again")
    wait_for_runs(scheduler, 1, job_id="again")
    assert client.get("/jobs/again").json["last_run"]["outcome"] == "error"
    assert client.delete("/jobs/again").status_code == 204
    added = client.post("/jobs", json={"id": "again", "func": "tests.tasks:record",
                                       "trigger": "date", "run_date": "2100-01-01T00:00:00Z"})
    assert added.json["last_run"] is None
    assert scheduler.recorder is not None and scheduler.recorder.flush()
    assert client.get("/jobs/again").json["last_run"] is None
    assert client.get("/jobs/again/runs").json["total"] == 1, "its runs stay, by id"


def test_a_date_job_added_again_after_the_scheduler_removed_it_has_no_last_run(
        api: tuple[APScheduler, APIClient]) -> None:
    # The scheduler removes a date job as it runs it (store first: before the run), so its
    # removal cannot forget a last run that does not exist yet; adding the id anew does.
    scheduler, client = api
    scheduler.add_job("once", f"{HERE}:succeed", trigger="date",
                      run_date=datetime.now(timezone.utc) + timedelta(seconds=0.3))
    wait_for_runs(scheduler, 1, job_id="once")
    assert scheduler.get_job("once") is None
    added = client.post("/jobs", json={"id": "once", "func": "tests.tasks:record",
                                       "trigger": "date", "run_date": "2100-01-01T00:00:00Z"})
    assert added.status_code == 200 and added.json["last_run"] is None
    assert scheduler.recorder is not None and scheduler.recorder.flush()
    assert client.get("/jobs/once").json["last_run"] is None
    assert client.get("/jobs/once/runs").json["total"] == 1


def test_a_run_noted_before_its_job_was_forgotten_is_not_the_new_jobs_last_run(
        api: tuple[APScheduler, APIClient]) -> None:
    # The run's end and the forgetting reach the writer in one batch: the forgetting comes
    # first in the transaction, the run is written after it, yet is not the last run.
    scheduler, _ = api
    recorder = scheduler.recorder
    assert recorder is not None
    recorder.stop()  # so that the three are written in one batch
    recorder.record("reused", "schedule", datetime.now(timezone.utc), "missed")
    recorder.forget_last_run("reused")
    recorder.record("other", "schedule", datetime.now(timezone.utc), "missed")
    recorder.start()
    assert recorder.flush()
    assert scheduler.last_runs(["reused", "other"]).keys() == {"other"}
    assert scheduler.get_runs(job_id="reused").total == 1


class FailingOnceStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """A store whose first write of a job's next run time fails (the database locked)."""

    failed = False

    def update_job(self, job: Any) -> None:
        if not FailingOnceStore.failed:
            FailingOnceStore.failed = True
            raise OperationalError("UPDATE ...", {}, Exception("database is locked"))
        super().update_job(job)


# APScheduler's scheduling thread dies of the failed write; the leader starts a new one.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_run_whose_next_run_time_was_not_stored_is_no_running_instance(tmp_path: Path) -> None:
    FailingOnceStore.failed = False
    store = FailingOnceStore(url=f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    with running_api(tmp_path / "unused.sqlite",
                     SCHEDULER_JOBSTORES={"default": store}) as (scheduler, _):
        scheduler.add_job("tick", f"{HERE}:succeed", trigger="interval", seconds=1,
                          next_run_time=datetime.now(timezone.utc) + timedelta(seconds=0.2))
        runs = wait_for_runs(scheduler, 2, job_id="tick")
        assert FailingOnceStore.failed
        assert {run.outcome for run in runs} == {"success"}, "none skipped: none was running"


def test_a_dead_pid_in_another_pid_namespace_of_the_same_host_is_not_taken_for_lost(
        tmp_path: Path) -> None:
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, _):
        history, recorder = scheduler.history, scheduler.recorder
        assert history is not None and recorder is not None
        mine = _old_run("job", 5, outcome="running")
        theirs = {**_old_run("job", 6, outcome="running"),
                  "node": recorder.host + "/another-namespace", "host": recorder.host,
                  "pid": 2**22 + 7}  # no such pid here
        dead_here = {**_old_run("job", 7, outcome="running"),
                     "node": recorder.node, "host": recorder.host, "pid": 2**22 + 9}
        with history.engine.begin() as connection:
            history.write(connection, [mine, theirs, dead_here], [], [])
        history.mark_lost(recorder.node, 12345, set(), time.time() - 60)
        # (the leader's own first housekeeping may have marked it already)
        outcomes = {row["id"]: run.outcome if (run := history.get(row["id"])) else None
                    for row in (mine, theirs, dead_here)}
        assert outcomes == {mine["id"]: "running", theirs["id"]: "running",
                            dead_here["id"]: "lost"}



# -- what the writer does with a run's start and end ---------------------------------------

class StubJob:
    """What RunRecorder.run_job reads of a job."""

    misfire_grace_time = None

    def __init__(self, job_id: str, func: Any, *args: Any) -> None:
        self.id, self.func, self.args = job_id, func, args
        self.kwargs: dict[str, Any] = {}

    def __str__(self) -> str:
        return self.id


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[RunRecorder]:
    history = RunHistory(create_engine(f"sqlite:///{tmp_path / 'runs.sqlite'}"),
                         "apscheduler_jobs", timezone.utc)
    history.create_schema()
    recorder = RunRecorder(history)
    yield recorder
    recorder.stop()


def run_in_thread(recorder: RunRecorder, job: StubJob) -> threading.Thread:
    thread = threading.Thread(target=recorder.run_job, args=(
        job, "default", [datetime.now(timezone.utc)], "apscheduler.executors.default"))
    thread.start()
    return thread


def outcomes(recorder: RunRecorder) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for run in recorder.history.page(limit=100).runs:
        found.setdefault(run.job_id, []).append(run.outcome)
    return found


def start_a_long_run(recorder: RunRecorder) -> threading.Thread:
    """Job "long" running (until tasks.gate opens), its start written."""
    recorder.start()
    tasks.gate.clear()
    thread = run_in_thread(recorder, StubJob("long", tasks.wait_for_gate))
    deadline = time.monotonic() + 10
    while outcomes(recorder) != {"long": ["running"]} and time.monotonic() < deadline:
        recorder.flush()
    assert outcomes(recorder) == {"long": ["running"]}
    return thread


def test_a_run_written_as_running_is_vouched_for_until_its_end_is_written(
        recorder: RunRecorder) -> None:
    thread = start_a_long_run(recorder)
    recorder.mark_lost()  # the leader's housekeeping, in the process that runs it
    assert outcomes(recorder) == {"long": ["running"]}
    tasks.gate.set()
    thread.join(10)
    assert recorder.flush()
    assert outcomes(recorder) == {"long": ["success"]}  # one row, updated
    assert recorder.history.page(job_id="long").total == 1
    run, = recorder.history.page(job_id="long").runs
    assert run.result == "'gate opened'" and run.duration is not None


def test_when_the_queue_overflows_a_run_whose_start_was_dropped_is_recorded_whole(
        recorder: RunRecorder, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(recorder_module, "MAX_PENDING", 3)
    for job_id in ("first", "second"):  # the writer not started: four records, one dropped
        run_in_thread(recorder, StubJob(job_id, succeed)).join(10)
    recorder.start()
    assert recorder.flush()
    assert outcomes(recorder) == {"first": ["success"], "second": ["success"]}
    assert "1 records dropped" in caplog.text


def test_when_the_queue_overflows_a_run_whose_end_was_dropped_is_left_to_be_found_lost(
        recorder: RunRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    thread = start_a_long_run(recorder)
    recorder.stop()  # the database away: records wait
    monkeypatch.setattr(recorder_module, "MAX_PENDING", 2)
    tasks.gate.set()
    thread.join(10)  # its end queued
    for job_id in ("next-1", "next-2"):  # the end dropped, then these runs' records
        run_in_thread(recorder, StubJob(job_id, succeed)).join(10)
    recorder.start()
    assert recorder.flush()
    recorder.mark_lost()
    assert recorder.flush()
    found = outcomes(recorder)
    assert found["long"] == ["lost"]
    run, = recorder.history.page(job_id="long").runs
    assert run.error_type == "ProcessLost"
