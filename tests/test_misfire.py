"""Runs due while no process runs (a restart, a leader takeover) are run once, not missed.

APScheduler's own default grace time is 1 s: a gunicorn restart logged "Run time of job ...
was missed" for every run due meanwhile. The job defaults here are 60 s with coalescing,
unless ``SCHEDULER_JOB_DEFAULTS`` says otherwise.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

from scheduler_api.config import JOB_DEFAULTS

from . import tasks
from .api_helpers import make_scheduler


def added_job(store, **config):  # type: ignore[no-untyped-def]
    """A job added with the defaults of a scheduler so configured (and started: a pending
    job gets its defaults only when the scheduler starts)."""
    scheduler, _ = make_scheduler(store, **config)
    scheduler.start(paused=True)
    try:
        return scheduler.add_job("a", "tests.tasks:record", trigger="interval", hours=1)
    finally:
        scheduler.shutdown(wait=False)


def test_the_defaults_survive_a_restart_and_each_key_can_be_changed(tmp_path):
    job = added_job(tmp_path / "a.sqlite")
    assert (job.misfire_grace_time, job.coalesce) == (60, True) == (
        JOB_DEFAULTS["misfire_grace_time"], JOB_DEFAULTS["coalesce"])
    job = added_job(tmp_path / "b.sqlite", SCHEDULER_JOB_DEFAULTS={"misfire_grace_time": 5})
    assert (job.misfire_grace_time, job.coalesce) == (5, True)  # the other default stays
    job = added_job(tmp_path / "c.sqlite", SCHEDULER_JOB_DEFAULTS={
        "misfire_grace_time": None, "coalesce": False})
    assert (job.misfire_grace_time, job.coalesce) == (None, False)


def test_runs_due_while_nothing_runs_are_run_once_after_a_restart(tmp_path, caplog):
    store = tmp_path / "jobs.sqlite"
    first, _ = make_scheduler(store)
    first.start()
    soon = datetime.now(timezone.utc) + timedelta(seconds=0.3)
    first.add_job("tick", "tests.tasks:record", args=["tick"], trigger="interval", seconds=2,
                  next_run_time=soon)
    first.shutdown(wait=False)  # before its first run: "the server restarts"
    time.sleep(4.6)  # due at +0.3, +2.3 and +4.3 s while no process runs
    tasks.runs.clear()
    tasks.ran.clear()
    second, _ = make_scheduler(store)
    caplog.set_level(logging.INFO)
    restarted = datetime.now(timezone.utc)
    second.start()
    try:
        assert tasks.ran.wait(5), "the job was not run after the restart"
        ran = datetime.now(timezone.utc)
        # Due while no process ran: +0.3, +2.3, +4.3 s (and more if the restart was slow).
        due = [soon + timedelta(seconds=2 * n) for n in range(10)
               if soon + timedelta(seconds=2 * n) < restarted]
        assert len(due) >= 3

        def since_the_restart() -> list:
            # (a slow first scheduler may have run the first one before it shut down)
            return [run for run in second.get_runs("tick", until=ran).runs
                    if run.started_at is None or run.started_at >= restarted]

        deadline = time.monotonic() + 5
        while not (runs := since_the_restart()) and time.monotonic() < deadline:
            time.sleep(0.05)  # the history is written by a thread
        # Three run times, one run: of the last one due (the next is due 2 s later, which a
        # slow restart may have reached too, so the runs are told apart by their run times).
        assert len(runs) == 1, runs
        assert runs[0].outcome in ("success", "running")
        assert runs[0].scheduled_at >= due[-1] - timedelta(milliseconds=1)
        assert not [record for record in caplog.records if "was missed" in record.getMessage()]
    finally:
        second.shutdown(wait=False)
