"""A stored job whose func's module is gone (a deploy renamed the task) breaks nothing.

It is listed (every page too) with the fields its stored state holds and an ``error``, can be
read and deleted, and refuses other changes with a 409; on a real SQLite file and on
PostgreSQL. Before, every listing and page was a 500 and the job could not be deleted through
the API's GET-then-DELETE workflow.
"""

from __future__ import annotations

import importlib
import logging

import pytest

from .api_helpers import running_api

GOOD = {"id": "good", "func": "tests.tasks:record", "trigger": "interval", "minutes": 5}



@pytest.fixture
def broken_api(tmp_path, store_config, vanishing_module):
    """A paused scheduler holding GOOD and 'broken', whose module has been removed."""
    with running_api(tmp_path / "jobs.sqlite", paused=True, **store_config) as (
            scheduler, client):
        assert client.post("/jobs", json=GOOD).status_code == 200
        scheduler.add_job("broken", f"{vanishing_module.__name__}:task", args=[1, "two"],
                          kwargs={"k": 3}, trigger="interval", hours=1, name="renamed later")
        vanishing_module.gone()
        yield scheduler, client, vanishing_module.__name__


def test_the_listing_shows_the_others_and_the_broken_job_with_its_error(broken_api, caplog):
    _, client, module = broken_api
    caplog.set_level(logging.WARNING, "scheduler_api")
    for _ in range(2):  # the second listing reuses the good job's cached JSON
        response = client.get("/jobs")
        assert response.status_code == 200, response.data
        jobs = {job["id"]: job for job in response.json}
        assert set(jobs) == {"good", "broken"}
        assert "error" not in jobs["good"]
    broken = jobs["broken"]
    assert broken["error"].startswith("cannot be restored: LookupError: ")
    assert f"ModuleNotFoundError: No module named '{module}'" in broken["error"]
    assert (broken["func"], broken["args"], broken["kwargs"], broken["name"]) == (
        f"{module}:task", [1, "two"], {"k": 3}, "renamed later")
    assert (broken["trigger"], broken["hours"]) == ("interval", 1)
    assert broken["next_run_time"] is not None
    # logged once, not on every listing
    assert sum("cannot be restored" in record.getMessage() for record in caplog.records) == 1


@pytest.mark.parametrize("query", ["limit=1&offset=0", "limit=1&offset=1", "limit=100"],
                         ids=["first-page", "second-page", "one-page"])
def test_every_page_is_served(broken_api, query):
    _, client, _ = broken_api
    response = client.get(f"/jobs?{query}")
    assert response.status_code == 200, response.data
    assert response.json["total"] == 2


def test_the_broken_job_can_be_read_and_deleted(broken_api):
    _, client, _ = broken_api
    listed = {job["id"]: job for job in client.get("/jobs").json}["broken"]
    response = client.get("/jobs/broken")
    assert response.status_code == 200, response.data
    assert response.json == listed
    assert client.delete("/jobs/broken").status_code == 204
    assert client.get("/jobs/broken").status_code == 404
    assert [job["id"] for job in client.get("/jobs").json] == ["good"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("PATCH", "/jobs/broken", {"name": "x"}), ("POST", "/jobs/broken/pause", None),
     ("POST", "/jobs/broken/resume", None), ("POST", "/jobs/broken/run", None)],
    ids=["patch", "pause", "resume", "run"],
)
def test_other_changes_of_the_broken_job_are_a_409(broken_api, method, path, body):
    _, client, module = broken_api
    before = client.get("/jobs/broken").json
    response = client.request(method, path, json=body)
    assert response.status_code == 409, response.data
    message = response.json["error_message"]
    assert message.startswith("Job broken cannot be restored: ")
    assert module in message and message.endswith("it can only be read and deleted")
    assert client.get("/jobs/broken").json == before


def test_a_state_that_cannot_even_be_unpickled_shows_the_id_and_the_error(
        tmp_path, store_config, vanishing_module):
    with running_api(tmp_path / "jobs.sqlite", paused=True, **store_config) as (
            scheduler, client):
        # args hold an instance of the module's class: unpickling the state itself fails
        scheduler.add_job("opaque", "tests.tasks:record", args=[vanishing_module.Thing()],
                          trigger="interval", hours=1)
        vanishing_module.gone()
        listed = client.get("/jobs")
        assert listed.status_code == 200, listed.data
        shown = client.get("/jobs/opaque").json
        assert listed.json == [shown]
        assert set(shown) == {"id", "error", "last_run"} and shown["last_run"] is None
        assert shown["error"].startswith("cannot be restored: ModuleNotFoundError: ")
        assert client.delete("/jobs/opaque").status_code == 204
        assert client.get("/jobs").json == []


def test_the_job_is_shown_normally_again_once_its_module_is_back(
        tmp_path, store_config, vanishing_module):
    with running_api(tmp_path / "jobs.sqlite", paused=True, **store_config) as (
            scheduler, client):
        scheduler.add_job("back", f"{vanishing_module.__name__}:task", trigger="interval",
                          hours=1)
        source = vanishing_module.__file__
        text = open(source).read()
        vanishing_module.gone()
        assert "error" in client.get("/jobs").json[0]
        with open(source, "w") as file:
            file.write(text)
        importlib.invalidate_caches()
        assert "error" not in client.get("/jobs").json[0]  # the error was never cached
        assert client.patch("/jobs/back", json={"name": "fine"}).status_code == 403
