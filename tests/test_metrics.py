"""``{prefix}/metrics``: in process, and under gunicorn -w 2 where every worker answers the
same run figures (read from the shared store) and, in multiprocess mode, the same counters."""

from __future__ import annotations

import re
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from scheduler_api.metrics import instrument

from .api_helpers import running_api
from .conftest import gunicorn


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(name, sorted labels) -> value of every sample of an exposition."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_runs(scheduler, job_id: str, count: int) -> None:
    deadline = time.monotonic() + 15
    while scheduler.get_runs(job_id, outcome=["success", "error"]).total < count:
        assert time.monotonic() < deadline, "the runs were not recorded"
        time.sleep(0.05)
    scheduler.recorder.flush()


def test_metrics_in_process(tmp_path: Path) -> None:
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, client):
        for job_id, func in (("ok", "tests.tasks:record"), ("fails", "tests.tasks:slow")):
            body = {"id": job_id, "func": func, "trigger": "interval", "hours": 1}
            if job_id == "fails":
                body["args"] = ["not a number"]
            assert client.post("/jobs", json=body).status_code == 200
            assert client.post(f"/jobs/{job_id}/run").status_code == 200
        client.post("/jobs", json={"id": "idle", "func": "tests.tasks:record",
                                   "trigger": "interval", "hours": 1})
        client.post("/jobs/idle/pause")
        wait_for_runs(scheduler, "ok", 1)
        wait_for_runs(scheduler, "fails", 1)
        assert client.get("/metrics", auth=False).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Basic YWRtaW46bm9wZQ=="},
                          auth=False).status_code == 401
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        found = samples(response.get_data(as_text=True))
        assert value(found, "scheduler_api_runs_total", outcome="success") == 1
        assert value(found, "scheduler_api_runs_total", outcome="error") == 1
        assert value(found, "scheduler_api_job_runs_total", job="fails", outcome="error") == 1
        assert value(found, "scheduler_api_run_duration_seconds_count") == 2
        assert value(found, "scheduler_api_run_duration_seconds_bucket", le="+Inf") == 2
        assert value(found, "scheduler_api_jobs", state="scheduled") == 2
        assert value(found, "scheduler_api_jobs", state="paused") == 1
        assert value(found, "scheduler_api_scheduler_state", state="running") == 1
        assert value(found, "scheduler_api_leader_changes_total") == 1
        leader = scheduler.leader()
        assert value(found, "scheduler_api_leader", host=leader["host"],
                     pid=str(leader["pid"])) == 1
        assert value(found, "scheduler_api_auth_answers_total", outcome="denied", code="401",
                     reason="no credentials") >= 1
        assert value(found, "scheduler_api_auth_answers_total", outcome="denied", code="401",
                     reason="credentials refused") >= 1
        assert value(found, "scheduler_api_auth_answers_total", outcome="allowed", code="",
                     reason="") >= 6
        # Pruning the history leaves the counters as they were: they never go down.
        scheduler.history.prune(keep_runs=0, keep_seconds=-10, keep_events_seconds=0,
                                live_jobs=scheduler.listing.job_ids())
        assert scheduler.get_runs().total == 0
        after = samples(client.get("/metrics").get_data(as_text=True))
        assert value(after, "scheduler_api_runs_total", outcome="success") == 1
        assert value(after, "scheduler_api_run_duration_seconds_count") == 2
        assert client.request("HEAD", "/metrics").get_data() == b""
        assert client.post("/metrics").status_code == 405


def test_per_job_series_are_bounded(tmp_path: Path) -> None:
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_METRICS_MAX_JOBS=2) as (
            scheduler, client):
        for job_id in ("c", "a", "b"):
            client.post("/jobs", json={"id": job_id, "func": "tests.tasks:record",
                                       "trigger": "interval", "hours": 1})
            client.post(f"/jobs/{job_id}/run")
            wait_for_runs(scheduler, job_id, 1)
        found = samples(client.get("/metrics").get_data(as_text=True))
    jobs = {dict(labels)["job"] for name, labels in found
            if name == "scheduler_api_job_runs_total"}
    assert jobs == {"a", "b"}  # the first ids; the all-jobs total counts the third too
    assert value(found, "scheduler_api_runs_total", outcome="success") == 3


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_METRICS_ENABLED=False) as (_, client):
        response = client.get("/metrics")
    assert response.status_code == 404 and "metrics are off" in response.json["error_message"]


def test_503_answers_and_denials_are_counted() -> None:
    def unavailable(environ, start_response):
        start_response("503 Service Unavailable", [("Content-Type", "application/json")])
        return [b"{}"]

    app, options = instrument(unavailable, {})
    from scheduler_api.metrics import _ProcessCounters

    counters = _ProcessCounters.get()
    before = counters.store_errors._value.get()
    app({"REQUEST_METHOD": "GET"}, lambda status, headers, exc_info=None: None)
    assert counters.store_errors._value.get() == before + 1
    denied = counters.answers.labels("denied", "429", "throttled")
    before = denied._value.get()
    options["on_deny"]({"authmw.denied": "throttled"}, lambda *args: None,
                       "429 Too Many Requests", [])
    assert denied._value.get() == before + 1


def test_under_gunicorn_every_worker_answers_the_same(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {"SCHEDULER_API_USERNAME": "admin", "SCHEDULER_API_PASSWORD": "secret",
           "SCHEDULER_API_ALLOWED_FUNCS": "tasks:*", "SCHEDULER_API_MAX_FAILURES": "0",
           "SCHEDULER_JOBSTORE_URL": f"sqlite:///{tmp_path / 'jobs.sqlite'}",
           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with gunicorn("gunicorn_app:app", "--chdir", "examples", "--workers", "2", env=env) as (
            host, port):
        base = f"http://{host}:{port}/scheduler"
        auth = ("admin", "secret")
        for status in (requests.get(f"{base}/metrics", timeout=10).status_code,
                       requests.get(f"{base}/metrics", auth=("admin", "no"),
                                    timeout=10).status_code):
            assert status == 401
        assert requests.post(f"{base}/jobs", auth=auth, timeout=10, json={
            "id": "job", "func": "tasks:my_task", "trigger": "interval", "hours": 1}).ok
        for count in (1, 2, 3):  # one at a time: max_instances is 1
            assert requests.post(f"{base}/jobs/job/run", auth=auth, timeout=10).ok
            deadline = time.monotonic() + 15
            while requests.get(f"{base}/jobs/job/runs?outcome=success", auth=auth,
                               timeout=10).json()["total"] < count:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        time.sleep(0.5)  # the recorder's write of the last run's stats
        pids, figures, denials = set(), set(), set()
        for _ in range(12):
            text = requests.get(f"{base}/metrics", auth=auth, timeout=10,
                                headers={"Connection": "close"}).text
            pids.add(requests.get(base, auth=auth, timeout=10,
                                  headers={"Connection": "close"}).json()["current_pid"])
            found = samples(text)
            figures.add(tuple(sorted(
                (key, number) for key, number in found.items()
                if re.match(r"scheduler_api_(runs|job_runs|run_duration|jobs|leader)", key[0]))))
            denials.add(value(found, "scheduler_api_auth_answers_total", outcome="denied",
                              code="401", reason="no credentials"))
    assert len(pids) == 2, "both workers answered"
    assert len(figures) == 1, "every worker gave the same run figures"
    runs = dict(next(iter(figures)))
    assert runs[("scheduler_api_runs_total", (("outcome", "success"),))] == 3
    assert denials == {1.0}, "the 401 is counted once, whichever worker answers"
