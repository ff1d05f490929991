"""Inputs that were a 500 are 4xx JSON errors, on SQLite and on PostgreSQL.

The tables hold what was found (by the issue's reports and by the property below); the
property draws trigger types, IANA zones, offsets and dates near ``datetime.min`` and
``datetime.max`` and posts and patches them: whatever it draws, the answer is never a 5xx
and always a JSON object, and a refused change leaves the job as it was.
"""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from scheduler_api.codec import MAX_DEPTH

from .api_helpers import AUTH, running_api
from .conftest import call

FUNC = "tests.tasks:record"
JOB = {"id": "job", "func": FUNC, "trigger": "interval", "hours": 1}



@pytest.fixture
def store_api(tmp_path, store_config):
    with running_api(tmp_path / "jobs.sqlite", **store_config) as (scheduler, client):
        yield scheduler, client


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def assert_client_error(response, field: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert 400 <= response.status_code < 500, (response.status_code, response.data)
    assert response.mimetype == "application/json"
    message = response.json["error_message"]
    if field is not None:
        assert message.startswith(field), message


# -- POST and PATCH bodies -------------------------------------------------------------------

BODIES = [
    ("offset-of-24-hours", {"trigger": "interval", "seconds": 5, "timezone": "+24:00"},
     "timezone"),
    ("offset-of-99-hours", {"trigger": "cron", "hour": 1, "timezone": "-99:00"}, "timezone"),
    ("offset-minutes-past-59", {"trigger": "date", "timezone": "+01:60"}, "timezone"),
    ("start-in-year-10000-at-kiritimati",
     {"trigger": "interval", "seconds": 5, "timezone": "Pacific/Kiritimati",
      "start_date": "9999-12-31T23:00:00+00:00"}, "start_date"),
    ("end-in-year-0-at-niue",
     {"trigger": "cron", "hour": 1, "timezone": "Pacific/Niue",
      "end_date": "0001-01-01T00:00:00+00:00"}, "end_date"),
    ("run-date-in-year-10000",
     {"trigger": "date", "timezone": "Asia/Tokyo", "run_date": "9999-12-31T23:00:00Z"},
     "run_date"),
    ("cron-starting-at-the-last-second",
     {"trigger": "cron", "hour": 1, "start_date": "9999-12-31T23:59:59Z"}, "cron"),
    ("cron-starting-at-the-last-second-no-fields",
     {"trigger": "cron", "start_date": "9999-12-31T23:59:59Z"}, "cron"),
    ("args-500-deep", {"args": [nested(500)]}, "the body is too deep"),
    ("kwargs-past-the-depth-limit", {"kwargs": {"a": nested(MAX_DEPTH)}},
     "the body is too deep"),
]


@pytest.mark.parametrize(("change", "field"), [(change, field) for _, change, field in BODIES],
                         ids=[name for name, _, _ in BODIES])
def test_post_is_a_400_naming_the_field(store_api, change, field):
    _, client = store_api
    response = client.post("/jobs", json={"id": "job", "func": FUNC, **change})
    assert_client_error(response, field)
    assert client.get("/jobs").json == []


@pytest.mark.parametrize(("change", "field"), [(change, field) for _, change, field in BODIES],
                         ids=[name for name, _, _ in BODIES])
def test_patch_is_a_400_naming_the_field_and_changes_nothing(store_api, change, field):
    _, client = store_api
    before = client.post("/jobs", json=JOB).json
    response = client.patch("/jobs/job", json=change)
    assert_client_error(response, field)
    assert client.get("/jobs/job").json == before


def test_args_as_deep_as_allowed_are_kept(store_api):
    _, client = store_api
    args = [nested(MAX_DEPTH - 2)]  # the body {"args": [...]} is MAX_DEPTH deep
    response = client.post("/jobs", json={**JOB, "args": args})
    assert response.status_code == 200, response.json
    assert client.get("/jobs/job").json["args"] == args


# -- headers, framing and paths --------------------------------------------------------------

@pytest.mark.parametrize(
    "origin", ["http://[", "http://[::1", "http://]", "http://a:b:c", "http://[zz]"],
    ids=["open-bracket", "unclosed-ipv6", "close-bracket", "two-ports", "bad-ipv6"],
)
def test_an_origin_that_is_not_a_url_is_a_403(store_api, origin):
    _, client = store_api
    response = client.post("/jobs", json=JOB, headers={"Origin": origin})
    assert response.status_code == 403, response.data
    assert client.get("/jobs").json == []


class FailingInput:
    """A wsgi.input whose read raises what a server raises for a malformed chunked body."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self, size: int = -1) -> bytes:
        raise self.error


def chunk_errors() -> list[Exception]:
    errors: list[Exception] = [OSError("Invalid chunk header")]  # werkzeug's own server
    try:
        from gunicorn.http.errors import InvalidChunkSize
    except ImportError:  # pragma: no cover - gunicorn is a test dependency
        return errors
    return [*errors, InvalidChunkSize(b"zz")]


@pytest.mark.parametrize("error", chunk_errors(), ids=["werkzeug-server", "gunicorn"])
@pytest.mark.parametrize("path", ["/scheduler/jobs", "/scheduler/shutdown"],
                         ids=["post-job", "action"])
def test_a_chunked_body_the_server_cannot_read_is_a_400(store_api, error, path):
    scheduler, client = store_api
    answer = call(client.client.application, path, "POST", AUTH["Authorization"],
                  CONTENT_TYPE="application/json", CONTENT_LENGTH="",
                  HTTP_TRANSFER_ENCODING="chunked",
                  **{"wsgi.input": FailingInput(error), "wsgi.input_terminated": True})
    assert answer.status == 400
    assert json.loads(answer.body)["error_message"].startswith("the body could not be read")
    assert scheduler.running


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE", "POST"],
                         ids=["get", "patch", "delete", "run"])
@pytest.mark.parametrize("job_id", ["a%00b", "%00", "job%00"], ids=["inside", "alone", "after"])
def test_a_job_id_with_a_nul_is_not_found_on_every_store(store_api, method, job_id):
    _, client = store_api
    client.post("/jobs", json=JOB)
    path = f"/jobs/{job_id}" + ("/run" if method == "POST" else "")
    response = client.request(method, path, json={"name": "x"} if method == "PATCH" else None)
    assert response.status_code == 404, response.data
    assert response.json["error_message"].startswith("Job ")
    assert client.get("/jobs/job").json["name"] == "job"


# -- the property ----------------------------------------------------------------------------

#: (examples, marks): the normal run and the slow one, as in tests/test_properties.py.
EXAMPLE_COUNTS = [
    pytest.param(60, id="60"),
    pytest.param(3000, id="3000", marks=pytest.mark.slow),
]

ZONES = sorted(zoneinfo.available_timezones())
OFFSETS = st.builds(lambda sign, hours, minutes: f"{sign}{hours:02d}:{minutes:02d}",
                    st.sampled_from("+-"), st.integers(0, 99), st.integers(0, 99))
TIMEZONES = st.one_of(st.sampled_from(ZONES), OFFSETS, st.just("UTC"), st.none())
EDGES = [datetime.min, datetime.max, datetime(1970, 1, 1), datetime(2038, 1, 19, 3, 14, 8)]
NAIVE = st.one_of(
    st.sampled_from(EDGES).flatmap(lambda edge: st.integers(-3 * 86400, 3 * 86400).map(
        lambda seconds: _shift(edge, seconds))),
    st.datetimes(),
)
DATE_OFFSETS = st.one_of(st.none(), st.just("Z"), OFFSETS)


def _shift(moment: datetime, seconds: int) -> datetime:
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return moment


DATES = st.one_of(
    st.none(),
    st.builds(lambda moment, offset: moment.isoformat() + (offset or ""), NAIVE, DATE_OFFSETS),
    st.builds(lambda moment: moment.date().isoformat(), NAIVE),
)
CRON_VALUES = st.one_of(st.sampled_from(["*", "*/5", "1", "0-3", "last", "mon-fri", "9999"]),
                        st.integers(0, 10000))
AMOUNTS = st.one_of(st.integers(0, 10**12), st.floats(0, 1e12), st.just(1))


def _without_none(body: dict[str, object]) -> dict[str, object]:
    return {field: value for field, value in body.items() if value is not None}


@st.composite
def triggers(draw: st.DrawFn, depth: int = 0) -> dict[str, object]:
    kinds = ["date", "interval", "cron", "calendarinterval", *(["and", "or"] if depth < 2 else [])]
    kind = draw(st.sampled_from(kinds))
    body: dict[str, object] = {"trigger": kind}
    if kind in ("and", "or"):
        body["triggers"] = draw(st.lists(triggers(depth + 1), min_size=1, max_size=3))
        return body
    body["timezone"] = draw(TIMEZONES)
    if kind == "date":
        body["run_date"] = draw(DATES)
        return _without_none(body)
    body["start_date"] = draw(DATES)
    body["end_date"] = draw(DATES)
    if kind == "interval":
        unit = draw(st.sampled_from(["weeks", "days", "hours", "minutes", "seconds"]))
        body[unit] = draw(AMOUNTS)
    elif kind == "cron":
        for field in draw(st.sets(st.sampled_from(["year", "month", "day", "hour", "minute",
                                                    "second", "day_of_week"]), max_size=3)):
            body[field] = draw(CRON_VALUES)
    else:
        unit = draw(st.sampled_from(["years", "months", "weeks", "days"]))
        body[unit] = draw(st.integers(0, 20000))
        body["hour"] = draw(st.integers(0, 23))
    return _without_none(body)


@pytest.mark.parametrize("examples", EXAMPLE_COUNTS)
def test_no_trigger_timezone_or_date_is_a_server_error(tmp_path, store_config, examples):
    """POST, then PATCH (merged and replacing), of generated triggers: never a 5xx."""
    # Paused: a drawn job due now must not run (and vanish) between the POST and the GET.
    with running_api(tmp_path / "jobs.sqlite", paused=True, **store_config) as (_, client):
        client.post("/jobs", json=JOB)
        created = 0

        @settings(max_examples=examples, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(trigger=triggers(), merged=st.booleans())
        def run(trigger: dict[str, object], merged: bool) -> None:
            nonlocal created
            note(json.dumps(trigger))
            posted = client.post("/jobs", json={"id": "drawn", "func": FUNC, **trigger,
                                                "replace_existing": True})
            assert posted.status_code in (200, 400), (posted.status_code, posted.data)
            assert isinstance(posted.json, dict)
            if posted.status_code == 200:
                created += 1
                listed = client.get("/jobs")
                assert listed.status_code == 200, listed.data
                assert client.get("/jobs/drawn").json == posted.json
                assert client.delete("/jobs/drawn").status_code == 204
            before = client.get("/jobs/job").json
            change = dict(trigger)
            if merged:
                change.pop("trigger")
            patched = client.patch("/jobs/job", json=change)
            assert patched.status_code in (200, 400), (patched.status_code, patched.data)
            if patched.status_code == 400:
                assert client.get("/jobs/job").json == before
            else:
                client.post("/jobs", json={**JOB, "replace_existing": True})

        run()
        assert client.get("/jobs").status_code == 200



@pytest.mark.parametrize(
    ("trigger", "field"),
    [({"trigger": "calendarinterval", "months": 81, "start_date": "9999-12-31"},
      "calendarinterval"),
     ({"trigger": "calendarinterval", "years": 1, "months": 0, "start_date": "9996-02-29"},
      "calendarinterval"),
     ({"trigger": "or", "triggers": [{"trigger": "calendarinterval", "months": 1,
                                      "start_date": "9999-12-31"}]}, "or")],
    ids=["months-from-the-last-day", "feb-29-yearly-from-the-last-leap-year", "inside-or"],
)
def test_a_calendar_interval_reaching_the_year_9999_is_a_400_not_a_hang(store_api, trigger,
                                                                        field):
    """Found by the property: APScheduler's calendarinterval stepped past 9999 forever."""
    _, client = store_api
    response = client.post("/jobs", json={"id": "last", "func": FUNC, **trigger})
    assert_client_error(response, field)
    assert client.get("/jobs").json == []
