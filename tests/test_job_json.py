"""Job JSON: Flask-APScheduler's field names, and what GET returns can be POSTed back."""

from __future__ import annotations

import pytest
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron.fields import BaseField

from .api_helpers import running_api


def comparable(value: object) -> object:
    """APScheduler's pickled state, with triggers and cron fields made comparable."""
    if isinstance(value, BaseTrigger):
        return (type(value).__name__, comparable(value.__getstate__()))
    if isinstance(value, BaseField):
        return (value.name, str(value), value.is_default)
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [comparable(item) for item in value]
    return value

TRIGGERS = {
    "date": {"trigger": "date", "run_date": "2031-05-06T07:08:09.123456+02:00"},
    "date-named-zone": {"trigger": "date", "run_date": "2031-05-06T07:08:09",
                        "timezone": "Europe/Berlin"},
    "interval": {"trigger": "interval", "weeks": 1, "days": 2, "hours": 3, "minutes": 4,
                 "seconds": 5},
    "interval-fraction-of-a-second": {"trigger": "interval", "seconds": 1.5},
    "interval-microseconds": {"trigger": "interval", "minutes": 1, "seconds": 2.000001},
    "interval-window-and-jitter": {"trigger": "interval", "hours": 1,
                                   "start_date": "2030-01-01T00:00:00+00:00",
                                   "end_date": "2031-01-01T00:00:00+00:00", "jitter": 30,
                                   "timezone": "America/New_York"},
    "cron": {"trigger": "cron", "day_of_week": "mon-fri", "hour": "9-17", "minute": "*/15"},
    "cron-integer-field": {"trigger": "cron", "hour": 3},
    "cron-window": {"trigger": "cron", "month": "1,7", "day": "last",
                    "start_date": "2030-01-01T00:00:00+00:00",
                    "end_date": "2035-01-01T00:00:00+00:00", "timezone": "Asia/Tokyo"},
    "cron-from-local-mean-time": {"trigger": "cron", "hour": "3",  # a +11:39:04 offset
                                  "start_date": "0002-01-01T00:00:00",
                                  "timezone": "Pacific/Auckland"},
    "calendarinterval": {"trigger": "calendarinterval", "months": 1, "hour": 4, "minute": 30,
                         "start_date": "2030-01-31"},
    "and": {"trigger": "and", "triggers": [
        {"trigger": "cron", "day_of_week": "sat,sun"},
        {"trigger": "interval", "hours": 3, "start_date": "2030-01-01T00:00:00+00:00"}]},
    "or-with-jitter": {"trigger": "or", "jitter": 5, "triggers": [
        {"trigger": "cron", "hour": "6"},
        {"trigger": "date", "run_date": "2032-01-01T00:00:00+00:00"}]},
    "nested-combination": {"trigger": "or", "triggers": [
        {"trigger": "and", "triggers": [{"trigger": "cron", "minute": "0"},
                                        {"trigger": "cron", "hour": "*/2"}]},
        {"trigger": "cron", "hour": "12", "minute": "30"}]},
}


@pytest.mark.parametrize("trigger", TRIGGERS.values(), ids=TRIGGERS.keys())
@pytest.mark.parametrize("paused", [False, True], ids=["scheduled", "paused"])
def test_what_get_returns_posts_back_to_an_identical_job(api, trigger, paused):
    scheduler, client = api
    body = {"id": "job", "func": "tests.tasks:record", "args": ["a", 1, {"k": [True, None]}],
            "kwargs": {}, "name": "A job", "misfire_grace_time": 30, "max_instances": 2,
            "coalesce": False, **trigger}
    created = client.post("/jobs", json=body)
    assert created.status_code == 200, created.json
    if paused:
        client.post("/jobs/job/pause")
    shown = client.get("/jobs/job").json
    original_state = comparable(scheduler.get_job("job").__getstate__())
    assert client.delete("/jobs/job").status_code == 204

    recreated = client.post("/jobs", json=shown)
    assert recreated.status_code == 200, recreated.json
    assert recreated.json == shown
    assert client.get("/jobs/job").json == shown
    assert comparable(scheduler.get_job("job").__getstate__()) == original_state


def test_job_fields_follow_flask_apscheduler(api):
    _, client = api
    job = client.post("/jobs", json={"id": "j", "func": "tests.tasks:record",
                                     "trigger": "interval", "seconds": 90}).json
    assert list(job) == ["id", "name", "func", "args", "kwargs", "trigger", "minutes",
                         "seconds", "start_date", "timezone", "jitter", "misfire_grace_time",
                         "max_instances", "coalesce", "next_run_time", "last_run"]
    assert (job["minutes"], job["seconds"]) == (1, 30)
    assert job["last_run"] is None, "a job just added has not run"
    assert job["name"] == "j"
    assert job["func"] == "tests.tasks:record"
    assert job["next_run_time"].endswith("+00:00")


def test_sub_second_intervals_are_kept(tmp_path):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_MIN_INTERVAL=0.1) as (_, client):
        job = client.post("/jobs", json={"id": "j", "func": "tests.tasks:record",
                                         "trigger": "interval", "seconds": 0.25}).json
    assert job["seconds"] == 0.25


def test_cron_shows_only_the_fields_given(api):
    _, client = api
    job = client.post("/jobs", json={"id": "j", "func": "tests.tasks:record",
                                     "trigger": "cron", "minute": "5", "hour": "*/2"}).json
    cron_fields = {"year", "month", "day", "week", "day_of_week", "hour", "minute", "second"}
    assert {field: job[field] for field in cron_fields & set(job)} == {"hour": "*/2",
                                                                       "minute": "5"}
    assert "start_date" not in job


def test_no_trigger_means_run_once_now(api):
    _, client = api
    job = client.post("/jobs", json={"id": "j", "func": "tests.tasks:slow", "args": [0],
                                     "next_run_time": None}).json
    assert job["trigger"] == "date"
    assert job["next_run_time"] is None


def test_an_interval_ending_before_its_first_fire_time_is_refused(api):
    _, client = api
    answer = client.post("/jobs", json={"id": "j", "func": "tests.tasks:record",
                                        "trigger": "interval", "hours": 1,
                                        "end_date": "2020-01-01T00:00:00+00:00"})
    assert answer.status_code == 400
    assert answer.json["error_message"].startswith("end_date: is before the first fire time")


# -- dates as ISO 8601 means them ----------------------------------------------------------

@pytest.mark.parametrize(("written", "shown"), [
    ("2031-01-01T00:00:00.5Z", "2031-01-01T00:00:00.500000+00:00"),
    ("2031-01-01T00:00:00.500+00:00", "2031-01-01T00:00:00.500000+00:00"),
    ("2031-01-01T00:00:00.123456789Z", "2031-01-01T00:00:00.123456+00:00"),
    ("2031-01-01 00:00:00.25", "2031-01-01T00:00:00.250000+00:00"),
], ids=["one fraction digit is tenths", "milliseconds as JavaScript writes them",
        "nanoseconds cut to microseconds", "naive, with a space"])
def test_a_fraction_of_a_second_is_read_as_a_fraction(tmp_path, written, shown):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_TIMEZONE="UTC",
                     SCHEDULER_JOBS=[{"id": "configured", "func": "tests.tasks:record",
                                      "trigger": "cron", "hour": "3", "start_date": written,
                                      "next_run_time": written}]) as (_, client):
        posted = client.post("/jobs", json={"id": "posted", "func": "tests.tasks:record",
                                            "trigger": "date", "run_date": written})
        assert posted.status_code == 200, posted.json
        assert posted.json["run_date"] == shown
        configured = client.get("/jobs/configured").json
        assert (configured["start_date"], configured["next_run_time"]) == (shown, shown)


@pytest.mark.parametrize("written", ["\uff12\uff10\uff13\uff11-\uff10\uff11-\uff10\uff11",
                                     "2031-01-01\n", "2031-01-01T00:00:00.",
                                     "2031-01-01T00:00:00.1234567890Z"],
                         ids=["fullwidth digits", "a trailing newline", "a dot and no digits",
                              "ten fraction digits"])
def test_a_date_not_in_iso_8601_as_written_is_a_400(tmp_path, written):
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        answer = client.post("/jobs", json={"id": "posted", "func": "tests.tasks:record",
                                            "trigger": "date", "run_date": written})
        assert answer.status_code == 400
        assert answer.json["error_message"].startswith("run_date")


# -- dates: an offset of up to +-23:59 takes the instant out of years 1..9999 ---------------
#
# read_iso_8601 (scheduler_api/jobs.py) returns an aware datetime, which convert_to_datetime
# passes through untouched; APScheduler's own reading localised the naive value and its
# normalize() (fromtimestamp) refused an instant before 0001-01-01 or after 9999-12-31 UTC:
# a 400 before. Now the job store's datetime_to_utc_timestamp overflows in add_job: a 500.

OUT_OF_RANGE_INSTANTS = {
    "date run_date 9999-12-31 at -23:59 (UTC: year 10000)":
        {"trigger": "date", "run_date": "9999-12-31T23:59:59-23:59"},
    "date run_date 0001-01-01 at +23:59 (UTC: year 0)":
        {"trigger": "date", "run_date": "0001-01-01T00:00:00+23:59"},
    "next_run_time 9999-12-31 at -23:59":
        {"trigger": "interval", "hours": 1, "next_run_time": "9999-12-31T23:59:59-23:59"},
}


@pytest.mark.parametrize("fields", OUT_OF_RANGE_INSTANTS.values(),
                         ids=OUT_OF_RANGE_INSTANTS.keys())
def test_a_date_whose_instant_is_outside_years_1_to_9999_is_a_400_not_a_500(tmp_path, fields):
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        answer = client.post("/jobs", json={"id": "j", "func": "tests.tasks:record", **fields})
        assert answer.status_code == 400, (answer.status_code, answer.json)


def test_an_end_date_accepted_at_minus_23_59_posts_back_from_what_get_shows(tmp_path):
    """POST takes end_date 9999-12-31T23:59:59-23:59 (a 400 before the change); GET shows it
    with "timezone": "UTC", and that body is refused (out of range in UTC): what GET returns
    no longer POSTs back. Either both are refused or both are taken."""
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        created = client.post("/jobs", json={
            "id": "j", "func": "tests.tasks:record", "trigger": "interval", "hours": 1,
            "end_date": "9999-12-31T23:59:59-23:59"})
        if created.status_code == 400:
            return  # refused outright: consistent
        shown = client.get("/jobs/j").json
        assert client.delete("/jobs/j").status_code == 204
        again = client.post("/jobs", json=shown)
        assert again.status_code == 200, again.json
        assert again.json == shown


# -- dates: SCHEDULER_JOBS' calendarinterval takes dates, not date-times ----------------------
#
# _checked_config_job (scheduler_api/scheduler.py:292) reads every start_date/end_date as a
# datetime (TRIGGER_DATES) whatever the trigger; CalendarIntervalTrigger's are dates
# (convert_to_date): its end_date check compares a datetime with a date (TypeError), and a
# start_date is kept as a datetime, shown as a date-time by GET.

def test_scheduler_jobs_calendarinterval_with_an_end_date_still_starts(tmp_path):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_JOBS=[{
            "id": "c", "func": "tests.tasks:record", "trigger": "calendarinterval",
            "days": 1, "start_date": "2030-01-31", "end_date": "2031-01-31"}]) as (_, client):
        shown = client.get("/jobs/c").json
        assert (shown["start_date"], shown["end_date"]) == ("2030-01-31", "2031-01-31")


def test_scheduler_jobs_calendarinterval_start_date_is_a_date_and_posts_back(tmp_path):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_JOBS=[{
            "id": "c", "func": "tests.tasks:record", "trigger": "calendarinterval",
            "days": 1, "start_date": "2030-01-31"}]) as (_, client):
        shown = client.get("/jobs/c").json
        assert shown["start_date"] == "2030-01-31"  # was '2030-01-31T00:00:00'
        assert client.delete("/jobs/c").status_code == 204
        again = client.post("/jobs", json=shown)
        assert again.status_code == 200, again.json
        assert again.json == shown
