"""Attacks on the run history's recording (start and end queued apart, job_event, the
scheduling step under the store lock): each test here failed when it was written."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from . import tasks
from .api_helpers import running_api
from .test_run_history import assert_totals_are_real_counts, wait_until


@pytest.fixture(autouse=True)
def closed_gate() -> Iterator[None]:
    tasks.gate.clear()
    yield
    tasks.gate.set()


def running_run(scheduler, job_id: str):
    runs = wait_until(lambda: scheduler.recorder.flush() and scheduler.get_runs(
        job_id, outcome="running").runs)
    assert runs, f"no running run of {job_id}"
    return runs[0]


# -- last_run of a job added anew under the id of one whose run still goes on ------------

@pytest.mark.parametrize("how", ["deleted through the API", "removed by the scheduler"])
def test_a_run_still_going_when_its_job_is_replaced_does_not_become_the_new_jobs_last_run(
        tmp_path, store_config, how):
    """docs/run-history.md: "A job added under the id of one removed before (by DELETE, or
    by the scheduler after a date job's run) starts with null". The old job's run, still
    running when the new job is added, becomes the new job's last_run as it ends: its end is
    written in a later batch than the forgetting, and set_last_runs takes it."""
    with running_api(tmp_path / "jobs.sqlite", **store_config) as (scheduler, client):
        if how == "deleted through the API":
            scheduler.add_job("again", "tests.tasks:wait_for_gate", trigger="interval",
                              hours=5, next_run_time=datetime.now(timezone.utc))
        else:  # a date job: the scheduling step removes it as it starts it
            scheduler.add_job("again", "tests.tasks:wait_for_gate", trigger="date")
        old = running_run(scheduler, "again")
        if how == "deleted through the API":
            assert client.delete("/jobs/again").status_code == 204
        assert wait_until(lambda: scheduler.get_job("again") is None)
        added = client.post("/jobs", json={"id": "again", "func": "tests.tasks:record",
                                           "trigger": "interval", "hours": 5})
        assert added.status_code == 200 and added.json["last_run"] is None
        tasks.gate.set()  # the old job's run ends
        assert wait_until(lambda: scheduler.recorder.flush() and scheduler.get_runs(
            "again", outcome="success").total == 1)
        shown = client.get("/jobs/again").json["last_run"]
        assert shown is None, f"the new job shows the old job's run {old.id} as its last run"


# -- a run time the scheduler's time zone cannot show ------------------------------------

def test_a_run_due_in_year_1_is_recorded_when_the_time_zone_is_west_of_utc(tmp_path):
    """The API accepts run_date 0001-01-01T00:00:00+00:00; the job runs, but the writer
    cannot make the run's event (datetime.fromtimestamp in America/New_York is year 0:
    OverflowError), drops both its records, and writes the rest of the batch one record per
    transaction: the run is never recorded."""
    with running_api(tmp_path / "jobs.sqlite",
                     SCHEDULER_TIMEZONE="America/New_York") as (scheduler, client):
        tasks.runs.clear()
        added = client.post("/jobs", json={
            "id": "ancient", "func": "tests.tasks:record", "trigger": "date",
            "run_date": "0001-01-01T00:00:00+00:00", "misfire_grace_time": None})
        assert added.status_code == 200
        assert wait_until(lambda: tasks.runs), "the job did not run"
        assert scheduler.recorder.flush(10)
        assert client.get("/runs").json["total"] == 1, "the run was never recorded"
        # It ran a moment ago: young, whenever it was due. The leader's housekeeping (as it
        # starts, then each minute) deleted it when its age counted from its due time.
        scheduler.history.prune(keep_runs=0, keep_seconds=86_400, keep_events_seconds=86_400,
                                live_jobs=())
        assert client.get("/runs").json["total"] == 1, "retention deleted a run just made"
        assert_totals_are_real_counts(scheduler)


def test_runs_recorded_in_utc_are_still_readable_after_a_restart_west_of_utc(tmp_path):
    """The same run recorded by a UTC scheduler: once the store is opened by a scheduler in
    America/New_York, GET /runs is a 500 (OverflowError in run_from_row)."""
    store = tmp_path / "jobs.sqlite"
    with running_api(store, SCHEDULER_TIMEZONE="UTC") as (scheduler, client):
        assert client.post("/jobs", json={
            "id": "ancient", "func": "tests.tasks:record", "trigger": "date",
            "run_date": "0001-01-01T00:00:00+00:00", "misfire_grace_time": None,
        }).status_code == 200
        assert wait_until(lambda: scheduler.recorder.flush() and scheduler.get_runs().total)
    with running_api(store, SCHEDULER_TIMEZONE="America/New_York") as (scheduler, client):
        answer = client.get("/runs")
        assert answer.status_code == 200, answer.status_code
        # shown, not pruned away by the new leader's housekeeping (which made a 200 vacuous)
        assert [run["job_id"] for run in answer.json["runs"]] == ["ancient"]


# -- a restart while the writer is still writing -----------------------------------------

def recorder_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate()
            if thread.name == "scheduler_api-recorder" and thread.is_alive()]


def test_a_restart_after_a_stop_that_timed_out_leaves_one_writer_and_every_event(tmp_path):
    """shutdown() stops the recorder with a 5 s join; a write that takes longer (SQLite's
    busy timeout is 5 s, a locked database) leaves the writer alive while stop() forgets it
    (self._thread = None). start() then clears _stopping and starts a second writer; the
    first reads _stopping again at its next batch and never stops. Two writers take batches
    in turn: a start and its end written by different writers collide (UNIQUE constraint on
    the run id), the losing batch is written one record at a time and its run_started events
    are dropped; every further restart adds a writer."""
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, _):
        recorder, history = scheduler.recorder, scheduler.history
        # (other tests' schedulers may still be ending theirs)
        writers_before = set(recorder_threads())
        write, slow = history.write, threading.Event()

        def slow_write(*args, **kwargs):
            slow.wait(30)  # a database that takes longer than stop()'s 5 s
            return write(*args, **kwargs)

        history.write = slow_write
        recorder.record("before", "schedule", datetime.now(timezone.utc), "success")
        time.sleep(0.3)  # the writer has taken it
        scheduler.shutdown(wait=False)
        scheduler.start()
        slow.set()
        history.write = write
        time.sleep(1)
        writers_started = set(recorder_threads()) - writers_before

        # what the second writer does to runs: each one's start and end, in small batches
        from scheduler_api import recorder as recorder_module
        batch, recorder_module.MAX_BATCH = recorder_module.MAX_BATCH, 5
        try:
            def run(number: int) -> None:
                def func() -> int:
                    time.sleep(number % 10 * 0.02)
                    return number
                job = SimpleNamespace(id=f"job-{number % 7}", func=func, args=(), kwargs={},
                                      misfire_grace_time=None)
                recorder.run_job(job, "default", [datetime.now(timezone.utc)],
                                 "apscheduler.executors.default")

            threads = [threading.Thread(target=run, args=(number,)) for number in range(300)]
            for thread in threads:
                thread.start()
                time.sleep(0.002)
            for thread in threads:
                thread.join()
            assert recorder.flush(20)
        finally:
            recorder_module.MAX_BATCH = batch
        kinds = Counter(kind for _, kind, _ in history.events_after(0, 100_000))
        assert scheduler.get_runs(limit=1).total == 301
        assert_totals_are_real_counts(scheduler)
        assert (writers_started, kinds["run_started"]) == (set(), 300)


# -- the leader's own live run, after its heartbeats could not be written ------------------

def test_the_leader_does_not_mark_lost_a_run_it_is_running_itself(tmp_path, monkeypatch):
    """mark_lost takes any run whose heartbeat is older than LOST_AFTER_SECONDS for lost,
    also one of this very process that is in ``mine`` (_unfinished): after the database was
    away for longer than that (heartbeats failed), the leader's first housekeeping (it may
    come before the next heartbeat, up to 10 s later) marks its own live run lost and
    announces it finished; the process knows the run goes on."""
    from scheduler_api import recorder as recorder_module
    monkeypatch.setattr(recorder_module, "LOST_AFTER_SECONDS", 0.5)
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, _):
        scheduler.add_job("long", "tests.tasks:wait_for_gate", trigger="date")
        run = running_run(scheduler, "long")
        time.sleep(1)  # its heartbeat is now as old as after a minute's outage
        assert run.id in scheduler.recorder._unfinished
        scheduler.recorder.mark_lost()  # the leader's housekeeping
        assert scheduler.recorder.flush()
        assert scheduler.get_runs("long").runs[0].outcome == "running"


# -- a run's error: logging it can still raise a BaseException --------------------------------
#
# An exception class whose metaclass makes ``__module__`` raise SystemExit makes logging's
# traceback formatting raise it (Handler.emit catches only Exception; TracebackException reads
# exc_type.__module__ unguarded). When run_job suppressed only Exception around logging the
# job's error, it left run_job, and APScheduler's done-callback logged it again (in the pool's
# thread, or the scheduling thread when the run ended first): each such run killed a pool
# thread, which ThreadPoolExecutor never replaces; after 10 the process ran no job at all.

_ODD = {"raising": False}  # off once the test ends: pytest's own report formats them too


class _ModuleRaises(type):
    @property
    def __module__(cls):  # type: ignore[override]
        if _ODD["raising"]:
            raise SystemExit("no module")
        return __name__


class OddError(Exception, metaclass=_ModuleRaises):
    pass


def fail_oddly() -> None:
    raise OddError("odd")


def test_runs_whose_error_cannot_be_logged_leave_the_pool_able_to_run_jobs(tmp_path):
    _ODD["raising"] = True
    try:
        _run_odd_failures(tmp_path)
    except SystemExit as exit_:  # escaped into the request thread (or pytest's)
        pytest.fail(f"SystemExit({exit_.code!r}) escaped a job's run into the caller")
    finally:
        _ODD["raising"] = False


def _run_odd_failures(tmp_path) -> None:
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_API_ALLOWED_FUNCS=[
            "tests.tasks:*", "tests.test_run_history_attack:fail_oddly"]) as (scheduler, client):
        for i in range(12):
            added = client.post("/jobs", json={
                "id": f"odd{i}", "func": "tests.test_run_history_attack:fail_oddly"})
            assert added.status_code == 200

        def recorded() -> list[list[str]]:
            scheduler.recorder.flush()
            return [[run.outcome for run in scheduler.get_runs(f"odd{i}").runs]
                    for i in range(12)]

        time.sleep(3)  # what the runs' ends do to the pool's threads is done
        # (and every run ended and recorded: on a slow machine, that may take longer)
        wait_until(lambda: recorded() == [["error"]] * 12, timeout=20)
        outcomes = recorded()
        assert outcomes == [["error"]] * 12, f"the runs' ends are recorded: {outcomes}"
        tasks.ran.clear()
        assert client.post("/jobs", json={"id": "after", "func": "tests.tasks:record"}
                           ).status_code == 200
        assert tasks.ran.wait(5), "no pool thread is left to run a job"
        pool = scheduler._scheduler._executors["default"]._pool
        dead = sum(not thread.is_alive() for thread in pool._threads)
        assert dead == 0, f"{dead} of the pool's {len(pool._threads)} threads died"
