"""Runs handed to Celery, attacked: a database hiccup while a run gives back its
``max_instances`` slot, messages published straight to the broker with values the store
cannot take, a broker that stays away while runs keep coming. In process against a real
SQLite store, and against a real celery worker and RabbitMQ (SCHEDULER_TEST_RABBITMQ_URL)."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from scheduler_api.celery_worker import BadMessage, WorkerRuns
from scheduler_api.history import RunHistory

from . import tasks, test_celery_executor
from .test_celery_executor import KEY, message, seal_text

#: The same fixture as test_celery_executor's: a started WorkerRuns on a SQLite store.
worker = test_celery_executor.worker


def outcomes(worker: WorkerRuns, job_id: str = "job") -> list[str]:
    assert worker.recorder.flush()
    return [run.outcome for run in worker.history.page(job_id).runs]


# -- a slot given back while the database is away ------------------------------------------

class FailingOnce:
    """The store's engine, whose ``begin`` number ``fail_at`` raises (the database away)."""

    def __init__(self, engine: Any, fail_at: int) -> None:
        self.engine = engine
        self.fail_at = fail_at
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def begin(self) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise OperationalError("DELETE", {}, Exception("database is locked"))
        return self.engine.begin()


@pytest.mark.parametrize("job", ["same-job-next", "another-job-next"])
def test_a_slot_whose_release_failed_is_freed_at_the_next_claim_not_held_forever(worker, job):
    real = worker.slots.engine
    worker.slots.engine = FailingOnce(real, fail_at=2)  # 1: the claim's INSERT, 2: DELETE
    with pytest.raises(OperationalError):
        worker.run(message())
    worker.slots.engine = real
    if job == "another-job-next":
        assert worker.run(message(job_id="other")) == "ran"
    assert worker.run(message()) == "ran", "the job's slot leaked: it never runs again"
    assert outcomes(worker) == ["success", "success"]
    with worker.history.engine.connect() as connection:
        assert connection.execute(worker.slots.table.select()).all() == []


# -- a message with values the store cannot take ---------------------------------------------

@pytest.mark.parametrize("changes", [
    {"misfire_grace_time": float("nan")}, {"misfire_grace_time": float("inf")},
    {"misfire_grace_time": 1e300},
    {"job_id": "a\ud800b"}, {"job_id": "a\x00b"}, {"job_id": "x" * 10_000}, {"job_id": ""},
    {"run_times": ["9999-12-31T23:59:59-23:59"]}, {"run_times": ["0001-01-01T00:00:00+23:59"]},
], ids=["grace-NaN", "grace-infinite", "grace-1e300", "job-id-with-a-lone-surrogate",
        "job-id-with-NUL", "job-id-of-10000-characters", "job-id-empty",
        "run-time-past-year-9999-in-UTC", "run-time-before-year-1-in-UTC"])
def test_a_message_the_store_cannot_take_is_malformed_not_a_crash_or_an_unrecorded_run(
        worker, changes):
    ran_before = len(tasks.runs)
    with pytest.raises(BadMessage):
        worker.run(message(func="tests.tasks:record", args=["must not run"], **changes))
    assert len(tasks.runs) == ran_before, "it ran"
    with worker.history.engine.connect() as connection:
        assert connection.execute(worker.slots.table.select()).all() == []


# -- the broker away while runs keep coming ------------------------------------------------

class AwayBroker:
    """A Celery app whose broker is away: each send fails after ``seconds`` (a connection
    that times out)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.tries = 0

    def send_task(self, name: str, args: list[Any], **options: Any) -> None:
        self.tries += 1
        time.sleep(self.seconds)
        raise ConnectionError("timed out")


def test_runs_queued_while_the_broker_is_away_are_recorded_unsent_in_bounded_time(
        monkeypatch):
    from scheduler_api import celery_executor

    monkeypatch.setattr(celery_executor, "SEND_RETRY_SECONDS", 0.0)
    monkeypatch.setattr(celery_executor, "OUTBOX_WAIT_SECONDS", 1.0, raising=False)
    unsent: list[tuple[str, str]] = []
    broker = AwayBroker(seconds=0.1)  # 0.3 s a run, in three attempts: 40 runs took 12 s
    executor = celery_executor.CeleryExecutor(
        broker, signing_key=KEY, record_unsent=lambda job_id, reason, run_time, error:
        unsent.append((job_id, type(error).__name__)))
    sender = threading.Thread(target=executor._send_all, daemon=True)
    sender.start()
    try:
        for number in range(40):
            executor._outbox.put(message(job_id=f"job-{number}"))
        deadline = time.monotonic() + 3
        while len(unsent) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(unsent) == 40, f"{len(unsent)} of 40 runs recorded after 3 s"
        assert {kind for _, kind in unsent} == {"ConnectionError", "TimeoutError"}
        assert broker.tries < 40, "every run waited for its own attempts"
    finally:
        executor._outbox.put(None)
        sender.join(5)


# -- the same, published straight to a real broker and read by a real worker ---------------

def publish_raw(broker: str, queue: str, body: str) -> None:
    """A task message as anyone who can reach the broker could publish it (not the leader)."""
    import uuid

    from kombu import Connection

    task_id = str(uuid.uuid4())
    with Connection(broker) as connection:
        connection.Producer().publish(
            body, routing_key=queue, exchange="", serializer=None,
            content_type="application/json", content_encoding="utf-8",
            headers={"lang": "py", "task": "scheduler_api.run", "id": task_id,
                     "root_id": task_id, "parent_id": None, "group": None, "retries": 0,
                     "eta": None, "expires": None, "timelimit": [None, None]})


def task_body(fields: str, store_id: str, key: str | None = KEY) -> str:
    """A task message whose run message is ``fields`` (JSON text, NaN and all), sealed with
    ``key`` as the leader seals it (None: published unsealed, as a forger would)."""
    payload = ('{"name": "x", "func": "tests.tasks:give", "args": [1], "kwargs": {}, '
               f'"reason": "schedule", "max_instances": 1, "store": "{store_id}", {fields}}}')
    if key is None:
        return f"[[{payload}], {{}}, {{}}]"
    return json.dumps([[{"payload": payload, "signature": seal_text(payload, key)}], {}, {}])


@pytest.mark.skipif(not os.environ.get("SCHEDULER_TEST_RABBITMQ_URL"),
                    reason="set SCHEDULER_TEST_RABBITMQ_URL (e.g. "
                           "amqp://guest:guest@127.0.0.1:5672//) for a real broker and worker")
def test_crafted_messages_on_a_real_broker_are_malformed_and_the_worker_keeps_running(
        tmp_path):
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from .test_celery_cluster import celery_worker, delete_queue
    from .test_run_history import wait_until

    broker = os.environ["SCHEDULER_TEST_RABBITMQ_URL"]
    queue = f"test-hardening-{uuid.uuid4().hex[:8]}"
    store = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    now = f'"{datetime.now(timezone.utc).isoformat()}"'
    history = RunHistory(create_engine(store))
    history.create_schema()
    store_id = history.store_id()
    crafted = [
        task_body(f'"job_id": "nan", "run_times": [{now}], "misfire_grace_time": NaN',
                  store_id),
        task_body(f'"job_id": "inf", "run_times": [{now}], "misfire_grace_time": Infinity',
                  store_id),
        task_body(f'"job_id": "a\\ud800", "run_times": [{now}], "misfire_grace_time": 60',
                  store_id),
        task_body('"job_id": "far", "run_times": ["9999-12-31T23:59:59-23:59"], '
                  '"misfire_grace_time": null', store_id),
        task_body(f'"job_id": "deep", "run_times": [{now}], "misfire_grace_time": 60, '
                  '"deep": ' + "[" * 100_000 + "]" * 100_000, store_id),
        # Well-formed, but unsealed (a forger without the key) or for another store.
        task_body(f'"job_id": "forged", "run_times": [{now}], "misfire_grace_time": 60',
                  store_id, key=None),
        task_body(f'"job_id": "elsewhere", "run_times": [{now}], "misfire_grace_time": 60',
                  "0" * 32),
    ]
    good = task_body(f'"job_id": "good", "run_times": [{now}], "misfire_grace_time": 60',
                     store_id)
    try:
        with celery_worker(f"hardening-{queue}", {
                "SCHEDULER_CELERY_BROKER_URL": broker, "SCHEDULER_CELERY_QUEUE": queue,
                "SCHEDULER_JOBSTORE_URL": store, "SCHEDULER_CELERY_SIGNING_KEY": KEY,
                "SCHEDULER_API_ALLOWED_FUNCS": "tests.tasks:*"}, tmp_path / "worker.log"
                           ) as worker:
            for body in [*crafted, good]:
                publish_raw(broker, queue, body)
            engine = create_engine(store)

            def recorded() -> list[str]:
                try:
                    with engine.connect() as connection:
                        return list(connection.execute(text(
                            "SELECT job_id FROM apscheduler_jobs_history")).scalars())
                except OperationalError:  # the pool process has not made the tables yet
                    return []

            assert wait_until(lambda: "good" in recorded(), timeout=20), \
                (tmp_path / "worker.log").read_text()[-3000:]
            assert worker.poll() is None
            assert recorded() == ["good"]
            log = (tmp_path / "worker.log").read_text()
            assert log.count("not run") == len(crafted), log[-3000:]
            assert "raised unexpected" not in log
    finally:
        delete_queue(broker, queue)
