"""Listings reuse the JSON of unchanged jobs: every change must still show at once."""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.jobstores.memory import MemoryJobStore

from .api_helpers import make_scheduler, running_api
from .conftest import POSTGRES_URL

STORES = ["sqlite", "memory", "memory-subclass", "postgres"]


class CustomMemoryJobStore(MemoryJobStore):
    """A store built on the memory store: listed through its public methods only."""


@pytest.fixture(params=STORES)
def client(request, tmp_path):
    config: dict = {}
    if request.param == "memory":
        config = {"SCHEDULER_JOBSTORES": {"default": MemoryJobStore()}}
    elif request.param == "memory-subclass":
        config = {"SCHEDULER_JOBSTORES": {"default": CustomMemoryJobStore()}}
    elif request.param == "postgres":
        if not POSTGRES_URL:
            pytest.skip("set SCHEDULER_TEST_POSTGRES_URL to list from PostgreSQL too")
        config = {"SCHEDULER_JOBSTORE_URL": POSTGRES_URL,
                  "SCHEDULER_JOBSTORE_TABLE": request.getfixturevalue("postgres_table")}
    with running_api(tmp_path / "jobs.sqlite", **config) as (scheduler, client):
        yield scheduler, client


def listed(client, job_id: str) -> dict:
    return next(job for job in client.get("/jobs").json if job["id"] == job_id)


def test_every_change_shows_in_the_next_listing(client):
    scheduler, client = client
    client.post("/jobs", json={"id": "a", "func": "tests.tasks:record", "trigger": "interval",
                               "hours": 1})
    client.post("/jobs", json={"id": "b", "func": "tests.tasks:record", "trigger": "cron",
                               "hour": "4"})
    assert listed(client, "a")["hours"] == 1
    client.patch("/jobs/a", json={"hours": 2})
    assert listed(client, "a")["hours"] == 2
    client.patch("/jobs/a", json={"args": [1]})
    assert listed(client, "a")["args"] == [1]
    client.patch("/jobs/a", json={"args": [True]})  # equal to [1] in Python, not in JSON
    assert listed(client, "a")["args"] == [True]
    client.post("/jobs/a/pause")
    assert listed(client, "a")["next_run_time"] is None
    client.post("/jobs/a/resume")
    assert listed(client, "a")["next_run_time"] is not None
    scheduler.modify_job("b", name="renamed in Python")
    assert listed(client, "b")["name"] == "renamed in Python"
    client.delete("/jobs/a")
    assert [job["id"] for job in client.get("/jobs").json] == ["b"]


def test_pages_follow_the_listing_order(client):
    _, client = client
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    for index, days in enumerate([5, 3, 4, 1, 2]):  # (not hours of a day: their order
        # depends on the hour the test runs at)
        client.post("/jobs", json={"id": f"job-{index}", "func": "tests.tasks:record",
                                   "trigger": "date",
                                   "run_date": (today + timedelta(days=days)).isoformat()})
    client.post("/jobs/job-1/pause")
    everything = client.get("/jobs").json
    assert [job["id"] for job in everything] == ["job-3", "job-4", "job-2", "job-0", "job-1"]
    pages = [client.get(f"/jobs?limit=2&offset={offset}").json for offset in (0, 2, 4)]
    assert [job for page in pages for job in page["jobs"]] == everything
    assert {page["total"] for page in pages} == {5}
    assert client.get("/jobs?offset=10").json == {"jobs": [], "total": 5, "limit": 100,
                                                  "offset": 10}


def searched(scheduler, query: str, limit: int | None = None, offset: int = 0):
    body, total = scheduler.listing.page(limit, offset, query)
    return [job["id"] for job in json.loads(body)], total


def test_a_search_finds_ids_and_names_in_listing_order_and_sees_a_rename(client):
    scheduler, client = client
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    for job_id, name, days in (("a", "Nightly report", 5), ("b", "backup", 3),
                               ("nightly-c", "copy", 4), ("d", "other", 1)):
        client.post("/jobs", json={"id": job_id, "name": name, "func": "tests.tasks:record",
                                   "trigger": "date",
                                   "run_date": (today + timedelta(days=days)).isoformat()})
    assert searched(scheduler, "NIGHTLY") == (["nightly-c", "a"], 2)  # case folded
    assert searched(scheduler, "nightly", limit=1, offset=1) == (["a"], 2)
    assert searched(scheduler, "archive") == ([], 0)
    scheduler.modify_job("b", name="nightly backup")  # a new state: its name read again
    assert searched(scheduler, "nightly") == (["b", "nightly-c", "a"], 3)
    client.post("/jobs/b/pause")  # paused jobs last, as listed
    assert searched(scheduler, "nightly") == (["nightly-c", "a", "b"], 3)


def test_a_stopped_schedulers_pending_jobs_are_searched_too(tmp_path):
    scheduler, _ = make_scheduler(tmp_path / "jobs.sqlite")
    for job_id, name in (("a", "Nightly report"), ("b", "backup")):
        scheduler.add_job(job_id, "tests.tasks:record", name=name, trigger="interval", hours=1)
    assert searched(scheduler, "report") == (["a"], 1)


def test_a_page_and_its_total_agree_while_jobs_are_added(client):
    """The counts and the rows of a page are read in one snapshot: a job added between them
    made the total differ from the page, or moved the boundary between scheduled and paused
    jobs (a job listed twice, or left out)."""
    scheduler, api = client
    stop = threading.Event()

    def add() -> None:
        for n in itertools.count():
            if stop.is_set() or n >= 400:
                return
            scheduler.add_job(f"job{n:03}", "tests.tasks:record", trigger="cron", hour="3",
                              **({"next_run_time": None} if n % 2 else {}))

    adder = threading.Thread(target=add)
    adder.start()
    disagreeing = []
    try:
        deadline = time.monotonic() + 3
        while adder.is_alive() and time.monotonic() < deadline:
            page = api.get("/jobs", query_string={"limit": 1000}).json
            ids = [job["id"] for job in page["jobs"]]
            if page["total"] != len(ids) or len(set(ids)) != len(ids):
                disagreeing.append((page["total"], len(ids), len(set(ids))))
    finally:
        stop.set()
        adder.join()
    assert disagreeing == []
