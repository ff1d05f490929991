"""No input makes one scheduling step, or one request, do unbounded work.

Hostile bodies (a next run time in the year 1, a microsecond interval, crons that never fire,
wide and deep 'and'/'or' trees) are refused fast, without the scheduler's lock; a store that
already holds a job far behind is caught up with in bounded steps.
"""

from __future__ import annotations

import datetime
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from scheduler_api import engine
from scheduler_api.jobs import MAX_TRIGGER_LEAVES

from . import tasks
from .api_helpers import make_scheduler, running_api

UTC = datetime.timezone.utc
NEVER = {"trigger": "cron", "week": "1", "month": "6"}  # week 1 is never in June
JOB = {"id": "evil", "func": "tests.tasks:record"}


def nested_or(levels: int, width: int) -> dict[str, Any]:
    if not levels:
        return NEVER
    return {"trigger": "or", "triggers": [nested_or(levels - 1, width)] * width}


HOSTILE_POSTS = {
    "next-run-time-in-the-year-1": (
        {"trigger": "interval", "seconds": 1, "next_run_time": "0001-01-01T00:00:00Z"},
        "next_run_time"),
    "next-run-time-two-days-ago": (
        {"trigger": "interval", "hours": 1, "next_run_time": "1970-01-01T00:00:00Z"},
        "next_run_time"),
    "interval-of-a-microsecond": ({"trigger": "interval", "seconds": 0.000001}, "interval"),
    "interval-of-a-microsecond-inside-an-or": (
        {"trigger": "or", "triggers": [{"trigger": "cron", "hour": "3"},
                                       {"trigger": "interval", "seconds": 0.000001}]},
        "interval"),
    "cron-that-never-fires": (NEVER, "cron"),
    "or-of-8-crons-that-never-fire": ({"trigger": "or", "triggers": [NEVER] * 8}, "cron"),
    "and-with-a-cron-that-never-fires": (
        {"trigger": "and", "triggers": [NEVER, {"trigger": "interval", "hours": 1}]}, "cron"),
    "or-with-one-cron-that-never-fires": (
        {"trigger": "or", "triggers": [{"trigger": "cron", "hour": "3"}, NEVER]}, "cron"),
    "three-levels-of-16": (nested_or(3, 16), "triggers"),
    "two-levels-of-6-is-36-leaves": (nested_or(2, 6), "triggers"),
    "and-that-never-agrees": (
        {"trigger": "and", "triggers": [{"trigger": "cron", "minute": "0"},
                                        {"trigger": "cron", "minute": "30"}]}, "triggers"),
}


@pytest.mark.parametrize(("body", "field"), HOSTILE_POSTS.values(), ids=HOSTILE_POSTS.keys())
def test_a_hostile_post_is_refused_within_a_second(api, body, field):
    _, client = api
    started = time.monotonic()
    response = client.post("/jobs", json={**JOB, **body})
    elapsed = time.monotonic() - started
    assert response.status_code == 400, response.json
    assert response.json["error_message"].startswith(f"{field}: ")
    assert elapsed < 2  # before: 3.5 s for one such cron, 30 s for 8, hours for 16^3
    assert client.get("/jobs").json == []


@pytest.mark.parametrize(
    ("cron", "message"),
    [(NEVER, "cron: cron[month='6', week='1']: one fire time takes more than 0.05 s to "
             "compute"),
     ({"trigger": "cron", "year": "2500"}, "cron: cron[year='2500'] does not fire within "
                                           "400 years")],
    ids=["steps-day-by-day", "jumps-by-years"],
)
def test_the_message_names_the_cron_that_never_fires(api, cron, message):
    _, client = api
    assert client.post("/jobs", json={**JOB, **cron}).json["error_message"] == message


HOSTILE_PATCHES = {
    "next-run-time-1970-on-an-every-second-cron": (
        {"trigger": "cron", "second": "*"}, {"next_run_time": "1970-01-01T00:00:00Z"},
        "next_run_time"),
    "interval-merged-down-to-a-microsecond": (
        {"trigger": "interval", "hours": 1}, {"hours": 0, "seconds": 0.000001}, "interval"),
    "trigger-replaced-by-a-cron-that-never-fires": (
        {"trigger": "interval", "hours": 1}, NEVER, "cron"),
    "cron-fields-merged-into-one-that-never-fires": (
        {"trigger": "cron", "month": "6"}, {"week": "1"}, "cron"),
}


@pytest.mark.parametrize(("job", "patch", "field"), HOSTILE_PATCHES.values(),
                         ids=HOSTILE_PATCHES.keys())
def test_a_hostile_patch_is_refused_and_changes_nothing(api, job, patch, field):
    scheduler, client = api
    scheduler.pause()  # the every-second job would otherwise move on while we look
    before = client.post("/jobs", json={**JOB, **job}).json
    started = time.monotonic()
    response = client.patch("/jobs/evil", json=patch)
    assert time.monotonic() - started < 2
    assert response.status_code == 400, response.json
    assert response.json["error_message"].startswith(f"{field}: ")
    assert client.get("/jobs/evil").json == before


def test_a_refused_trigger_never_waits_for_the_schedulers_lock(api):
    scheduler, client = api
    lock = scheduler.scheduler._jobstores_lock
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:  # as a scheduling step that takes long would
        with lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        held.wait(5)
        bodies = [nested_or(1, 8), nested_or(3, 16), NEVER,
                  {"trigger": "interval", "seconds": 0.000001}]
        for body in bodies:
            assert client.post("/jobs", json={**JOB, **body}).status_code == 400
    finally:
        release.set()
        holder.join()


def test_the_work_budget_covers_the_whole_trigger(api, monkeypatch):
    _, client = api
    monkeypatch.setattr(engine, "VALIDATION_SECONDS", 0.0)
    response = client.post("/jobs", json={**JOB, "trigger": "or", "triggers": [
        {"trigger": "cron", "hour": "3"}, {"trigger": "interval", "hours": 1}]})
    assert response.status_code == 400
    assert response.json["error_message"].startswith("or: its fire times take more than 0 s")


def test_a_trigger_within_the_bounds_is_accepted(api):
    _, client = api
    crons = [{"trigger": "cron", "month": str(month), "day": "last"}
             for month in range(1, 13)] * 2
    intervals = [{"trigger": "interval", "seconds": 1}] * 8
    body = {"trigger": "or", "triggers": [
        {"trigger": "or", "triggers": intervals + crons[:8]},
        {"trigger": "or", "triggers": [*crons[8:22], {"trigger": "and", "triggers": [
            {"trigger": "cron", "minute": "0"}, {"trigger": "cron", "hour": "*/2"}]}]}]}
    assert len(intervals) + 22 + 2 == MAX_TRIGGER_LEAVES
    response = client.post("/jobs", json={**JOB, **body})
    assert response.status_code == 200, response.json
    rare = {"trigger": "cron", "month": "2", "day": "29", "day_of_week": "mon"}  # ~every 28 y
    assert client.post("/jobs", json={**JOB, "id": "rare", **rare}).status_code == 200


# -- the minimum interval --------------------------------------------------------------------

def test_the_minimum_interval_is_one_second_by_default(api):
    _, client = api
    response = client.post("/jobs", json={**JOB, "trigger": "interval", "seconds": 0.5})
    assert response.status_code == 400
    assert response.json == {"error_message": "interval: must be at least 1 s "
                                              "(SCHEDULER_MIN_INTERVAL), not 0.5 s"}
    assert client.post("/jobs", json={**JOB, "trigger": "interval", "seconds": 1}
                       ).status_code == 200


@pytest.mark.parametrize(("min_interval", "seconds", "status"),
                         [(0.1, 0.25, 200), (0.1, 0.05, 400), (60, 30, 400), (60, 60, 200),
                          (0, 0.000001, 200)],
                         ids=["lowered-accepts", "lowered-still-bounds", "raised-refuses",
                              "raised-accepts", "zero-turns-it-off"])
def test_the_minimum_interval_is_configurable(tmp_path, min_interval, seconds, status):
    with running_api(tmp_path / "jobs.sqlite", paused=True,
                     SCHEDULER_MIN_INTERVAL=min_interval) as (_, client):
        inside_an_or = {"trigger": "or", "triggers": [
            {"trigger": "cron", "hour": "3"}, {"trigger": "interval", "seconds": seconds}]}
        assert client.post("/jobs", json={**JOB, **inside_an_or}).status_code == status


@pytest.mark.parametrize("value", [-1, "1", True, float("nan")],
                         ids=["negative", "string", "boolean", "nan"])
def test_a_bad_minimum_interval_setting_is_refused(tmp_path, value):
    with pytest.raises(ValueError, match="SCHEDULER_MIN_INTERVAL"):
        make_scheduler(tmp_path / "jobs.sqlite", SCHEDULER_MIN_INTERVAL=value)


@pytest.mark.parametrize(("job", "problem"), [
    ({"trigger": "interval", "seconds": 0.000001}, "interval: must be at least 1 s"),
    (NEVER, "cron: cron[month='6', week='1']: one fire time takes more than 0.05 s"),
    ({"trigger": "interval", "seconds": 1,
      "next_run_time": datetime.datetime(1, 1, 1, tzinfo=UTC)}, "next_run_time: "),
], ids=["interval-of-a-microsecond", "cron-that-never-fires", "next-run-time-in-the-year-1"])
def test_config_jobs_are_held_to_the_same_bounds(tmp_path, job, problem):
    with pytest.raises(ValueError, match=r"SCHEDULER_JOBS: job 'evil': ") as raised:
        make_scheduler(tmp_path / "jobs.sqlite", SCHEDULER_JOBS=[{**JOB, **job}])
    assert problem in str(raised.value)


# -- a store written earlier -----------------------------------------------------------------

YEAR_1 = datetime.datetime(1, 1, 1, tzinfo=UTC)
STORED = {
    "interval-of-a-second-due-in-the-year-1": (IntervalTrigger(seconds=1, timezone=UTC), YEAR_1),
    "interval-of-a-microsecond-due-in-1970": (
        IntervalTrigger(seconds=0.000001, timezone=UTC),
        datetime.datetime(1970, 1, 1, tzinfo=UTC)),
    "every-second-cron-due-in-1970": (
        CronTrigger(second="*", timezone=UTC), datetime.datetime(1970, 1, 1, tzinfo=UTC)),
    "daily-calendarinterval-from-the-year-1": (
        CalendarIntervalTrigger(days=1, start_date=datetime.date(1, 1, 1), timezone=UTC),
        datetime.datetime(1, 1, 1, tzinfo=UTC)),
}


def write_directly(store: Path, trigger: Any, next_run_time: datetime.datetime) -> None:
    """Write a job into a SQLite store with APScheduler alone, bypassing every check (and
    without a scheduler that would process it)."""
    owner = BackgroundScheduler(timezone=UTC)
    jobstore = SQLAlchemyJobStore(url=f"sqlite:///{store}")
    jobstore.start(owner, "default")
    try:
        jobstore.add_job(Job(owner, id="behind", func=tasks.record, args=["behind"], kwargs={},
                             trigger=trigger, executor="default", name="behind",
                             misfire_grace_time=1, coalesce=True, max_instances=1,
                             next_run_time=next_run_time))
    finally:
        jobstore.shutdown()


@pytest.mark.parametrize(("trigger", "next_run_time"), STORED.values(), ids=STORED.keys())
def test_a_stored_job_far_behind_is_caught_up_in_bounded_steps(tmp_path, trigger,
                                                                next_run_time):
    store = tmp_path / "jobs.sqlite"
    write_directly(store, trigger, next_run_time)
    started = datetime.datetime.now(UTC)
    with running_api(store) as (_, client):
        deadline = time.monotonic() + 10
        while True:
            info = client.get()
            assert info.status_code == 200  # the API keeps answering all along
            shown = client.get("/jobs/behind").json["next_run_time"]
            if datetime.datetime.fromisoformat(shown) >= started - datetime.timedelta(days=2):
                break
            assert time.monotonic() < deadline, f"still due at {shown}"
            time.sleep(0.05)
        started_get = time.monotonic()
        assert client.get("/jobs").status_code == 200
        assert time.monotonic() - started_get < 1


def test_a_memory_store_is_caught_up_too():
    scheduler = BackgroundScheduler(timezone=UTC, jobstores={"default": MemoryJobStore()})
    engine.bound_catch_up(scheduler)
    engine.bound_catch_up(scheduler)  # idempotent
    tasks.ran.clear()
    scheduler.start()
    try:
        scheduler.add_job(tasks.record, IntervalTrigger(seconds=1, timezone=UTC), id="behind",
                          args=["memory"], next_run_time=YEAR_1, misfire_grace_time=5)
        assert tasks.ran.wait(5)  # a run within the grace window is kept
        job = scheduler.get_job("behind")
        assert job.next_run_time > datetime.datetime.now(UTC) - datetime.timedelta(seconds=5)
    finally:
        scheduler.shutdown(wait=False)


def test_a_stored_date_job_far_behind_is_left_to_apscheduler():
    scheduler = BackgroundScheduler(timezone=UTC)
    job = scheduler.add_job(tasks.record, "date", run_date=YEAR_1, id="once")
    job._modify(next_run_time=YEAR_1)
    assert engine._catch_up(job, datetime.datetime.now(UTC)) == "due"  # one run time only


CALENDARS = {
    "days": {"days": 3},
    "weeks-and-days": {"weeks": 1, "days": 2},
    "months-from-the-31st": {"months": 1},
    "years-from-a-29th-of-february": {"years": 1},
    "months-and-days": {"months": 1, "days": 1},
}


@pytest.mark.parametrize("units", CALENDARS.values(), ids=CALENDARS.keys())
def test_a_calendarinterval_jumps_to_the_fire_time_stepping_would_reach(units):
    start = (datetime.date(2000, 2, 29) if "years" in units else datetime.date(2000, 1, 31))
    trigger = CalendarIntervalTrigger(**units, hour=4, start_date=start, timezone=UTC)
    moment = datetime.datetime(2026, 5, 17, 12, tzinfo=UTC)
    stepped = trigger.get_next_fire_time(None, moment)
    while stepped < moment:
        stepped = trigger.get_next_fire_time(stepped, moment)
    assert engine.first_fire_time_from(trigger, moment) == stepped


# From the attack on the bounds: a cron accepted because its first two fire times are cheap
# searched until 9999 for its third (30 s a time, under the scheduler's lock).
def years_where_december_1_is_no_tuesday(count: int) -> str:
    ranges, start = [], None
    for year in range(2027, 10000):
        skip = datetime.date(year, 12, 1).weekday() == 1
        if not skip and start is None:
            start = year
        elif skip and start is not None:
            ranges.append(f"{start}-{year - 1}")
            start = None
        if len(ranges) == count:
            break
    return ",".join(ranges)


SLOW_CRON = {"trigger": "cron", "month": "12", "day": "1", "day_of_week": "tue", "hour": "3",
             "timezone": "UTC"}


def test_a_cron_field_with_too_many_expressions_is_refused_at_once(api):
    _, client = api
    started = time.monotonic()
    answer = client.post("/jobs", json={**JOB, **SLOW_CRON,
                                     "year": "2026," + years_where_december_1_is_no_tuesday(
                                         1000)})
    assert answer.status_code == 400
    assert answer.json["error_message"].startswith("year: at most 64 comma-separated")
    assert time.monotonic() - started < 1


def test_an_accepted_cron_never_searches_past_400_years_in_the_scheduler():
    year = "2026," + years_where_december_1_is_no_tuesday(63)
    trigger = CronTrigger(year=year, month="12", day="1", day_of_week="tue", hour=3,
                          timezone=UTC)
    engine.bound_trigger(trigger)  # what the scheduler does with every due job
    started = time.thread_time()
    assert trigger.get_next_fire_time(None, datetime.datetime(2027, 1, 1, tzinfo=UTC)) is None
    assert time.thread_time() - started < 1


def test_resuming_a_job_with_no_fire_time_left_keeps_it_paused(api):
    _, client = api
    now = datetime.datetime.now(UTC)
    end = now + datetime.timedelta(seconds=1.5)
    # Added paused: paused after the POST, it ran (and was removed) when the POST took 1 s.
    assert client.post("/jobs", json={
        **JOB, "trigger": "interval", "hours": 1, "next_run_time": None,
        "start_date": (now + datetime.timedelta(seconds=1)).isoformat(),
        "end_date": end.isoformat()}).status_code == 200
    assert client.post("/jobs/evil/pause").status_code == 200
    time.sleep(max(0.0, (end - datetime.datetime.now(UTC)).total_seconds()) + 0.5)
    refused = client.post("/jobs/evil/resume")
    assert refused.status_code == 409
    assert "no fire time left" in refused.json["error_message"]
    assert client.get("/jobs/evil").json["next_run_time"] is None  # still there, still paused


def test_resuming_computes_the_next_fire_time_within_the_budget(api, monkeypatch):
    _, client = api
    assert client.post("/jobs", json={**JOB, "trigger": "cron", "hour": "3"}).status_code == 200
    assert client.post("/jobs/evil/pause").status_code == 200
    monkeypatch.setattr(engine, "VALIDATION_SECONDS", 0.0)
    refused = client.post("/jobs/evil/resume")
    assert refused.status_code == 400 and "budget" in refused.json["error_message"]
    monkeypatch.undo()
    resumed = client.post("/jobs/evil/resume")
    assert resumed.status_code == 200 and resumed.json["next_run_time"] is not None


def test_a_stored_and_that_never_fires_does_not_stop_the_scheduler(tmp_path):
    store = tmp_path / "jobs.sqlite"
    never = AndTrigger([CronTrigger(minute=0), CronTrigger(minute=30)])  # plain APScheduler's
    write_directly(store, never, datetime.datetime.now(UTC) - datetime.timedelta(seconds=1))
    tasks.ran.clear()
    with running_api(store) as (_, client):
        run_date = (datetime.datetime.now(UTC) + datetime.timedelta(seconds=1)).isoformat()
        assert client.post("/jobs", json={"id": "marker", "func": "tests.tasks:record",
                                          "args": ["marker"], "trigger": "date",
                                          "run_date": run_date}).status_code == 200
        assert tasks.ran.wait(10), "the scheduler stopped running jobs"
        assert client.get().json["running"] is True
        assert client.get("/jobs/behind").status_code == 404  # no fire time: APScheduler ends it


HEAVY_WEEK = {"trigger": "cron", "week": ",".join(["1"] * 64), "month": "2-11"}


@pytest.mark.parametrize(
    "trigger",
    [HEAVY_WEEK,
     {"trigger": "or", "triggers": [
         {"trigger": "cron", "second": "*"},
         {**HEAVY_WEEK, "end_date": (datetime.datetime.now(UTC)
                                     + datetime.timedelta(days=12 * 365)).isoformat()}]}],
    ids=["one-search-steps-through-400-years", "cheap-leaf-beside-a-costly-one-ending-later"],
)
def test_a_cron_whose_one_search_costs_too_much_is_refused_at_once(api, trigger):
    _, client = api
    started = time.thread_time()
    answer = client.post("/jobs", json={**JOB, **trigger})
    assert answer.status_code == 400
    assert "one fire time takes more than 0.05 s to compute" in answer.json["error_message"]
    assert time.thread_time() - started < 1  # 5.4 s of CPU (and 0.12-0.25 s a fire) before


def test_in_the_scheduler_a_search_past_its_cpu_time_ends_the_job(caplog):
    from scheduler_api.jobs import BoundedCronTrigger

    trigger = BoundedCronTrigger(week="1", month="2-11", timezone=UTC)
    now = datetime.datetime(2026, 12, 1, tzinfo=UTC)
    with caplog.at_level("WARNING", logger="scheduler_api"):
        started = time.thread_time()
        assert trigger.get_next_fire_time(None, now) is None
        assert time.thread_time() - started < 0.5
    assert "takes more than 0.05 s of CPU to find" in caplog.text
    hourly = BoundedCronTrigger(minute="0", timezone=UTC)
    assert hourly.get_next_fire_time(None, now) == now  # ordinary crons are untouched


def test_an_and_whose_triggers_stop_agreeing_ends_at_once_in_the_scheduler():
    """After fire 2 the two sides disagree (2029-01-04 against 2028-02-04); APScheduler asks
    each from the same previous fire time, so every step found the same times: 43 s of CPU
    for fire 3 with eight costly leaves beside them."""
    midnight = {"hour": 0, "minute": 0, "second": 0, "timezone": UTC}
    costly = [CronTrigger(week="1", month="2-12", year="2026-2029", **midnight)
              for _ in range(8)]
    trigger = AndTrigger([
        CronTrigger(month=1, day=4, **midnight),
        OrTrigger([CronTrigger(month=1, day=4, year="2027,2028", **midnight),
                   CronTrigger(month=2, day=4, year="2028-9999", **midnight), *costly])])
    engine.bound_trigger(trigger)  # as the scheduler makes every due job's trigger
    now = datetime.datetime(2026, 12, 1, tzinfo=UTC)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first)
    assert (first.year, second.year) == (2027, 2028)
    started = time.thread_time()
    assert trigger.get_next_fire_time(second, second) is None
    assert time.thread_time() - started < 1
