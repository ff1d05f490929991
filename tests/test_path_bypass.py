"""Path spellings that some reader maps under /scheduler never reach the protected view.

Each spelling is a raw request target. In process, PATH_INFO is what a PEP 3333 server makes
of it (percent-decoded once, bytes as latin-1); under gunicorn it is sent byte for byte.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

import pytest

from authmw.paths import PrefixMatcher, normalize_prefix, readings

from .bypass_apps import (
    PROTECTED_MARKER,
    PUBLIC_MARKER,
    flask_app,
    guarded_flask,
    guarded_werkzeug,
    werkzeug_app,
)
from .conftest import basic, call, gunicorn, raw_request

PROTECTED_SPELLINGS = {
    "canonical": "/scheduler",
    "trailing-slash": "/scheduler/",
    "sub-path": "/scheduler/jobs",
    "job-path": "/scheduler/jobs/x",
    "double-leading-slash": "//scheduler",
    "triple-slash-sub-path": "///scheduler/jobs",
    "inner-double-slash": "/scheduler//jobs",
    "encoded-slash-first": "/%2Fscheduler",
    "encoded-slash-lowercase": "/%2fscheduler/jobs",
    "double-slash-and-encoded": "//%2Fscheduler",
    "two-encoded-slashes": "/%2F%2Fscheduler",
    "encoded-slash-inside": "/scheduler%2Fjobs",
    "encoded-slash-inside-lowercase": "/scheduler%2fjobs",
    "dot-segment": "/./scheduler",
    "many-dot-segments": "/./././scheduler",
    "dot-inside": "/scheduler/./jobs",
    "trailing-dot": "/scheduler/.",
    "dotdot": "/x/../scheduler",
    "two-dotdots": "/x/y/../../scheduler",
    "dotdot-above-root": "/../scheduler",
    "encoded-dot": "/%2e/scheduler",
    "encoded-dotdot": "/%2e%2e/scheduler",
    "encoded-dotdot-after-segment": "/x/%2e%2e/scheduler",
    "half-encoded-dotdot": "/x/.%2e/scheduler",
    "double-encoded-dotdot": "/x/%252e%252e/scheduler",
    "dotdot-encoded-slash": "/x/..%2Fscheduler",
    "fully-encoded-traversal": "/x%2f%2e%2e%2fscheduler",
    "capitalised": "/Scheduler",
    "upper-case": "/SCHEDULER/jobs",
    "mixed-case-params": "/sCHeDuLeR;jsessionid=1",
    "params": "/scheduler;x=1/jobs",
    "empty-params": "/scheduler;/jobs",
    "params-before": "/;x/scheduler",
    "encoded-params": "/scheduler%3Bx/jobs",
    "double-encoded-letter": "/%2573cheduler",
    "encoded-letter": "/%73cheduler",
    "encoded-letter-middle": "/sch%65duler",
    "encoded-upper-letter": "/%53CHEDULER",
    "encoded-backslash": "/%5Cscheduler",
    "raw-backslash": "/\\scheduler",
    "encoded-backslash-inside": "/scheduler%5Cjobs",
    "backslash-dotdot": "/x\\..\\scheduler",
    "nul-suffix": "/scheduler%00",
    "nul-before-suffix": "/scheduler%00-admin",
    "utf-8-long-s": "/%C5%BFcheduler",
    "utf-8-long-s-then-invalid-byte": "/%C5%BFcheduler/%FF",
    "encoded-question-mark": "/scheduler%3Fx",
    "encoded-hash": "/scheduler%23x",
    "encoded-question-mark-then-traversal": "/scheduler%3F/../public",
    "encoded-tab": "/sched%09uler",
    "encoded-newline": "/sched%0Auler/jobs",
    "query-string": "/scheduler?x=1",
    "absolute-form": "http://evil.example/scheduler",
}

UNPROTECTED_SPELLINGS = {
    "other-path": "/public",
    "prefix-with-dash": "/scheduler-admin",
    "prefix-with-suffix": "/schedulerx",
}


def path_info(target: str) -> str:
    if "://" in target:
        return target
    return unquote_to_bytes(target.split("?", 1)[0]).decode("latin-1")


@pytest.mark.parametrize("app", [guarded_werkzeug, guarded_flask], ids=["werkzeug", "flask"])
@pytest.mark.parametrize("target", PROTECTED_SPELLINGS.values(), ids=PROTECTED_SPELLINGS.keys())
def test_in_process_spellings_never_reach_the_view(app, target):
    answer = call(app, path_info(target))
    assert answer.status == 401
    assert PROTECTED_MARKER not in answer.body


@pytest.mark.parametrize("app", [guarded_werkzeug, guarded_flask], ids=["werkzeug", "flask"])
@pytest.mark.parametrize("target", UNPROTECTED_SPELLINGS.values(),
                         ids=UNPROTECTED_SPELLINGS.keys())
def test_in_process_boundaries_are_not_protected(app, target):
    answer = call(app, path_info(target))
    assert (answer.status, answer.body) == (200, PUBLIC_MARKER)


@pytest.mark.parametrize("app", [werkzeug_app, flask_app], ids=["werkzeug", "flask"])
def test_the_table_holds_real_bypasses_of_a_naive_guard(app):
    """Without authmw, some of these spellings reach the view without being '/scheduler...'."""
    reached = {
        name for name, target in PROTECTED_SPELLINGS.items()
        if PROTECTED_MARKER in call(app, path_info(target)).body
        and not path_info(target).startswith("/scheduler")
    }
    assert {"double-leading-slash", "encoded-slash-first"} <= reached


def test_valid_credentials_reach_the_view_through_an_odd_spelling():
    answer = call(guarded_flask, path_info("//scheduler/jobs"), authorization=basic("admin", "s"))
    assert answer.body == PROTECTED_MARKER


@pytest.fixture(scope="module", params=["guarded_werkzeug", "guarded_flask"])
def guarded_server(request):
    with gunicorn(f"tests.bypass_apps:{request.param}") as address:
        yield address


@pytest.mark.parametrize("target", PROTECTED_SPELLINGS.values(), ids=PROTECTED_SPELLINGS.keys())
def test_under_gunicorn_spellings_never_reach_the_view(guarded_server, target):
    status, body = raw_request(guarded_server, target)
    assert status in (400, 401, 404)
    assert PROTECTED_MARKER not in body


def test_under_gunicorn_the_guard_lets_valid_credentials_and_public_paths_through(guarded_server):
    assert raw_request(guarded_server, "/public") == (200, PUBLIC_MARKER)
    assert raw_request(guarded_server, "/scheduler-admin") == (200, PUBLIC_MARKER)
    status, body = raw_request(guarded_server, "/scheduler/jobs",
                               headers={"Authorization": basic("admin", "s")})
    assert (status, body) == (200, PROTECTED_MARKER)


def test_under_gunicorn_a_naive_app_is_bypassable():
    """The same spellings do reach an unguarded Flask view under gunicorn: the table is real."""
    with gunicorn("tests.bypass_apps:flask_app") as address:
        assert raw_request(address, "//scheduler")[1] == PROTECTED_MARKER
        assert raw_request(address, "/%2Fscheduler")[1] == PROTECTED_MARKER


@pytest.mark.parametrize(
    ("prefix", "normalized"),
    [("/scheduler", "/scheduler"), ("/scheduler/", "/scheduler"), ("/a/b", "/a/b"),
     ("/", "/"), ("/API", "/API")],
    ids=["plain", "trailing-slash", "nested", "root", "case-kept"],
)
def test_prefixes_are_normalised(prefix, normalized):
    assert normalize_prefix(prefix) == normalized


@pytest.mark.parametrize(
    "prefix",
    ["", "scheduler", "//scheduler", "/a//b", "/./a", "/a/..", "/a/./b", "/a%2Fb", "/a;b",
     "/a\\b", "/a b", "/a?b", "/a\nb", None],
    ids=["empty", "no-leading-slash", "double-slash", "empty-segment", "dot", "dotdot",
         "inner-dot", "percent", "semicolon", "backslash", "space", "query", "newline",
         "not-a-str"],
)
def test_ambiguous_prefixes_are_refused(prefix):
    with pytest.raises(ValueError):
        PrefixMatcher([prefix])


def test_no_prefix_at_all_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        PrefixMatcher([])


@pytest.mark.parametrize(
    ("path", "selected"),
    [("/scheduler/jobs/x", ("/scheduler/jobs",)),
     ("/scheduler/other", ("/scheduler",)),
     ("/elsewhere", ("/",)),
     ("/scheduler/x/../jobs", ("/scheduler/jobs", "/scheduler")),
     ("//scheduler/jobs", ("/scheduler/jobs", "/")),
     ("/scheduler/jobs/../../x", ("/scheduler/jobs", "/")),
     ("/Scheduler;x", ("/scheduler", "/")),
     ("/Scheduler/Jobs", ("/scheduler/jobs", "/")),
     ("/scheduler/jobs/%41", ("/scheduler/jobs",))],
    ids=["nested", "outer", "root", "reading-per-rule", "unmerged-slashes-under-root",
         "traversal-to-root", "params-read-both-ways", "case-read-both-ways", "one-rule-only"],
)
def test_each_reading_selects_its_longest_prefix(path, selected):
    assert PrefixMatcher(["/scheduler", "/scheduler/jobs", "/"]).select(path) == selected


def test_a_path_with_too_many_readings_selects_nothing_known():
    matcher = PrefixMatcher(["/scheduler", "/admin"])
    nested_escapes = "/%" + "25" * 300 + "2e"  # each decoding peels one level: 300 readings
    assert matcher.select(nested_escapes) is None


@pytest.mark.parametrize(
    "path",
    ["/adm\xc4\xb1n", "/adm\xc4\xb0n/", "/ADM\xc4\xb0N/x", "/adm%C4%B1n"],
    ids=["dotless-i", "dotted-capital-i", "upper-case-dotted-capital-i", "encoded-dotless-i"],
)
def test_letters_that_case_insensitive_routers_take_for_ascii_are_folded(path):
    assert PrefixMatcher(["/admin"]).select(path) == ("/admin",)


@pytest.mark.parametrize(
    "path",
    ["/%\xe9", "/%aa%", "/public%\xc3\xa9x", "/search/100%/caf\xc3\xa9", "/%25\xe9%25\xe9"],
    ids=["percent-then-latin-1", "dangling-percents", "percent-then-utf-8",
         "ordinary-url-with-percent-and-accent", "repeated"],
)
def test_readings_never_grow_longer_than_the_path(path):
    found = readings(path)
    assert found is not None and len(found) < 10
    assert max(map(len, found)) <= len(path) + 1
    assert PrefixMatcher(["/scheduler"]).select(path) == ()


def test_a_path_that_costs_too_much_to_read_selects_nothing_known():
    unit = "%2F./%5c%2F%z;//\\\\%%253b2/./e%25%5//.%25\\2%5ex;%e%5C%e/\\%2//%25%e"
    hostile = ("/" + unit * 200)[:4094]
    assert readings(hostile) is None
    assert PrefixMatcher(["/scheduler"]).select(hostile) is None
