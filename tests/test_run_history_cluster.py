"""Run history under real gunicorn processes: each run recorded exactly once, the same runs
seen through every worker and host, lost runs of a killed leader, retention in a live server.

About a minute in all.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from .conftest import POSTGRES_URL, gunicorn, needs_postgres
from .test_cluster import add_every_second_job, api, cluster_env, leader_pid, runs
from .test_run_history import wait_until


def history(base: str, job_id: str | None = None, **query: object) -> dict:
    path = "/runs" if job_id is None else f"/jobs/{job_id}/runs"
    response = api(base, "GET", path, params={"limit": 1000, **query})
    assert response.status_code == 200, response.text
    return response.json()


def settled(bases: list[str], run_log: Path, job_id: str) -> list[dict]:
    """The job's runs once every run the log has is recorded as ended, through ``bases``."""
    def recorded() -> list[dict] | None:
        shown = history(bases[0], job_id)["runs"]
        done = [run for run in shown if run["outcome"] != "running"]
        return shown if len(done) >= len(runs(run_log, job_id)) and \
            len(done) == len(shown) else None

    shown = wait_until(recorded, timeout=10, step=0.2)
    assert shown, "the history does not hold every run the log has"
    return shown


def assert_recorded_exactly_once(shown: list[dict], run_log: Path, job_id: str) -> None:
    """Every run the job's log has (one line per run, written by the process that ran it)
    is recorded once, a success, by the same process; and nothing else is."""
    logged = sorted((scheduled, pid) for scheduled, pid, _ in runs(run_log, job_id))
    recorded = sorted((datetime.fromisoformat(run["scheduled_at"]), run["pid"])
                      for run in shown)
    assert len({run["id"] for run in shown}) == len(shown)
    assert recorded == logged, "the history and the runs differ"
    assert {run["outcome"] for run in shown} == {"success"}


def same_through_every_worker(base: str, job_id: str, expected: list[dict]) -> None:
    """Concurrent requests (so that every worker answers some) all show ``expected``."""
    def one(_: int) -> tuple[list[dict], int]:
        return history(base, job_id)["runs"], api(base).json()["current_pid"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(24)))
    assert len({pid for _, pid in answers}) >= 2, "one worker answered everything"
    assert all(shown == expected for shown, _ in answers)


def test_four_workers_record_each_run_once_show_errors_and_mark_a_killed_leaders_run_lost(
        tmp_path):
    run_log = tmp_path / "runs.log"
    env = cluster_env(run_log, f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    with gunicorn("tests.cluster_app:app", "--workers", "4", env=env) as (host, port):
        base = f"http://{host}:{port}"
        add_every_second_job(base, "tick")
        assert api(base, "POST", "/jobs", json={
            "id": "oops", "func": "tests.tasks:fail", "args": ["it went wrong"]}).status_code \
            == 200
        # at least 4 scheduled runs (a fixed 5 s left 3 when the fourth was due as it paused)
        assert wait_until(lambda: len(runs(run_log, "tick")) >= 4, timeout=20, step=0.2)
        assert api(base, "POST", "/jobs/tick/pause").status_code == 200
        time.sleep(1.5)  # a run that started before the pause ends
        for _ in range(2):  # run now, through whichever worker answers
            before = len(runs(run_log, "tick"))
            assert api(base, "POST", "/jobs/tick/run").status_code == 200
            assert wait_until(lambda: len(runs(run_log, "tick")) > before)  # noqa: B023
        shown = settled([base], run_log, "tick")
        assert len(shown) >= 6
        assert_recorded_exactly_once(shown, run_log, "tick")
        assert [run["reason"] for run in shown[:2]] == ["run", "run"]
        assert {run["reason"] for run in shown[2:]} == {"schedule"}
        same_through_every_worker(base, "tick", shown)

        error, = history(base, "oops")["runs"]
        assert error["outcome"] == "error" and error["error"]["message"] == "it went wrong"
        assert "in fail" in error["error"]["traceback"]
        assert error["error"]["traceback"].rstrip().endswith("RuntimeError: it went wrong")

        # the leader killed while a job of 3 s runs: that run is lost, the next one ends well
        leader = leader_pid(base)
        assert api(base, "POST", "/jobs", json={
            "id": "sleepy", "func": "tests.tasks:slow", "args": [3], "trigger": "interval",
            "seconds": 6}).status_code == 200
        running = wait_until(lambda: history(base, "sleepy", outcome="running")["runs"],
                             timeout=20, step=0.1)
        assert running and running[0]["pid"] == leader
        os.kill(leader, signal.SIGKILL)
        lost = wait_until(lambda: history(base, "sleepy", outcome="lost")["runs"], timeout=20,
                          step=0.2)
        assert [run["id"] for run in lost] == [running[0]["id"]]
        assert lost[0]["error"]["type"] == "ProcessLost"
        succeeded = wait_until(lambda: history(base, "sleepy", outcome="success")["runs"],
                               timeout=30, step=0.2)
        assert succeeded and succeeded[0]["pid"] != leader
        assert history(base, "sleepy")["total"] == 2
        assert history(base)["total"] == len(shown) + 1 + 2


def test_retention_prunes_in_a_live_server(tmp_path):
    run_log = tmp_path / "runs.log"
    env = {**cluster_env(run_log, f"sqlite:///{tmp_path / 'jobs.sqlite'}"),
           "SCHEDULER_HISTORY_KEEP_RUNS": "3", "SCHEDULER_HISTORY_KEEP_DAYS": "0",
           "HISTORY_HOUSEKEEPING_SECONDS": "0.5"}
    with gunicorn("tests.cluster_app:app", "--workers", "2", env=env) as (host, port):
        base = f"http://{host}:{port}"
        add_every_second_job(base, "tick")
        assert wait_until(lambda: len(runs(run_log, "tick")) >= 7, timeout=15, step=0.2)
        api(base, "POST", "/jobs/tick/pause")

        def newest_three() -> list[datetime]:
            # (read each time: a run that started as the job was paused is logged as it ends)
            return sorted((scheduled for scheduled, _, _ in runs(run_log, "tick")),
                          reverse=True)[:3]

        kept = wait_until(lambda: (body := history(base, "tick"))["total"] == 3 and [
            datetime.fromisoformat(run["scheduled_at"]) for run in body["runs"]
        ] == newest_three() and body, timeout=20, step=0.2)
        assert kept, f"the leader did not prune to the last 3 runs: {history(base, 'tick')}"
        assert [run["outcome"] for run in kept["runs"]] == ["success"] * 3
        assert history(base)["total"] == 3
        assert api(base, "GET", "/jobs/tick").json()["last_run"]["id"] == kept["runs"][0]["id"]


@needs_postgres
def test_two_hosts_on_postgres_record_each_run_once_and_show_the_same(tmp_path,
                                                                      postgres_table):
    run_log = tmp_path / "runs.log"
    env = cluster_env(run_log, POSTGRES_URL, postgres_table)
    with gunicorn("tests.cluster_app:app", "--workers", "2", env=env) as first, \
            gunicorn("tests.cluster_app:app", "--workers", "2", env=env) as second:
        bases = [f"http://{host}:{port}" for host, port in (first, second)]
        add_every_second_job(bases[0], "tick")
        assert wait_until(lambda: len(runs(run_log, "tick")) >= 4, timeout=20, step=0.2)
        api(bases[1], "POST", "/jobs/tick/pause")
        time.sleep(1.5)  # a run that started before the pause ends
        before = len(runs(run_log, "tick"))
        assert api(bases[1], "POST", "/jobs/tick/run").status_code == 200
        assert wait_until(lambda: len(runs(run_log, "tick")) > before)
        shown = settled(bases, run_log, "tick")
        assert len(shown) >= 5
        assert_recorded_exactly_once(shown, run_log, "tick")
        assert "run" in {run["reason"] for run in shown}
        for base in bases:
            assert history(base, "tick")["runs"] == shown
            assert history(base)["total"] == len(shown)
