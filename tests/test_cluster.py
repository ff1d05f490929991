"""Several gunicorn workers (and hosts) on one store: each run exactly once, same answers.

These start real gunicorn processes; a run takes about a minute in all.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from .conftest import POSTGRES_URL, ROOT, free_port, gunicorn, needs_postgres

AUTH = ("admin", "secret")


def cluster_env(run_log: Path, jobstore_url: str, table: str = "apscheduler_jobs") -> dict:
    return {"SCHEDULER_API_USERNAME": "admin", "SCHEDULER_API_PASSWORD": "secret",
            "SCHEDULER_API_ALLOWED_FUNCS": "tests.tasks:*", "SCHEDULER_JOBSTORE_URL": jobstore_url,
            "SCHEDULER_JOBSTORE_TABLE": table, "RUN_LOG": str(run_log)}


def store_env(store: str, tmp_path: Path, run_log: Path, request) -> dict:
    """:func:`cluster_env` of a SQLite file (``store`` "sqlite") or of a fresh PostgreSQL
    table ("postgres"; skipped without one)."""
    if store == "sqlite":
        return cluster_env(run_log, f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    if not POSTGRES_URL:
        pytest.skip("set SCHEDULER_TEST_POSTGRES_URL (e.g. postgresql+psycopg://...)")
    return cluster_env(run_log, POSTGRES_URL, request.getfixturevalue("postgres_table"))


def api(base: str, method: str = "GET", path: str = "", **kwargs) -> requests.Response:
    # A new connection each time, so that gunicorn hands requests to different workers.
    return requests.request(method, f"{base}/scheduler{path}", auth=AUTH, timeout=10,
                            headers={"Connection": "close"}, **kwargs)


def runs(run_log: Path, job_id: str) -> list[tuple[datetime, int, datetime]]:
    if not run_log.exists():
        return []
    found = []
    for line in run_log.read_text().splitlines():
        name, scheduled, pid, finished = line.split()
        if name == job_id:
            found.append((datetime.fromisoformat(scheduled), int(pid),
                          datetime.fromisoformat(finished)))
    return sorted(found)


def add_every_second_job(base: str, job_id: str) -> datetime:
    """Add a job that runs every second from ~2 s on; return its first scheduled run."""
    start = (datetime.now(timezone.utc) + timedelta(seconds=2)).replace(microsecond=0)
    response = api(base, "POST", "/jobs", json={
        "id": job_id, "func": "tests.tasks:record", "trigger": "interval", "seconds": 1,
        "start_date": start.isoformat(), "coalesce": False, "misfire_grace_time": 60})
    assert response.status_code == 200, response.text
    # On a loaded machine the POST can take past start_date: APScheduler then schedules the
    # job from the next second on (a run due before the job existed is not a missed run).
    first = datetime.fromisoformat(response.json()["next_run_time"])
    assert start <= first <= datetime.now(timezone.utc) + timedelta(seconds=2)
    return first


def wait_for_runs_until(run_log: Path, job_id: str, until: datetime,
                        timeout: float = 15) -> None:
    """Wait until the job's log has a run scheduled at or after ``until``'s last second:
    the runs due by then have run, however late a loaded machine runs (and logs) them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(scheduled >= until - timedelta(seconds=1) for scheduled, _, _ in
               runs(run_log, job_id)):
            return
        time.sleep(0.1)


def assert_each_run_once(run_log: Path, job_id: str, start: datetime, until: datetime) -> list:
    recorded = runs(run_log, job_id)
    scheduled = [run[0] for run in recorded]
    expected = [start + timedelta(seconds=n)
                for n in range(int((until - start).total_seconds()) + 1)]
    assert len(scheduled) == len(set(scheduled)), f"a run happened twice: {recorded}"
    assert [when for when in scheduled if when <= until] == expected, "a run is missing"
    return recorded


def leader_pid(base: str) -> int:
    deadline = time.monotonic() + 30  # workers importing the app on a loaded machine
    while time.monotonic() < deadline:
        leader = api(base).json()["leader"]
        if leader is not None:
            return int(leader["pid"])
        time.sleep(0.2)
    raise AssertionError("no leader elected")


def run_now_delay(base: str, run_log: Path, job_id: str) -> float:
    """Seconds from posting a run-now job through any worker to the end of its run."""
    posted = datetime.now(timezone.utc)
    response = api(base, "POST", "/jobs", json={"id": job_id, "func": "tests.tasks:record"})
    assert response.status_code == 200
    deadline = time.monotonic() + 15  # the median is judged, not each one
    while not runs(run_log, job_id) and time.monotonic() < deadline:
        time.sleep(0.02)
    (_, _, finished), = runs(run_log, job_id)
    return (finished - posted).total_seconds()


def kill_leader_and_check_takeover(bases: list[str], run_log: Path, job_id: str) -> None:
    old = leader_pid(bases[0])
    # Halfway between two runs of the every-second job: a leader killed in the short window
    # between storing a run and starting it loses that run (README,
    # "Deployment"); no test can make that window go away, so the kill avoids it.
    now = datetime.now(timezone.utc)
    time.sleep((1.5 - now.microsecond / 1e6) % 1.0)
    killed_at = datetime.now(timezone.utc)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        new_runs = [run for run in runs(run_log, job_id) if run[1] != old]
        if any(run[2] > killed_at for run in new_runs):
            break
        time.sleep(0.2)
    late = [run for run in runs(run_log, job_id) if run[2] > killed_at and run[1] != old]
    assert late, "nobody took over from the killed leader"
    assert (late[0][2] - killed_at).total_seconds() < 5, "takeover took longer than 5 s"


def test_four_workers_on_sqlite_run_each_job_once_and_answer_alike(tmp_path):
    run_log = tmp_path / "runs.log"
    env = cluster_env(run_log, f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    with gunicorn("tests.cluster_app:app", "--workers", "4", env=env) as (host, port):
        base = f"http://{host}:{port}"
        start = add_every_second_job(base, "tick")
        for index in range(6):
            assert api(base, "POST", "/jobs", json={
                "id": f"later-{index}", "func": "tests.tasks:record", "trigger": "cron",
                "hour": "3"}).status_code == 200
        def listing_and_pid(_: int) -> tuple[tuple, int]:
            listing = api(base, "GET", "/jobs").json()
            return (tuple((job["id"], job["next_run_time"]) for job in listing
                          if job["id"] != "tick"), api(base).json()["current_pid"])

        with ThreadPoolExecutor(8) as pool:  # concurrent, so that every worker gets some
            answers = list(pool.map(listing_and_pid, range(32)))
        listings = {listing for listing, _ in answers}
        pids = {pid for _, pid in answers}
        assert len(pids) >= 2, "all requests went to one worker: the test proves nothing"
        assert len(listings) == 1 and len(next(iter(listings))) == 6

        time.sleep(4)
        kill_leader_and_check_takeover([base], run_log, "tick")
        time.sleep(2)
        until = datetime.now(timezone.utc) - timedelta(seconds=1.5)
        wait_for_runs_until(run_log, "tick", until)  # before the pause, which would drop them
        api(base, "POST", "/jobs/tick/pause")
        recorded = assert_each_run_once(run_log, "tick", start, until)
        assert len(recorded) >= 6
        assert len({pid for _, pid, _ in recorded}) == 2  # the killed leader and its successor


@pytest.mark.parametrize("store", ["sqlite", "postgres"],
                         ids=["sqlite-leader-polls", "postgres-leader-is-notified"])
def test_a_job_added_through_any_worker_to_run_now_starts_within_a_second(tmp_path, store,
                                                                         request):
    run_log = tmp_path / "runs.log"
    env = store_env(store, tmp_path, run_log, request)
    with gunicorn("tests.cluster_app:app", "--workers", "4", env=env) as (host, port):
        base = f"http://{host}:{port}"
        leader_pid(base)
        delays = [run_now_delay(base, run_log, f"now-{index}") for index in range(7)]
        assert statistics.median(delays) < 1.0, delays


def test_shared_state_pause_and_run_through_any_worker(tmp_path):
    run_log = tmp_path / "runs.log"
    env = cluster_env(run_log, f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    with gunicorn("tests.cluster_app:app", "--workers", "3", env=env) as (host, port):
        base = f"http://{host}:{port}"
        add_every_second_job(base, "tick")
        assert api(base, "POST", "/pause").status_code == 204
        assert {api(base).json()["state"] for _ in range(12)} == {"paused"}
        time.sleep(1)  # let a run that had already started finish
        before = len(runs(run_log, "tick"))
        time.sleep(3)
        assert len(runs(run_log, "tick")) == before, "a job ran while paused"
        for count in range(1, 4):  # through whichever workers answer: the leader runs each
            assert api(base, "POST", "/jobs/tick/run").status_code == 200
            deadline = time.monotonic() + 15  # one at a time: max_instances is 1
            while len(runs(run_log, "tick")) < before + count and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(runs(run_log, "tick")) == before + count
        assert api(base, "POST", "/shutdown").status_code == 204
        assert {api(base).json()["state"] for _ in range(6)} == {"stopped"}
        assert api(base, "POST", "/start").status_code == 204
        assert {api(base).json()["state"] for _ in range(6)} == {"running"}


def test_preload_starts_the_scheduler_in_the_workers_not_the_master(tmp_path):
    run_log = tmp_path / "runs.log"
    env = cluster_env(run_log, f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    with gunicorn("tests.cluster_app:app", "--workers", "2", "--preload", env=env) as (
            host, port):
        base = f"http://{host}:{port}"
        master = api(base).json()["current_pid"]
        leader = leader_pid(base)
        assert api(base, "POST", "/jobs", json={"id": "once",
                                                "func": "tests.tasks:record"}).status_code == 200
        deadline = time.monotonic() + 15
        while not runs(run_log, "once") and time.monotonic() < deadline:
            time.sleep(0.05)
        (_, pid, _), = runs(run_log, "once")
        assert pid == leader
    assert master != os.getpid()


@needs_postgres
def test_two_hosts_on_postgres_run_each_job_once_and_answer_alike(tmp_path, postgres_table):
    run_log = tmp_path / "runs.log"
    env = cluster_env(run_log, POSTGRES_URL, postgres_table)
    with gunicorn("tests.cluster_app:app", "--workers", "2", env=env) as first, \
            gunicorn("tests.cluster_app:app", "--workers", "2", env=env) as second:
        bases = [f"http://{host}:{port}" for host, port in (first, second)]
        start = add_every_second_job(bases[0], "tick")
        assert api(bases[1], "POST", "/jobs", json={
            "id": "nightly", "func": "tests.tasks:record", "trigger": "cron",
            "hour": "3"}).status_code == 200
        listings = {tuple(job["id"] for job in api(base, "GET", "/jobs").json())
                    for base in bases for _ in range(4)}
        assert listings == {("tick", "nightly")}
        assert len({api(base).json()["leader"]["pid"] for base in bases}) == 1

        time.sleep(4)
        kill_leader_and_check_takeover(bases, run_log, "tick")
        time.sleep(2)
        until = datetime.now(timezone.utc) - timedelta(seconds=1.5)
        wait_for_runs_until(run_log, "tick", until)
        api(bases[0], "POST", "/jobs/tick/pause")
        recorded = assert_each_run_once(run_log, "tick", start, until)
        assert len(recorded) >= 6


def test_the_werkzeug_reloader_runs_each_job_once(tmp_path):
    """The reloader's watcher process imports the app too: both start, one leads."""
    run_log = tmp_path / "runs.log"
    env = {**os.environ, **cluster_env(run_log, f"sqlite:///{tmp_path / 'jobs.sqlite'}")}
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.reloader_app", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                api(base)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the reloader app did not start"
                time.sleep(0.1)
        start = add_every_second_job(base, "tick")
        time.sleep(5)
        until = datetime.now(timezone.utc) - timedelta(seconds=1.5)
        wait_for_runs_until(run_log, "tick", until)
        assert_each_run_once(run_log, "tick", start, until)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
