"""The job API fuzzed from its own OpenAPI document (schemathesis) against a live gunicorn.

The demo app (``scheduler_api.server:create_app()``) runs under a real gunicorn on a SQLite
file; the document is loaded from ``/scheduler/openapi.json`` with Basic auth, and every
operation gets generated requests, valid ones (positive) and invalid ones (negative). Every
response must be no 5xx (``not_a_server_error``) and conform to the document: its status is
listed, its content type is declared, its required headers are there and its body validates
against the schema (``status_code_conformance``, ``content_type_conformance``,
``response_headers_conformance``, ``response_schema_conformance``).

25 examples per operation and mode in the normal run (the same ones every time, so that CI
is reproducible); 500 fresh random ones in the ``slow``-marked run. Requests are partly
steered at existing jobs and allowed funcs, so that success paths are fuzzed too. The
regression tests at the end of this file keep what earlier runs found fixed.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .conftest import gunicorn

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.errors import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

AUTH = ("admin", "secret")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
#: Jobs that generated requests are steered at (path parameter job_id), by trigger type.
KNOWN_JOBS = {
    "fuzz-interval": {"trigger": "interval", "minutes": 5},
    "fuzz-cron": {"trigger": "cron", "hour": "3", "minute": "*/10"},
    "fuzz-date": {"trigger": "date", "run_date": "2099-01-01T00:00:00+00:00"},
    "fuzz-calendar": {"trigger": "calendarinterval", "months": 1, "hour": 2},
    "fuzz-or": {"trigger": "or", "triggers": [{"trigger": "interval", "hours": 1},
                                              {"trigger": "cron", "minute": "0"}]},
}
#: Allowed funcs that generated bodies are steered at (the demo allows example_tasks:*).
FUNCS = ["scheduler_api.example_tasks:say_hello", "scheduler_api.example_tasks:add"]
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
#: The health checks: public, without parameters or body (fuzzed in the positive mode only).
PUBLIC = frozenset({"/health", "/ready"})


@pytest.fixture(scope="module")
def live_api(tmp_path_factory):
    """The demo app under gunicorn (2 threads) on a fresh SQLite file; yields the API's URL."""
    folder = tmp_path_factory.mktemp("api-fuzz")
    env = {"SCHEDULER_API_USERNAME": "admin", "SCHEDULER_API_PASSWORD": "secret",
           "SCHEDULER_API_ALLOWED_FUNCS": "scheduler_api.example_tasks:*",
           "SCHEDULER_JOBSTORE_URL": f"sqlite:///{folder / 'jobs.sqlite'}",
           "SCHEDULER_API_MAX_FAILURES": "0"}  # wrong credentials are sent on purpose
    # No request-line or header-size limit: gunicorn's own 414 and 431 come before the API
    # and are not in its document; negative cases with long query strings must reach it.
    with gunicorn("scheduler_api.server:create_app()", "--threads", "2",
                  "--limit-request-line", "0", "--limit-request-field_size", "0",
                  env=env) as (host, port):
        yield f"http://{host}:{port}/scheduler"


FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "host", "connection"})


def load_schema(base_url: str):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json", auth=AUTH, timeout=10)


def fuzz_operation(operation, mode, base_url: str, session: requests.Session,  # type: ignore[no-untyped-def]
                   examples: int, derandomize: bool) -> int:
    """Send ``examples`` generated requests to one operation; return how many were sent.

    ``derandomize``: the same examples on every run (hypothesis seeds from the test), so that
    the normal run is reproducible in CI; the slow run explores with fresh random examples.
    """
    sent = 0
    create_known_jobs(base_url)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode),
           job_id=st.sampled_from([None, *KNOWN_JOBS]), func=st.sampled_from([None, *FUNCS]))
    def run(case, job_id, func) -> None:  # type: ignore[no-untyped-def]
        nonlocal sent
        sent += 1
        # Steer some requests at existing jobs and allowed funcs, so that the API's success
        # paths are fuzzed too, not only its 403 and 404 answers.
        if job_id is not None and isinstance(case.path_parameters, dict) \
                and "job_id" in case.path_parameters:
            case.path_parameters["job_id"] = job_id
        if func is not None and isinstance(case.body, dict) and "func" in case.body:
            case.body["func"] = func
        # Framing headers belong to the transport: a made-up Content-Length gets gunicorn's
        # own 400 before the API sees the request.
        for name in [name for name in case.headers or {} if name.lower() in FRAMING_HEADERS]:
            del case.headers[name]
        case.call_and_validate(base_url=base_url, session=session, checks=CHECKS, timeout=10)

    run()
    return sent


def create_known_jobs(base_url: str) -> None:
    """(Re)create the jobs that requests are steered at, one per trigger type."""
    for job_id, trigger in KNOWN_JOBS.items():
        response = requests.post(f"{base_url}/jobs", auth=AUTH, timeout=10, json={
            "id": job_id, "func": FUNCS[0], "replace_existing": True, **trigger})
        assert response.status_code == 200, response.text


def fuzz(base_url: str, examples: int,
         derandomize: bool = False) -> tuple[dict[str, int], Counter[tuple[str, int]]]:
    """Fuzz every operation in both modes; fail with every failing operation's report.

    Returns the requests sent per operation and mode, and the (method, status) counts.
    """
    schema = load_schema(base_url)
    statuses: Counter[tuple[str, int]] = Counter()
    session = requests.Session()
    session.auth = AUTH
    session.hooks["response"].append(
        lambda response, **_: statuses.update([(response.request.method, response.status_code)]))
    counts: dict[str, int] = {}
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in MODES:
            if mode is schemathesis.GenerationMode.NEGATIVE and operation.path in PUBLIC:
                continue  # no parameter, no body, no credentials: nothing to make invalid
            label = f"{operation.label} [{mode.value}]"
            try:
                counts[label] = fuzz_operation(operation, mode, base_url, session, examples,
                                               derandomize)
            except (AssertionError, FailureGroup) as exc:  # a check failed
                failures[label] = f"{type(exc).__name__}: {exc}"[:4000]
    assert not failures, "\n\n".join(f"== {label}\n{report}"
                                     for label, report in failures.items())
    return counts, statuses


def test_the_document_is_served_and_loads(live_api):
    schema = load_schema(live_api)
    labels = {result.ok().label for result in schema.get_all_operations()}
    document = requests.get(f"{live_api}/openapi.json", auth=AUTH, timeout=10).json()
    documented = {f"{method.upper()} {path}" for path, item in document["paths"].items()
                  for method in item if method != "parameters"}
    # schemathesis leaves out the operation that serves the document it was loaded from
    assert labels == documented - {"GET /openapi.json"}
    assert "POST /jobs" in labels and "PATCH /jobs/{job_id}" in labels
    assert requests.get(f"{live_api}/openapi.json", timeout=10).status_code == 401


def test_every_operation_conforms_to_the_document(live_api):
    started = time.monotonic()
    counts, statuses = fuzz(live_api, examples=25, derandomize=True)
    print(f"requests per operation: {counts}\n(method, status): {sorted(statuses.items())}")
    assert all(counts.values()), counts
    # The API itself was exercised, not only the authentication in front of it.
    assert statuses[("POST", 200)] and statuses[("GET", 200)] and statuses[("POST", 400)]
    assert not any(status >= 500 for _, status in statuses)
    assert time.monotonic() - started < 90


@pytest.mark.slow
def test_every_operation_conforms_to_the_document_long(live_api):
    counts, statuses = fuzz(live_api, examples=500)
    print(f"requests per operation: {counts}\n(method, status): {sorted(statuses.items())}")
    assert all(counts.values()), counts
    assert not any(status >= 500 for _, status in statuses)


# --------------------------------------------------------------------------------------------
# Found while writing SECURITY.md (CSRF), now a 415: the action POSTs read no body, so a
# cross-site form (an HTML <form method=post> with no fields sends
# application/x-www-form-urlencoded and an empty body; a text/plain or multipart one is just
# as "simple": no CORS preflight) with the browser's cached Basic credentials could pause,
# shut down or run things.
# --------------------------------------------------------------------------------------------

CSRF_TARGET = {"id": "csrf-target", "func": "tests.tasks:record", "trigger": "interval",
               "minutes": 1}


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [("/pause", "application/x-www-form-urlencoded", b""),
     ("/shutdown", "application/x-www-form-urlencoded", b""),
     ("/jobs/csrf-target/pause", "text/plain", b"x"),
     ("/jobs/csrf-target/run", "multipart/form-data; boundary=x", b"--x--\r\n")],
    ids=["pause-empty-form", "shutdown-empty-form", "job-pause-text-plain",
         "job-run-multipart"],
)
def test_a_cross_site_form_post_cannot_trigger_an_action(api, path, content_type, body):
    _, client = api
    assert client.post("/jobs", json=CSRF_TARGET).status_code == 200
    before = (client.get().json["state"], client.get("/jobs/csrf-target").json)
    response = client.post(path, data=body, headers={"Content-Type": content_type})
    assert response.status_code == 415, (response.status_code, response.data)
    assert (client.get().json["state"], client.get("/jobs/csrf-target").json) == before


# --------------------------------------------------------------------------------------------
# Found by schemathesis (the fuzz run above, GET /jobs positive mode), now a 400:
#   curl -u admin:secret 'http://127.0.0.1:PORT/scheduler/jobs?offset=600410025143022256128&limit=434'
# answers 500 {"error_message": "internal error"}: the document allows any integer >= 0 and
# SQLite's INTEGER stops at 2**63 - 1 (OverflowError in listing._sql_page). And
# scheduler_api.api._query_int checks str.isdigit(), which is true for '²' or '①' that int()
# refuses (ValueError): 500 again, for limit and offset alike.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["offset=600410025143022256128&limit=434",
                                   "offset=9223372036854775808", "offset=%C2%B2",
                                   "limit=%E2%91%A0"],
                         ids=["offset-found-by-schemathesis", "offset-2-to-the-63",
                              "offset-superscript-two", "limit-circled-one"])
def test_out_of_range_or_odd_digit_pages_are_a_400(live_api, query):
    response = requests.get(f"{live_api}/jobs?{query}", auth=AUTH, timeout=10)
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.json()["error_message"].startswith(("limit", "offset"))


# --------------------------------------------------------------------------------------------
# Found by schemathesis (PATCH /jobs/{job_id}, negative mode; shrunk by hand), now a 400:
#   curl -u admin:secret -X PATCH -H 'Content-Type: application/json' -d '{"executor": []}' \
#        http://127.0.0.1:PORT/scheduler/jobs/fuzz-interval
# answers 500: an "executor" (POST or PATCH) or "jobstore" (POST) that is a JSON array or
# object reaches a dict lookup (TypeError: unhashable type) instead of a 400.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("PATCH", "/jobs/fuzz-interval", {"executor": []}),
     ("PATCH", "/jobs/fuzz-interval", {"executor": {}}),
     ("POST", "/jobs", {"id": "n1", "func": FUNCS[0], "executor": []}),
     ("POST", "/jobs", {"id": "n2", "func": FUNCS[0], "jobstore": {}})],
    ids=["patch-executor-array", "patch-executor-object", "post-executor-array",
         "post-jobstore-object"],
)
def test_an_executor_or_jobstore_that_is_not_a_string_is_a_400(live_api, method, path, body):
    create_known_jobs(live_api)
    response = requests.request(method, f"{live_api}{path}", json=body, auth=AUTH, timeout=10)
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.json()["error_message"].startswith(("executor", "jobstore"))
