"""``{prefix}/health`` and ``{prefix}/ready`` are public on their exact paths only.

Every other spelling that a reader could map to them, or through them to a protected route
(``/scheduler/health/../jobs``), still needs credentials: in process (PATH_INFO as a PEP 3333
server makes it) and under a real gunicorn (sent byte for byte), as in test_path_bypass.py.
"""

from __future__ import annotations

import json

import pytest

from scheduler_api import APScheduler
from scheduler_api.server import create_app

from .conftest import call, gunicorn, raw_request
from .test_path_bypass import path_info

PASSWORD = "health-secret"

#: Spellings of, next to, or through the public paths: none is public.
NOT_PUBLIC = {
    "traversal-to-jobs": "/scheduler/health/../jobs",
    "ready-traversal-to-jobs": "/scheduler/ready/../jobs",
    "encoded-traversal": "/scheduler/health/%2e%2e/jobs",
    "encoded-slash-traversal": "/scheduler/health%2F..%2Fjobs",
    "double-encoded-traversal": "/scheduler/health/%252e%252e/jobs",
    "half-encoded-traversal": "/scheduler/health/.%2e/jobs",
    "backslash-traversal": "/scheduler/health\\..\\jobs",
    "suffix": "/scheduler/healthx",
    "ready-suffix": "/scheduler/readyz",
    "sub-path": "/scheduler/health/x",
    "ready-sub-path": "/scheduler/ready/x",
    "trailing-slash": "/scheduler/health/",
    "capitalised": "/scheduler/Health",
    "upper-case": "/SCHEDULER/HEALTH",
    "prefix-capitalised": "/Scheduler/health",
    "ready-upper-case": "/scheduler/READY",
    # ("/scheduler/%68ealth" is the exact path once the server decodes it: public, as meant)
    "double-encoded-letter": "/scheduler/%2568ealth",
    "encoded-dot-segment": "/scheduler/%2e/health",
    "dot-segment": "/scheduler/./health",
    "double-slash": "//scheduler/health",
    "inner-double-slash": "/scheduler//health",
    "params": "/scheduler/health;x",
    "encoded-params": "/scheduler/health%3Bx",
    "nul": "/scheduler/health%00",
    "encoded-question-mark": "/scheduler/health%3F",
    "health-under-jobs": "/scheduler/jobs/../health",
    "jobs-through-params": "/scheduler/health;/../jobs",
}


@pytest.fixture
def app(tmp_path):
    scheduler = APScheduler()
    app = create_app({"SCHEDULER_API_PASSWORD": PASSWORD, "SCHEDULER_API_MAX_FAILURES": "0",
                      "SCHEDULER_JOBSTORE_URL": f"sqlite:///{tmp_path / 'jobs.sqlite'}"},
                     scheduler=scheduler)
    try:
        yield app
    finally:
        scheduler.shutdown(wait=False)


def test_the_exact_paths_answer_without_credentials(app):
    health = call(app, "/scheduler/health")
    assert (health.status, json.loads(health.body)) == (200, {"status": "ok"})
    ready = call(app, "/scheduler/ready")
    assert (ready.status, json.loads(ready.body)) == (200, {"status": "ready"})


@pytest.mark.parametrize("target", NOT_PUBLIC.values(), ids=NOT_PUBLIC.keys())
def test_in_process_no_other_spelling_is_public(app, target):
    answer = call(app, path_info(target))
    assert answer.status in (400, 401), (target, answer.status, answer.body)
    assert b"status" not in answer.body and b"[" not in answer.body


def test_other_methods_on_the_public_paths_change_nothing(app):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/scheduler/health", "/scheduler/ready"):
            assert call(app, path, method=method).status == 405


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("health") / "jobs.sqlite"
    env = {"SCHEDULER_API_PASSWORD": PASSWORD, "SCHEDULER_JOBSTORE_URL": f"sqlite:///{store}",
           "SCHEDULER_API_MAX_FAILURES": "0"}
    with gunicorn("scheduler_api.server:create_app()", env=env) as address:
        yield address


def test_under_gunicorn_the_exact_paths_answer_without_credentials(server):
    assert raw_request(server, "/scheduler/health") == (200, b'{"status":"ok"}')
    assert raw_request(server, "/scheduler/ready") == (200, b'{"status":"ready"}')
    assert raw_request(server, "/scheduler/health?verbose=1")[0] == 200  # the path decides
    assert raw_request(server, "/scheduler/%68ealth")[0] == 200  # PATH_INFO is /scheduler/health


@pytest.mark.parametrize("target", NOT_PUBLIC.values(), ids=NOT_PUBLIC.keys())
def test_under_gunicorn_no_other_spelling_is_public(server, target):
    status, body = raw_request(server, target)
    assert status in (400, 401, 404), (target, status, body)
    assert b'"status"' not in body and not body.startswith(b"[")
