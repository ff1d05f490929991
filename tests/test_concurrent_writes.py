"""A job written by another process (another gunicorn worker, another host) while this one
changes it: neither write undoes the other.

APScheduler writes a job by id over whatever is stored. The leader reads its due jobs, then
writes their next run times (or removes them): a pause or a PATCH another worker committed in
between was undone, and the job ran. A worker's change read the job, then wrote it: a next run
time the leader had moved on in between was put back, and the run ran twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_SUBMITTED
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from scheduler_api import engine
from scheduler_api.errors import MODIFY_ATTEMPTS

from . import tasks
from .api_helpers import running_api
from .test_run_history import wait_until


def other_process_store(tmp_path, store_config: dict[str, Any]) -> SQLAlchemyJobStore:
    """The store as another process's APScheduler has it."""
    store = SQLAlchemyJobStore(
        url=store_config.get("SCHEDULER_JOBSTORE_URL", f"sqlite:///{tmp_path / 'jobs.sqlite'}"),
        tablename=store_config.get("SCHEDULER_JOBSTORE_TABLE", "apscheduler_jobs"))
    store.start(BackgroundScheduler(timezone=timezone.utc), "default")
    return store


#: Job._modify as APScheduler has it (the tests below wrap this process's).
APSCHEDULER_MODIFY = Job._modify


def write_elsewhere(store: SQLAlchemyJobStore, job_id: str, **changes: Any) -> None:
    """What APScheduler's modify_job in another process writes."""
    job = store.lookup_job(job_id)
    APSCHEDULER_MODIFY(job, **changes)
    store.update_job(job)


def soon(seconds: float = 0.3) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


#: The leader's pools, and the executor the jobs are given: one pool, or two store-first
#: pools (as SCHEDULER_EXECUTOR="celery" has: the Celery executor and the "leader" pool),
#: each told of a write refused.
POOLS = {"one pool": None, "two pools, the first": "default", "two pools, the second": "leader"}


@pytest.fixture(params=POOLS.values(), ids=POOLS.keys())
def leader(request, tmp_path, store_config
           ) -> Iterator[tuple[Any, SQLAlchemyJobStore, dict[str, str]]]:
    """The API of a leader, the store as another process has it, and the fields that give
    a job the pool under test."""
    tasks.runs.clear()
    executor = request.param
    pools = {} if executor is None else {"SCHEDULER_EXECUTORS": {
        "default": engine.StoreFirstThreadPoolExecutor(),
        "leader": engine.StoreFirstThreadPoolExecutor()}}
    with running_api(tmp_path / "jobs.sqlite", **pools, **store_config) as (_, client):
        other = other_process_store(tmp_path, store_config)
        yield client, other, {} if executor is None else {"executor": executor}
        other.shutdown()


def in_the_leaders_step(monkeypatch, job_id: str, write: Callable[[], None]) -> list:
    """Run ``write`` once, in the scheduling step that finds ``job_id`` due: after the step
    read the job, before it wrote it. Returns a list that is empty once it ran."""
    catch_up, pending = engine._catch_up, [write]

    def catch_up_then_write(job: Job, now: datetime) -> str:
        outcome = catch_up(job, now)
        if job.id == job_id and pending:
            pending.pop()()
        return outcome

    monkeypatch.setattr(engine, "_catch_up", catch_up_then_write)
    return pending


def ran(label: str) -> int:
    return sum(run_label == label for run_label, _ in tasks.runs)


def test_a_pause_by_another_process_during_the_leaders_step_is_kept(leader, monkeypatch):
    client, other, pool = leader
    pending = in_the_leaders_step(monkeypatch, "tick", lambda: write_elsewhere(
        other, "tick", next_run_time=None))
    assert client.post("/jobs", json={
        "id": "tick", "func": "tests.tasks:record", "args": ["tick"], "trigger": "interval",
        "seconds": 1, "next_run_time": soon().isoformat(), **pool}).status_code == 200
    assert wait_until(lambda: not pending), "the step never found the job due"
    wait_until(lambda: ran("tick"), timeout=1.5)  # (a run let through would come now)
    assert client.get("/jobs/tick").json["next_run_time"] is None, "the pause was undone"
    assert ran("tick") == 0, "a job paused before its run was written ran"


def test_a_patch_by_another_process_during_the_leaders_step_is_kept_and_runs(leader,
                                                                             monkeypatch):
    client, other, pool = leader
    pending = in_the_leaders_step(monkeypatch, "report", lambda: write_elsewhere(
        other, "report", args=["new"]))
    assert client.post("/jobs", json={
        "id": "report", "func": "tests.tasks:record", "args": ["old"], "trigger": "interval",
        "hours": 1, "next_run_time": soon().isoformat(), **pool}).status_code == 200
    assert wait_until(lambda: not pending), "the step never found the job due"
    # Still due as changed: the next step runs it, once, as it now is.
    assert wait_until(lambda: ran("new")), "the changed job never ran"
    wait_until(lambda: len(tasks.runs) > 1, timeout=1)
    assert [label for label, _ in tasks.runs] == ["new"], "the run time ran twice"
    shown = client.get("/jobs/report").json
    assert shown["args"] == ["new"], "the PATCH was undone"
    assert datetime.fromisoformat(shown["next_run_time"]) > soon(3000)  # moved on an hour


def test_a_date_job_moved_by_another_process_during_the_leaders_step_is_not_removed(
        leader, monkeypatch):
    client, other, pool = leader
    later = soon(3600)
    pending = in_the_leaders_step(monkeypatch, "once", lambda: write_elsewhere(
        other, "once", trigger=DateTrigger(later), next_run_time=later))
    assert client.post("/jobs", json={
        "id": "once", "func": "tests.tasks:record", "args": ["once"], "trigger": "date",
        "run_date": soon().isoformat(), **pool}).status_code == 200
    assert wait_until(lambda: not pending), "the step never found the job due"
    wait_until(lambda: ran("once"), timeout=1)
    shown = client.get("/jobs/once")
    assert shown.status_code == 200, "the moved job was removed as if it had run"
    assert datetime.fromisoformat(shown.json["next_run_time"]) == later
    assert ran("once") == 0


def test_a_listener_that_changes_a_job_as_it_is_submitted_keeps_its_change(tmp_path):
    """A listener runs in the scheduling thread, after the step wrote its jobs: its change
    is written over the job it reads, not over the state the step had read."""
    tasks.runs.clear()
    changed: list[str] = []
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, client):

        def rename_once(event: Any) -> None:
            if event.job_id == "report" and not changed:
                changed.append(event.job_id)
                scheduler.modify_job("report", name="renamed by a listener")

        scheduler.add_listener(rename_once, EVENT_JOB_SUBMITTED)
        assert client.post("/jobs", json={
            "id": "report", "func": "tests.tasks:record", "args": ["report"],
            "trigger": "interval", "hours": 1, "next_run_time": soon().isoformat(),
        }).status_code == 200
        assert wait_until(lambda: ran("report")), "the job never ran"
        assert wait_until(lambda: changed)
        shown = wait_until(lambda: (job := client.get("/jobs/report").json)["name"] != "report"
                           and job)
        assert shown, "the listener's change was lost"
        assert shown["name"] == "renamed by a listener"
        assert datetime.fromisoformat(shown["next_run_time"]) > soon(3000)
        assert ran("report") == 1


# -- a change read before the leader wrote the job ------------------------------------------

@pytest.fixture
def paused_api(tmp_path, store_config) -> Iterator[tuple[Any, SQLAlchemyJobStore]]:
    """An API whose scheduler runs no steps: only the writes these tests make happen."""
    with running_api(tmp_path / "jobs.sqlite", paused=True, **store_config) as (_, client):
        other = other_process_store(tmp_path, store_config)
        assert client.post("/jobs", json={
            "id": "tick", "func": "tests.tasks:record", "args": ["old"],
            "trigger": "interval", "hours": 1}).status_code == 200
        yield client, other
        other.shutdown()


def writing_elsewhere_before_each_change(monkeypatch, write: Callable[[int], None],
                                         times: int) -> None:
    """Before each of the next ``times`` changes this process makes to a job (after it read
    the job), ``write(n)`` runs: another process's write."""
    done: list[None] = []

    def modify_after_a_write_elsewhere(job: Job, **changes: Any) -> None:
        if len(done) < times:
            done.append(None)
            write(len(done))
        APSCHEDULER_MODIFY(job, **changes)

    monkeypatch.setattr(Job, "_modify", modify_after_a_write_elsewhere)


@pytest.mark.parametrize(("method", "path", "body", "expected"), [
    ("PATCH", "/jobs/tick", {"args": ["new"]}, {"args": ["new"]}),
    ("POST", "/jobs/tick/pause", None, {"next_run_time": None}),
], ids=["patch", "pause"])
def test_a_change_read_before_the_leader_moved_the_job_on_does_not_move_it_back(
        paused_api, monkeypatch, method, path, body, expected):
    client, other = paused_api
    moved = datetime.fromisoformat(client.get("/jobs/tick").json["next_run_time"]) + \
        timedelta(hours=1)
    writing_elsewhere_before_each_change(
        monkeypatch, lambda _: write_elsewhere(other, "tick", next_run_time=moved), times=1)
    answer = client.request(method, path, json=body)
    assert answer.status_code == 200, answer.json
    stored = client.get("/jobs/tick").json
    assert {field: stored[field] for field in expected} == expected
    if "next_run_time" not in expected:
        assert datetime.fromisoformat(stored["next_run_time"]) == moved, \
            "the change put back the next run time the leader had moved on"
    assert answer.json == stored


def test_two_patches_of_one_job_at_once_both_hold_field_by_field(paused_api, monkeypatch):
    client, other = paused_api
    writing_elsewhere_before_each_change(
        monkeypatch, lambda _: write_elsewhere(other, "tick", name="renamed"), times=1)
    assert client.patch("/jobs/tick", json={"args": ["new"]}).status_code == 200
    stored = client.get("/jobs/tick").json
    assert (stored["name"], stored["args"]) == ("renamed", ["new"])


def test_a_job_another_process_keeps_changing_is_a_409_and_this_change_is_not_made(
        paused_api, monkeypatch):
    client, other = paused_api
    first = datetime.fromisoformat(client.get("/jobs/tick").json["next_run_time"])
    writing_elsewhere_before_each_change(
        monkeypatch, lambda n: write_elsewhere(other, "tick",
                                               next_run_time=first + timedelta(hours=n)),
        times=MODIFY_ATTEMPTS)
    answer = client.patch("/jobs/tick", json={"args": ["new"]})
    assert answer.status_code == 409
    assert answer.json["error_message"] == (
        f"Job tick was changed by another process at each of {MODIFY_ATTEMPTS} "
        "attempts to change it; this change was not made: try again")
    stored = client.get("/jobs/tick").json
    assert stored["args"] == ["old"]
    assert datetime.fromisoformat(stored["next_run_time"]) == \
        first + timedelta(hours=MODIFY_ATTEMPTS)


def test_change_job_computes_its_change_again_from_the_job_another_process_wrote(
        tmp_path, store_config, monkeypatch):
    with running_api(tmp_path / "jobs.sqlite", paused=True, **store_config) as (
            scheduler, _):
        scheduler.add_job("tick", "tests.tasks:record", args=["first"], trigger="interval",
                          hours=1)
        other = other_process_store(tmp_path, store_config)
        seen: list[tuple[Any, ...]] = []
        writing_elsewhere_before_each_change(
            monkeypatch, lambda _: write_elsewhere(other, "tick", args=["other"]), times=1)

        def append_again(job: Job) -> dict[str, Any]:
            seen.append(job.args)
            return {"args": [*job.args, "again"]}

        changed = scheduler.change_job("tick", append_again)
        other.shutdown()
        # the second attempt read the other write
        assert [list(args) for args in seen] == [["first"], ["other"]]
        assert list(changed.args) == ["other", "again"] == list(scheduler.get_job("tick").args)
