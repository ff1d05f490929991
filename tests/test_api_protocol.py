"""The job API against a fake of the interface it is written against: no APScheduler
scheduler, no store, no facade (``scheduler_api.protocol.JobScheduler``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from werkzeug.test import Client

from scheduler_api.api import SchedulerAPI
from scheduler_api.funcs import FuncPolicy
from scheduler_api.history import Run, RunPage
from scheduler_api.protocol import JobScheduler


class FakeScheduler:
    """Records what the API asks; holds jobs in a dict."""

    def __init__(self) -> None:
        self.func_policy = FuncPolicy()
        self.func_policy.allow("tests.tasks:*")
        self.min_interval = 1.0
        self.host_name = "fake-host"
        self.allowed_hosts = ["*"]
        self.timezone = timezone.utc
        self.running = True
        self.state_name = "running"
        self.host_allowed = True
        self.calls: list[tuple[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}

    def leader(self) -> dict[str, Any] | None:
        return {"host": "fake-host", "pid": 1, "since": "2026-12-01T00:00:00+00:00"}

    def ready_problem(self) -> str | None:
        return None

    def pause(self) -> None:
        self.calls.append(("pause", None))

    def resume(self) -> None:
        self.calls.append(("resume", None))

    def start_all(self) -> None:
        self.calls.append(("start_all", None))

    def stop_all(self, wait: bool = True) -> None:
        self.calls.append(("stop_all", wait))

    def jobstore_names(self) -> list[str]:
        return ["default"]

    def executor_names(self) -> list[str]:
        return ["default"]

    def list_jobs(self, limit: int | None = None, offset: int = 0) -> tuple[bytes, int]:
        return json.dumps([{"id": job_id} for job_id in self.jobs]).encode(), len(self.jobs)

    def stored_job_state(self, id: str) -> bytes | None:
        return None

    def get_job(self, id: str, jobstore: str | None = None) -> Job | None:
        return None

    def add_job(self, id: str, func: Any, **kwargs: Any) -> Job:
        self.calls.append(("add_job", (id, func, sorted(kwargs))))
        raise JobLookupError(id)  # the fake stores nothing it could answer with

    def modify_job(self, id: str, jobstore: str | None = None, **changes: Any) -> Job:
        raise JobLookupError(id)

    def change_job(self, id: str, change: Callable[[Job], dict[str, Any]],
                   jobstore: str | None = None) -> Job:
        raise JobLookupError(id)

    def remove_job(self, id: str, jobstore: str | None = None) -> None:
        if self.jobs.pop(id, None) is None:
            raise JobLookupError(id)

    def pause_job(self, id: str, jobstore: str | None = None) -> Job:
        raise JobLookupError(id)

    def resume_job(self, id: str, jobstore: str | None = None) -> Job | None:
        raise JobLookupError(id)

    def run_job(self, id: str, jobstore: str | None = None) -> Job:
        raise JobLookupError(id)

    def get_runs(self, job_id: str | None = None, outcome: str | Collection[str] = (),
                 since: datetime | None = None, until: datetime | None = None,
                 limit: int = 100, offset: int = 0) -> RunPage:
        self.calls.append(("get_runs", (job_id, list(outcome), since, limit, offset)))
        moment = datetime(2026, 12, 1, tzinfo=timezone.utc)
        run = Run(id="r1", job_id="a", reason="schedule", outcome="error", scheduled_at=moment,
                  started_at=moment, finished_at=moment, duration=0.5, error_type="ValueError",
                  error_message="bad", traceback="Traceback ...", result=None, host="fake-host",
                  pid=1)
        return RunPage([run], 7)

    def last_runs(self, job_ids: Collection[str]) -> dict[str, str]:
        return {}


def client() -> tuple[FakeScheduler, Client]:
    fake = FakeScheduler()
    scheduler: JobScheduler = fake  # the fake satisfies the protocol (checked by mypy too)
    return fake, Client(SchedulerAPI(scheduler))


def test_the_api_serves_the_scheduler_it_is_given() -> None:
    fake, api = client()
    info = api.get("/").get_json()
    assert info["current_host"] == "fake-host" and info["leader"]["pid"] == 1
    fake.jobs = {"a": {}, "b": {}}
    assert api.get("/jobs").get_json() == [{"id": "a"}, {"id": "b"}]
    assert api.delete("/jobs/a").status_code == 204 and list(fake.jobs) == ["b"]
    assert api.post("/pause").status_code == 204
    assert api.post("/shutdown", json={"wait": False}).status_code == 204
    assert fake.calls == [("pause", None), ("stop_all", False)]


def test_runs_are_read_through_the_scheduler() -> None:
    fake, api = client()
    page = api.get("/runs?outcome=error,lost&since=2026-11-30T00:00:00Z&limit=1").get_json()
    assert (page["total"], page["limit"], page["offset"]) == (7, 1, 0)
    assert page["runs"][0]["error"] == {"type": "ValueError", "message": "bad",
                                        "traceback": "Traceback ..."}
    assert page["runs"][0]["started_at"] == "2026-12-01T00:00:00+00:00"
    assert fake.calls == [("get_runs", (None, ["error", "lost"],
                                        datetime(2026, 11, 30, tzinfo=timezone.utc), 1, 0))]


def test_the_api_validates_before_it_asks_the_scheduler() -> None:
    fake, api = client()
    refused = api.post("/jobs", json={"id": "x", "func": "os:system"})
    assert refused.status_code == 403
    bad = api.post("/jobs", json={"id": "x", "func": "tests.tasks:record",
                                  "trigger": "interval", "seconds": 0.5})
    assert bad.status_code == 400 and "at least 1 s" in bad.get_json()["error_message"]
    assert fake.calls == []
    answer = api.post("/jobs", json={"id": "x", "func": "tests.tasks:record", "args": ["one"],
                                     "trigger": "interval", "seconds": 5})
    assert answer.status_code == 404  # what the fake's JobLookupError means to the API
    assert fake.calls == [("add_job", ("x", "tests.tasks:record", [
        "args", "executor", "jobstore", "name", "replace_existing", "trigger"]))]
