"""Runs handed to real Celery workers: gunicorn -w 2 with the API (its leader sends the runs),
two Celery worker processes, a real broker (RabbitMQ; Redis as the second) and one SQLite
store. Each run is recorded once, by a worker; a worker killed mid-run leaves its run
``lost``; the allow-list holds on the worker; ``max_instances`` holds across workers; a run
that waited in the queue past its grace time is ``missed``.

RabbitMQ's URL from SCHEDULER_TEST_RABBITMQ_URL, Redis's from AUTHMW_TEST_REDIS_URL (.ci/run
sets both). About a minute in all.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from .conftest import ROOT, gunicorn
from .test_celery_executor import KEY
from .test_cluster import api, cluster_env
from .test_run_history import wait_until

RABBITMQ_URL = os.environ.get("SCHEDULER_TEST_RABBITMQ_URL")
REDIS_URL = os.environ.get("AUTHMW_TEST_REDIS_URL")
needs_rabbitmq = pytest.mark.skipif(
    not RABBITMQ_URL,
    reason="set SCHEDULER_TEST_RABBITMQ_URL (e.g. amqp://guest:guest@127.0.0.1:5672//)")


@contextmanager
def celery_worker(name: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A real ``celery worker`` (one pool process) reading the test's queue."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "scheduler_api.celery_worker", "worker",
             "--concurrency", "1", "--hostname", f"{name}@%h", "--loglevel", "info",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=output, stderr=subprocess.STDOUT)
    try:
        if not wait_until(lambda: b"ready." in log.read_bytes() or process.poll() is not None,
                          timeout=30, step=0.1) or process.poll() is not None:
            raise RuntimeError(f"celery worker {name} did not start: {log.read_text()}")
        yield process
    finally:
        process.terminate()  # a warm shutdown: what it recorded is written first
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pool_pids(worker: subprocess.Popen) -> set[int]:
    """The pool processes of a celery worker (its children)."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    return {int(pid) for pid in children}


def delete_queue(broker: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker) as connection:
        connection.default_channel.queue_delete(queue)


@contextmanager
def cluster(tmp_path: Path, broker: str, acks_late: bool = False) -> Iterator[dict]:
    """gunicorn -w 2 (the API and the leader) and two celery workers on one SQLite store."""
    store = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    queue = f"test-{uuid.uuid4().hex[:8]}"
    celery_env = {"SCHEDULER_CELERY_BROKER_URL": broker, "SCHEDULER_CELERY_QUEUE": queue,
                  "SCHEDULER_CELERY_SIGNING_KEY": KEY}
    with ExitStack() as stack:
        stack.callback(delete_queue, broker, queue)
        host, port = stack.enter_context(gunicorn(
            "tests.cluster_app:app", "--workers", "2",
            env={**cluster_env(tmp_path / "runs.log", store), **celery_env,
                 "SCHEDULER_EXECUTOR": "celery",
                 **({"SCHEDULER_CELERY_ACKS_LATE": "1"} if acks_late else {})}))
        workers = [stack.enter_context(celery_worker(name, {
            **celery_env, "SCHEDULER_JOBSTORE_URL": store,
            "SCHEDULER_API_ALLOWED_FUNCS": "tests.tasks:*"}, tmp_path / f"{name}.log"))
            for name in (f"w1-{queue}", f"w2-{queue}")]  # a node name held by one worker
        yield {"base": f"http://{host}:{port}", "workers": workers, "store": store}


@pytest.fixture(scope="module")
def rabbitmq_cluster(tmp_path_factory):
    if not RABBITMQ_URL:
        pytest.skip("set SCHEDULER_TEST_RABBITMQ_URL (e.g. amqp://guest:guest@127.0.0.1:5672//)")
    with cluster(tmp_path_factory.mktemp("celery"), RABBITMQ_URL) as running:
        yield running


def add_job(base: str, job_id: str, func: str, **fields: object) -> None:
    far = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    body = {"id": job_id, "func": func, "trigger": "date", "run_date": far, **fields}
    response = api(base, "POST", "/jobs", json=body)
    assert response.status_code == 200, response.text


def run_now(base: str, job_id: str) -> None:
    response = api(base, "POST", f"/jobs/{job_id}/run")
    assert response.status_code == 200, response.text


def job_runs(base: str, job_id: str) -> list[dict]:
    response = api(base, "GET", f"/jobs/{job_id}/runs", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return response.json()["runs"]


def ended(base: str, job_id: str, count: int, timeout: float = 30) -> list[dict]:
    """The job's runs once ``count`` of them have ended (fails after ``timeout`` s)."""
    def enough() -> list[dict] | None:
        shown = job_runs(base, job_id)
        done = [run for run in shown if run["outcome"] != "running"]
        return done if len(done) >= count else None

    done = wait_until(enough, timeout=timeout, step=0.2)
    assert done, f"{job_id}: fewer than {count} runs ended: {job_runs(base, job_id)}"
    return done


def worker_pids(running: dict) -> set[int]:
    return set().union(*(pool_pids(worker) for worker in running["workers"]))


def gunicorn_pids(base: str) -> set[int]:
    return {api(base).json()["current_pid"] for _ in range(10)}


@needs_rabbitmq
def test_a_job_run_100_times_is_recorded_100_times_by_the_workers(rabbitmq_cluster):
    base = rabbitmq_cluster["base"]
    add_job(base, "many", "tests.tasks:give", args=["done"], max_instances=100)
    for _ in range(100):  # through both gunicorn workers; one of them leads and sends
        run_now(base, "many")
    runs = ended(base, "many", 100)
    assert len(runs) == 100 and len({run["id"] for run in runs}) == 100
    assert {(run["outcome"], run["reason"], run["result"]) for run in runs} == {
        ("success", "run", "'done'")}
    by = {run["pid"] for run in runs}
    assert by <= worker_pids(rabbitmq_cluster), "a run was recorded by a process not a worker"
    assert not by & gunicorn_pids(base), "the leader ran a run itself"
    time.sleep(1)
    assert len(job_runs(base, "many")) == 100, "a run was recorded twice"
    # The metrics read the same store: the workers' runs count as the leader's would.
    metrics = api(base, "GET", "/metrics").text
    assert 'scheduler_api_job_runs_total{job="many",outcome="success"} 100.0' in metrics


@needs_rabbitmq
def test_scheduled_runs_reach_the_workers_once_each(rabbitmq_cluster):
    base = rabbitmq_cluster["base"]
    start = (datetime.now(timezone.utc) + timedelta(seconds=1)).replace(microsecond=0)
    response = api(base, "POST", "/jobs", json={
        "id": "tick", "func": "tests.tasks:give", "args": [1], "trigger": "interval",
        "seconds": 1, "start_date": start.isoformat(), "coalesce": False})
    assert response.status_code == 200, response.text
    time.sleep(4.5)
    assert api(base, "POST", "/jobs/tick/pause").status_code == 200
    ended(base, "tick", 3)
    time.sleep(1)  # (a run recorded twice would show meanwhile)
    # then wait for a run that started before the pause: a slow worker's may take longer
    runs = wait_until(lambda: (shown := job_runs(base, "tick")) and all(
        run["outcome"] != "running" for run in shown) and shown, timeout=15, step=0.2)
    assert runs, job_runs(base, "tick")
    scheduled = [run["scheduled_at"] for run in runs]
    assert len(scheduled) == len(set(scheduled)) >= 3, "a run time ran twice"
    assert {(run["outcome"], run["reason"]) for run in runs} == {("success", "schedule")}
    assert {run["pid"] for run in runs} <= worker_pids(rabbitmq_cluster)


@needs_rabbitmq
def test_a_worker_killed_mid_run_leaves_its_run_lost_and_the_next_run_goes_on(
        rabbitmq_cluster):
    base = rabbitmq_cluster["base"]
    add_job(base, "doomed", "tests.tasks:slow", args=[30])
    run_now(base, "doomed")
    running = wait_until(lambda: [run for run in job_runs(base, "doomed")
                                  if run["outcome"] == "running"], timeout=15, step=0.1)
    assert running, "the run did not start"
    os.kill(running[0]["pid"], signal.SIGKILL)
    lost = wait_until(lambda: [run for run in job_runs(base, "doomed")
                               if run["outcome"] == "lost"], timeout=20, step=0.2)
    assert lost and lost[0]["id"] == running[0]["id"]
    assert lost[0]["error"]["type"] == "ProcessLost"
    # The replacement pool process runs the next one (its slot was freed with it).
    response = api(base, "PATCH", "/jobs/doomed", json={"args": [0]})
    assert response.status_code == 200, response.text
    run_now(base, "doomed")
    after = wait_until(lambda: [run for run in job_runs(base, "doomed")
                                if run["outcome"] == "success"], timeout=20, step=0.2)
    assert after and after[0]["pid"] != running[0]["pid"]


@needs_rabbitmq
def test_the_worker_refuses_a_func_written_into_the_store_by_hand(rabbitmq_cluster):
    base = rabbitmq_cluster["base"]
    add_job(base, "edited", "tests.tasks:give", args=["/"])
    engine = create_engine(rabbitmq_cluster["store"])
    with engine.begin() as connection:  # what someone with the database's password can do
        state = pickle.loads(connection.execute(text(
            "SELECT job_state FROM apscheduler_jobs WHERE id = 'edited'")).scalar_one())
        state["func"] = "os:listdir"
        connection.execute(text("UPDATE apscheduler_jobs SET job_state = :state "
                                "WHERE id = 'edited'"), {"state": pickle.dumps(state)})
    engine.dispose()
    run_now(base, "edited")
    run, = ended(base, "edited", 1)
    assert run["outcome"] == "error" and run["error"]["type"] == "ForbiddenFunc"
    assert "'os:listdir' is not allowed" in run["error"]["message"]
    assert run["pid"] in worker_pids(rabbitmq_cluster) and run["result"] is None


@needs_rabbitmq
def test_max_instances_holds_across_workers_and_a_run_late_from_the_queue_is_missed(
        rabbitmq_cluster):
    base = rabbitmq_cluster["base"]
    add_job(base, "single", "tests.tasks:slow", args=[3], max_instances=1)
    add_job(base, "punctual", "tests.tasks:give", args=[1], misfire_grace_time=1)
    run_now(base, "single")
    wait_until(lambda: job_runs(base, "single"), timeout=10, step=0.1)
    run_now(base, "single")  # the other worker takes it: the one slot is taken
    skipped = wait_until(lambda: [run for run in job_runs(base, "single")
                                  if run["outcome"] == "skipped"], timeout=10, step=0.1)
    assert skipped, job_runs(base, "single")
    # Both workers busy for ~3 s: the next run waits in the queue past its 1 s of grace.
    add_job(base, "busy", "tests.tasks:slow", args=[3], max_instances=2)
    run_now(base, "busy")
    run_now(base, "busy")
    wait_until(lambda: len([run for run in job_runs(base, "busy")
                            if run["outcome"] == "running"]) == 2, timeout=10, step=0.05)
    run_now(base, "punctual")
    run, = ended(base, "punctual", 1)
    assert run["outcome"] == "missed" and run["started_at"] is None
    first, = [run for run in ended(base, "single", 2) if run["outcome"] == "success"]
    assert first["pid"] != skipped[0]["pid"], "both runs went to one worker"


def test_runs_reach_workers_through_a_redis_broker_too(tmp_path):
    if not REDIS_URL:
        pytest.skip("set AUTHMW_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    with cluster(tmp_path, REDIS_URL) as running:
        base = running["base"]
        add_job(base, "via-redis", "tests.tasks:give", args=[2], max_instances=20)
        for _ in range(20):
            run_now(base, "via-redis")
        runs = ended(base, "via-redis", 20)
        assert len(runs) == 20 and {run["outcome"] for run in runs} == {"success"}
        assert {run["pid"] for run in runs} <= worker_pids(running)


@needs_rabbitmq
def test_with_acks_late_a_run_whose_worker_was_killed_is_lost_then_delivered_again(tmp_path):
    # Its own cluster: workers whose scheduler sends to the acks-late task.
    with cluster(tmp_path, RABBITMQ_URL, acks_late=True) as running:
        base = running["base"]
        add_job(base, "again", "tests.tasks:slow", args=[4])
        run_now(base, "again")
        first = wait_until(lambda: job_runs(base, "again"), timeout=15, step=0.1)
        assert first and first[0]["outcome"] == "running"
        os.kill(first[0]["pid"], signal.SIGKILL)
        runs = wait_until(lambda: (lambda shown: shown if {run["outcome"] for run in shown}
                                   == {"lost", "success"} else None)(job_runs(base, "again")),
                          timeout=30, step=0.2)
        assert runs, job_runs(base, "again")
        lost, = [run for run in runs if run["outcome"] == "lost"]
        again, = [run for run in runs if run["outcome"] == "success"]
        assert lost["id"] == first[0]["id"] and again["scheduled_at"] == lost["scheduled_at"]
        assert again["pid"] != lost["pid"]
