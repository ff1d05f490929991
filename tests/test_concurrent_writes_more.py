"""More writes by another process while this one changes a job (see
tests/test_concurrent_writes.py): changes computed from a read made before the compare and
swap's own, a removal refused, a listener's write in the step."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_REMOVED, EVENT_JOB_SUBMITTED

from . import tasks
from .api_helpers import running_api
from .test_concurrent_writes import (  # noqa: F401 - fixtures
    in_the_leaders_step,
    other_process_store,
    paused_api,
    ran,
    soon,
    write_elsewhere,
    writing_elsewhere_before_each_change,
)
from .test_run_history import wait_until


def test_a_trigger_patch_read_before_a_pause_elsewhere_keeps_the_pause(
        paused_api, monkeypatch):  # noqa: F811 - the fixture
    client, other = paused_api
    writing_elsewhere_before_each_change(
        monkeypatch, lambda _: write_elsewhere(other, "tick", next_run_time=None), times=1)
    answer = client.patch("/jobs/tick", json={"hours": 2})
    assert answer.status_code == 200, answer.json
    assert client.get("/jobs/tick").json["next_run_time"] is None, \
        "the PATCH, read before the pause, resumed the job"


def test_a_resume_read_before_the_leader_moved_the_job_on_does_not_move_it_back(
        paused_api, monkeypatch):  # noqa: F811 - the fixture
    client, other = paused_api
    moved = datetime.fromisoformat(client.get("/jobs/tick").json["next_run_time"]) + \
        timedelta(hours=1)
    writing_elsewhere_before_each_change(
        monkeypatch, lambda _: write_elsewhere(other, "tick", next_run_time=moved), times=1)
    assert client.post("/jobs/tick/resume").status_code == 200
    assert datetime.fromisoformat(client.get("/jobs/tick").json["next_run_time"]) == moved, \
        "the resume put back the run time the leader had run"


def test_a_date_job_moved_elsewhere_during_the_step_is_not_announced_removed(
        tmp_path, store_config, monkeypatch):
    from apscheduler.triggers.date import DateTrigger

    tasks.runs.clear()
    with running_api(tmp_path / "jobs.sqlite", **store_config) as (scheduler, client):
        other = other_process_store(tmp_path, store_config)
        removed: list[Any] = []
        scheduler.add_listener(lambda event: removed.append(event.job_id), EVENT_JOB_REMOVED)
        later = soon(3600)
        pending = in_the_leaders_step(monkeypatch, "once", lambda: write_elsewhere(
            other, "once", trigger=DateTrigger(later), next_run_time=later))
        assert client.post("/jobs", json={
            "id": "once", "func": "tests.tasks:record", "args": ["once"], "trigger": "date",
            "run_date": soon().isoformat()}).status_code == 200
        assert wait_until(lambda: not pending)
        wait_until(lambda: removed, timeout=1)
        assert client.get("/jobs/once").status_code == 200
        other.shutdown()
        assert removed == [], "listeners were told a job that stays was removed"


def test_a_listener_pausing_a_submitted_job_in_the_step_pauses_it(tmp_path, store_config):
    """A write the scheduling thread makes after the step wrote the job (a listener of the
    step's events) is made over the step's own write: not refused as another process's."""
    tasks.runs.clear()
    with running_api(tmp_path / "jobs.sqlite", **store_config) as (scheduler, client):
        scheduler.add_listener(lambda event: scheduler.pause_job(event.job_id),
                               EVENT_JOB_SUBMITTED)
        assert client.post("/jobs", json={
            "id": "tick", "func": "tests.tasks:record", "args": ["tick"],
            "trigger": "interval", "seconds": 1,
            "next_run_time": soon().isoformat()}).status_code == 200
        assert wait_until(lambda: tasks.runs), "the job never ran"
        wait_until(lambda: len(tasks.runs) > 1, timeout=2.5)  # (a run not paused: now)
        assert client.get("/jobs/tick").json["next_run_time"] is None, "the pause was lost"
        assert len(tasks.runs) == 1


def test_trigger_fields_are_merged_into_the_trigger_another_process_just_wrote(
        paused_api, monkeypatch):  # noqa: F811 - the fixture
    from apscheduler.triggers.interval import IntervalTrigger

    client, other = paused_api  # "tick": every hour
    writing_elsewhere_before_each_change(monkeypatch, lambda _: write_elsewhere(
        other, "tick", trigger=IntervalTrigger(hours=2)), times=1)
    answer = client.patch("/jobs/tick", json={"minutes": 30})
    assert answer.status_code == 200, answer.json
    stored = client.get("/jobs/tick").json
    assert (stored["hours"], stored["minutes"]) == (2, 30), \
        "the trigger the other process wrote was replaced by the one first read"
