"""Runs handed to Celery, in process: the leader's executor against a recording stand-in for
Celery, and the worker's task against a real SQLite store (no broker: the real workers and
brokers are in tests/test_celery_cluster.py)."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from apscheduler.jobstores.memory import MemoryJobStore

from scheduler_api import APScheduler
from scheduler_api.celery_executor import TASK, TASK_ACKS_LATE, CeleryExecutor, seal, unseal
from scheduler_api.celery_worker import BadMessage, QueuedJob, WorkerRuns, worker_runs
from scheduler_api.config import read_settings
from scheduler_api.engine import StoreFirstThreadPoolExecutor
from scheduler_api.scheduler import configured_executors

from .test_run_history import wait_until

KEY = "a-signing-key-for-the-tests"


class RecordingCelery:
    """Stands in for a Celery app: keeps what is sent (``message``: as a worker with KEY
    unseals it); ``failures`` sends raise first."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[dict[str, Any]] = []
        self.failures = failures

    def send_task(self, name: str, args: list[Any], **options: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the broker is away")
        self.sent.append({"task": name, "sealed": args[0],
                          "message": unseal(args[0], KEY.encode(), 1 << 20), **options})


def message(**changes: Any) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {"job_id": "job", "name": "job", "func": "tests.tasks:give", "args": [42],
            "kwargs": {}, "run_times": [now.isoformat()], "reason": "schedule",
            "misfire_grace_time": 60, "max_instances": 1, "sent_at": time.time(), **changes}


# -- the leader's side ---------------------------------------------------------------------

@pytest.fixture(params=["by-settings", "as-an-executor-object"])
def leader(request, tmp_path):
    """A started leader sending to a RecordingCelery: configured by SCHEDULER_EXECUTOR, or
    with a CeleryExecutor of its own in SCHEDULER_EXECUTORS."""
    celery = RecordingCelery()
    executors = {"SCHEDULER_EXECUTOR": "celery", "SCHEDULER_CELERY_APP": celery,
                 "SCHEDULER_CELERY_SIGNING_KEY": KEY} \
        if request.param == "by-settings" else {"SCHEDULER_EXECUTORS": {
            "default": CeleryExecutor(celery, signing_key=KEY),
            "leader": StoreFirstThreadPoolExecutor()}}
    scheduler = APScheduler()
    scheduler.init_app(None, config={
        "SCHEDULER_JOBSTORE_URL": f"sqlite:///{tmp_path / 'jobs.sqlite'}", **executors,
        "SCHEDULER_API_ALLOWED_FUNCS": ["tests.tasks:*"]})
    scheduler.start()
    yield scheduler, celery
    scheduler.shutdown()


def stored_next_run_time(scheduler: APScheduler, job_id: str) -> datetime | None:
    job = scheduler.get_job(job_id)
    return None if job is None else job.next_run_time


def test_the_leader_sends_each_due_run_as_json_once_the_store_has_its_next_run_time(leader):
    scheduler, celery = leader
    executor = StoreFirstThreadPoolExecutor  # the store-first base: sending is its _submit
    assert isinstance(scheduler.scheduler._executors["default"], executor)
    seen_at_send: list[datetime | None] = []
    send = celery.send_task

    def send_and_look(name: str, args: list[Any], **options: Any) -> None:
        job_id = unseal(args[0], KEY.encode(), 1 << 20)["job_id"]
        seen_at_send.append(stored_next_run_time(scheduler, job_id))
        send(name, args, **options)

    celery.send_task = send_and_look  # type: ignore[method-assign]
    # (its first run time as added: read from the store after, it may have moved on)
    due = scheduler.add_job("tick", "tests.tasks:give", kwargs={"value": {"a": [1, None]}},
                            trigger="interval", seconds=1, max_instances=3,
                            misfire_grace_time=5).next_run_time
    assert wait_until(lambda: len(celery.sent) >= 2, timeout=15)
    first = celery.sent[0]
    assert first["task"] == TASK and first["queue"] == "scheduler_api"
    assert first["message"]["func"] == "tests.tasks:give"
    assert (first["message"]["args"], first["message"]["kwargs"]) == (
        [], {"value": {"a": [1, None]}})
    assert first["message"]["run_times"] == [due.isoformat()]
    assert first["message"]["store"] == scheduler.history.store_id()
    assert (first["message"]["reason"], first["message"]["misfire_grace_time"],
            first["message"]["max_instances"]) == ("schedule", 5, 3)
    assert seen_at_send[0] is not None and seen_at_send[0] > due, \
        "sent before the store had the job's next run time"


def test_a_run_now_is_sent_with_its_reason_and_the_leader_counts_no_instances(leader):
    scheduler, celery = leader
    scheduler.add_job("once", "tests.tasks:give", args=[1], trigger="date",
                      run_date=datetime.now(timezone.utc) + timedelta(days=1))
    for _ in range(5):  # max_instances is 1: the workers hold it, not the leader
        scheduler.run_job("once")
    assert wait_until(lambda: len(celery.sent) == 5, timeout=15)
    assert {sent["message"]["reason"] for sent in celery.sent} == {"run"}
    assert scheduler.get_runs().runs == [], "the leader recorded runs it did not run"


def test_jobs_of_the_leader_executor_stay_in_the_leaders_threads(leader):
    scheduler, celery = leader
    scheduler.add_job("light", "tests.tasks:give", args=[7], executor="leader")
    # ended: its start may be written in a batch before its end's
    assert wait_until(lambda: scheduler.get_runs("light", outcome=["success", "error"]).total,
                      timeout=15)
    run, = scheduler.get_runs("light").runs
    assert (run.outcome, run.pid, run.result) == ("success", os.getpid(), "7")
    assert celery.sent == []


def test_a_job_whose_args_json_cannot_carry_is_recorded_as_an_error_not_sent(leader):
    scheduler, celery = leader
    scheduler.add_job("opaque", "tests.tasks:give", args=[{1, 2}])
    assert wait_until(lambda: scheduler.get_runs("opaque").total == 1, timeout=15)
    run, = scheduler.get_runs("opaque").runs
    assert run.outcome == "error" and run.error_type == "TypeError"
    assert "not JSON serializable" in run.error_message
    assert celery.sent == []


def test_a_broker_that_stays_away_is_tried_again_then_the_run_is_recorded_as_an_error(leader):
    scheduler, celery = leader
    celery.failures = 10
    scheduler.add_job("lonely", "tests.tasks:give", args=[1])
    assert wait_until(lambda: scheduler.get_runs("lonely").total == 1, timeout=20)
    run, = scheduler.get_runs("lonely").runs
    assert run.outcome == "error" and run.error_type == "ConnectionError"
    assert celery.failures == 7  # three attempts


def test_a_broker_back_within_the_attempts_gets_the_run(leader):
    scheduler, celery = leader
    celery.failures = 2
    scheduler.add_job("patient", "tests.tasks:give", args=[1])
    assert wait_until(lambda: len(celery.sent) == 1, timeout=15)
    assert scheduler.get_runs("patient").total == 0


def test_acks_late_sends_to_the_task_acknowledged_at_the_end(tmp_path):
    celery = RecordingCelery()
    executor = configured_executors(read_settings({
        "SCHEDULER_EXECUTOR": "celery", "SCHEDULER_CELERY_APP": celery,
        "SCHEDULER_CELERY_SIGNING_KEY": KEY, "SCHEDULER_CELERY_ACKS_LATE": True,
        "SCHEDULER_CELERY_QUEUE": "runs"}))["default"]
    assert isinstance(executor, CeleryExecutor)
    executor._send(message())
    assert [(sent["task"], sent["queue"]) for sent in celery.sent] == [(TASK_ACKS_LATE, "runs")]


@pytest.mark.parametrize(("settings", "problem"), [
    ({"SCHEDULER_EXECUTOR": "celery"}, "set SCHEDULER_CELERY_BROKER_URL"),
    ({"SCHEDULER_EXECUTOR": "celery", "SCHEDULER_CELERY_APP": "tests.tasks:nothing_here"},
     "SCHEDULER_CELERY_APP: Error resolving reference"),
    ({"SCHEDULER_EXECUTOR": "celery", "SCHEDULER_CELERY_APP": "tests.tasks:give",
      "SCHEDULER_CELERY_BROKER_URL": "amqp://127.0.0.1//"}, "both set: give one"),
    ({"SCHEDULER_EXECUTOR": "celery", "SCHEDULER_EXECUTORS": {"default": object()}},
     "SCHEDULER_EXECUTOR and SCHEDULER_EXECUTORS are both set"),
    ({"SCHEDULER_CELERY_BROKER_URL": "amqp://127.0.0.1//"},
     "SCHEDULER_CELERY_BROKER_URL is set but SCHEDULER_EXECUTOR is not 'celery'"),
    ({"SCHEDULER_EXECUTOR": "rq"}, "SCHEDULER_EXECUTOR must be one of 'celery', 'threadpool'"),
    ({"SCHEDULER_CELERY_ACKS_LATE": "yes"}, "SCHEDULER_CELERY_ACKS_LATE must be True or False"),
    ({"SCHEDULER_EXECUTOR": "celery", "SCHEDULER_CELERY_BROKER_URL": "amqp://127.0.0.1//"},
     "SCHEDULER_CELERY_SIGNING_KEY must be set, at least 16 characters"),
    ({"SCHEDULER_EXECUTOR": "celery", "SCHEDULER_CELERY_BROKER_URL": "amqp://127.0.0.1//",
      "SCHEDULER_CELERY_SIGNING_KEY": "short"}, "SCHEDULER_CELERY_SIGNING_KEY must be set"),
], ids=["celery-without-a-broker", "an-app-that-is-not-there", "an-app-and-a-broker",
        "executor-and-executors", "celery-settings-without-celery", "an-unknown-executor",
        "acks-late-as-text", "no-signing-key", "a-short-signing-key"])
def test_a_wrong_executor_setting_is_an_error_that_names_it(settings, problem):
    with pytest.raises((TypeError, ValueError), match=problem.replace("(", r"\(")):
        configured_executors(read_settings(settings))


@pytest.mark.parametrize("store", [
    {"SCHEDULER_JOBSTORE_URL": "sqlite://"},
    {"SCHEDULER_JOBSTORE_URL": "sqlite:///:memory:"},
    {"SCHEDULER_JOBSTORES": {"default": MemoryJobStore()}},
], ids=["in-memory-sqlite", "in-memory-sqlite-by-name", "a-memory-store"])
def test_celery_needs_a_store_the_workers_share(store):
    with pytest.raises(ValueError, match="needs a job store the workers share"):
        APScheduler().init_app(None, config={
            **store, "SCHEDULER_EXECUTOR": "celery", "SCHEDULER_CELERY_APP": RecordingCelery(),
            "SCHEDULER_CELERY_SIGNING_KEY": KEY})
    with pytest.raises(ValueError, match="a Celery worker needs the scheduler's job store"):
        worker_runs({**store, "SCHEDULER_CELERY_SIGNING_KEY": KEY})


def test_celery_by_broker_url_makes_a_json_only_app_and_keeps_a_leader_pool():
    executors = configured_executors(read_settings({
        "SCHEDULER_EXECUTOR": "celery", "SCHEDULER_CELERY_SIGNING_KEY": KEY,
        "SCHEDULER_CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}))
    assert set(executors) == {"default", "leader"}
    app = executors["default"].celery_app
    assert app.conf.accept_content == ["json"] and app.conf.task_serializer == "json"
    assert app.conf.task_default_queue == "scheduler_api"
    assert type(executors["leader"]) is StoreFirstThreadPoolExecutor


# -- the worker's side ---------------------------------------------------------------------

@pytest.fixture
def worker(tmp_path):
    runs = worker_runs({"SCHEDULER_JOBSTORE_URL": f"sqlite:///{tmp_path / 'jobs.sqlite'}",
                        "SCHEDULER_API_ALLOWED_FUNCS": ["tests.tasks:*"],
                        "SCHEDULER_CELERY_SIGNING_KEY": KEY})
    runs.start()
    yield runs
    runs.stop()


def recorded(worker: WorkerRuns, job_id: str = "job") -> list[Any]:
    assert worker.recorder.flush()
    return worker.history.page(job_id).runs


def test_the_worker_runs_a_message_and_records_it_as_its_own(worker):
    assert worker.run_sealed(seal(message(store=worker.store_id), KEY.encode())) == "ran"
    run, = recorded(worker)
    assert (run.outcome, run.reason, run.result, run.pid) == ("success", "schedule", "42",
                                                              os.getpid())


def test_the_worker_records_an_error_with_its_traceback(worker):
    worker.run(message(func="tests.tasks:fail", args=["it broke"], reason="run"))
    run, = recorded(worker)
    assert (run.outcome, run.reason, run.error_message) == ("error", "run", "it broke")
    assert run.traceback.rstrip().endswith("RuntimeError: it broke")


@pytest.mark.parametrize("func", [
    "os:system", "tests.never_imported:anything", "tests.tasks:Helpers.nested",
    "tests.tasks:system", "not a reference",
], ids=["os-system", "a-module-never-imported", "a-dotted-path", "a-name-only-imported",
        "not-a-reference"])
def test_the_worker_refuses_a_func_the_allow_list_refuses_without_importing_it(worker, func):
    assert worker.run(message(func=func)) == "refused"
    run, = recorded(worker)
    assert (run.outcome, run.error_type) == ("error", "ForbiddenFunc")
    assert "tests.never_imported" not in sys.modules


def test_a_run_that_waited_in_the_queue_past_its_grace_time_is_missed_not_run(worker):
    late = datetime.now(timezone.utc) - timedelta(seconds=5)
    worker.run(message(func="tests.tasks:record", args=["late"], misfire_grace_time=1,
                       run_times=[late.isoformat()]))
    run, = recorded(worker)
    assert run.outcome == "missed" and run.started_at is None


def occupy_slot(worker: WorkerRuns, node: str, pid: int, claimed_at: float) -> None:
    with worker.history.engine.begin() as connection:
        connection.execute(worker.slots.table.insert().values(
            job_id="job", slot=0, node=node, pid=pid, claimed_at=claimed_at))


def test_a_slot_held_by_a_live_process_of_this_node_makes_the_run_skipped(worker):
    occupy_slot(worker, worker.recorder.node, os.getppid(), time.time() - 3600)
    assert worker.run(message()) == "skipped"
    run, = recorded(worker)
    assert run.outcome == "skipped"


def test_a_slot_held_by_a_dead_process_of_this_node_is_freed(worker):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    occupy_slot(worker, worker.recorder.node, dead.pid, time.time())
    assert worker.run(message()) == "ran"
    assert [run.outcome for run in recorded(worker)] == ["success"]


@pytest.mark.parametrize(("age", "heartbeat_age", "outcome"), [
    (5, None, "skipped"),
    (3600, None, "success"),
    (3600, 5, "skipped"),
    (3600, 3600, "success"),
], ids=["claimed-just-now", "claimed-long-ago-and-no-run", "its-run-beats",
        "its-run-stopped-beating"])
def test_a_slot_of_another_host_is_freed_only_once_its_process_is_gone(
        worker, age, heartbeat_age, outcome):
    occupy_slot(worker, "elsewhere/1", 123, time.time() - age)
    if heartbeat_age is not None:
        row = {name: None for name in worker.history.runs.c.keys() if name != "seq"}
        row.update(id="a" * 32, job_id="job", reason="schedule", outcome="running",
                   scheduled_at=time.time() - age, started_at=time.time() - age,
                   heartbeat_at=time.time() - heartbeat_age, host="elsewhere",
                   node="elsewhere/1", pid=123)
        with worker.history.engine.begin() as connection:
            connection.execute(worker.history.runs.insert().values(row))
    worker.run(message())
    assert recorded(worker)[0].outcome == outcome


def test_max_instances_counts_every_slot_and_gives_each_back(worker):
    for _ in range(3):
        assert worker.slots.claim("job", 3)
    assert worker.run(message(max_instances=3)) == "skipped"
    worker.slots.release("job")
    assert worker.run(message(max_instances=3)) == "ran"
    with worker.history.engine.connect() as connection:
        held = connection.execute(worker.slots.table.select()).all()
    assert len(held) == 2, "a run's slot was not given back"


def forged(worker: WorkerRuns, how: str) -> object:
    """A message the leader did not send as it is: ``how`` it was made."""
    genuine = seal(message(store=worker.store_id), KEY.encode())
    if how == "unsigned":
        return message(store=worker.store_id)
    if how == "signed-with-another-key":
        return seal(message(store=worker.store_id), b"another-key-of-16-or-more")
    if how == "payload-changed":
        return {**genuine, "payload": genuine["payload"].replace("give", "fail")}
    if how == "signature-cut":
        return {**genuine, "signature": genuine["signature"][:-1]}
    if how == "for-another-store":
        return seal(message(store="0" * 32), KEY.encode())
    if how == "over-a-mebibyte":
        return seal(message(store=worker.store_id, args=["x" * (1 << 20)]), KEY.encode())
    assert how == "nested-past-the-parser"
    deep = "[" * 100_000 + "]" * 100_000
    payload = f'{{"store": "{worker.store_id}", "deep": {deep}}}'
    return {"payload": payload, "signature": seal_text(payload)}


def seal_text(payload: str, key: str = KEY) -> str:
    """The signature of a payload written by hand (``seal`` makes its own JSON)."""
    return hmac.new(key.encode(), payload.encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()


@pytest.mark.parametrize("how", [
    "unsigned", "signed-with-another-key", "payload-changed", "signature-cut",
    "for-another-store", "over-a-mebibyte", "nested-past-the-parser"])
def test_the_worker_runs_nothing_the_leader_did_not_sign_for_its_store(worker, how):
    with pytest.raises(BadMessage):
        worker.run_sealed(forged(worker, how))
    assert recorded(worker) == []


@pytest.mark.parametrize("changes", [
    {"job_id": None}, {"func": 3}, {"args": {"a": 1}}, {"kwargs": [1]},
    {"kwargs": {1: 2}}, {"reason": "whim"}, {"max_instances": 0}, {"max_instances": True},
    {"misfire_grace_time": "60"}, {"run_times": []}, {"run_times": ["yesterday"]},
    {"run_times": ["2026-12-01T10:00:00"]}, {"run_times": ["2026-12-01T10:00:00Z"] * 1001},
], ids=["no-job-id", "func-not-text", "args-not-a-list", "kwargs-not-an-object",
        "kwargs-keys-not-text", "an-unknown-reason", "no-instance-allowed",
        "max-instances-true", "grace-time-as-text", "no-run-time", "a-run-time-not-iso",
        "a-run-time-without-offset", "too-many-run-times"])
def test_a_malformed_message_is_refused_before_anything_runs(changes):
    with pytest.raises(BadMessage):
        QueuedJob(message(**changes))
