"""One verdict per request over every reading of its path, and methods as the app reads them.

Each reading of a path selects its own rule (its longest matching prefix); a request passes
only if it satisfies the rule of every reading. Readings under rules with different handlers
or callbacks, and paths with too many readings to know, are a 400. The app behind
(``tests/rules_apps.py``) reads paths as generously as any router could.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.serving import make_server

from authmw import APIKeyAuth, AuthMiddleware, HTTPBasicAuth, Rule, Throttle
from authmw.middleware import query_overrides_method
from authmw.paths import readings

from .conftest import basic, call, gunicorn, raw_request
from .rules_apps import PARTNER_KEY, check_basic, generous_app, generous_reading, guard

READER = {"HTTP_AUTHORIZATION": basic("reader", "pw")}
ADMIN = {"HTTP_AUTHORIZATION": basic("admin", "pw")}
PARTNER = {"HTTP_X_API_KEY": PARTNER_KEY}
#: The review's overflow: padding past the readings bound once made the most specific rule
#: (here /files, the most lenient for a reader) apply to a path the app reads as /payroll.csv.
PADDING = ";%252541%5C%09%3F%23%00%C3%A9" * 100
OVERFLOW_TARGET = "/files/x" + PADDING + "/../payroll.csv"

# (method, raw request target, credentials, status)
CASES = {
    "reader-reads-reports": ("GET", "/reports", READER, 200),
    "reader-reads-a-report": ("GET", "/reports/2026/q3", READER, 200),
    "reader-cannot-delete-through-reports": ("DELETE", "/reports/../admin/users", READER, 403),
    "reader-cannot-read-admin-through-reports": ("GET", "/reports/../admin/users", READER, 403),
    "encoded-traversal-out-of-reports": ("DELETE", "/reports/%2e%2e/admin/users", READER, 403),
    "double-encoded-traversal": ("DELETE", "/reports/%252e%252e%252fadmin", READER, 403),
    "backslash-traversal": ("DELETE", "/reports\\..\\admin", READER, 403),
    "params-traversal": ("DELETE", "/reports;x/..;y/admin", READER, 403),
    "admin-deletes-through-reports": ("DELETE", "/reports/../admin/users", ADMIN, 200),
    "reader-reads-files": ("GET", "/files/a.csv", READER, 200),
    "reader-cannot-delete-files": ("DELETE", "/files/a.csv", READER, 403),
    "admin-deletes-files": ("DELETE", "/files/a.csv", ADMIN, 200),
    "partner-reaches-api": ("GET", "/api/x", PARTNER, 200),
    "basic-only-through-scheduler-to-api": ("GET", "/scheduler/../api/x", ADMIN, 400),
    "api-key-through-scheduler-to-api": ("GET", "/scheduler/../api/x", PARTNER, 400),
    "api-key-out-of-api-to-admin": ("GET", "/api/../admin/users", PARTNER, 400),
    "encoded-api-key-out-of-api": ("GET", "/api/%2e%2e/admin/users", PARTNER, 400),
    "overflow-reader-delete": ("DELETE", OVERFLOW_TARGET, READER, 400),
    "overflow-partner": ("GET", "/api/x" + PADDING + "/../admin/users", PARTNER, 400),
    "overflow-admin-too": ("GET", OVERFLOW_TARGET, ADMIN, 400),
    # A case-sensitive router reads /FILES/a as no /files path at all: the / rule holds too.
    "upper-case-is-also-read-as-written": ("GET", "/FILES/a.csv", READER, 403),
    "upper-case-admin": ("GET", "/FILES/a.csv", ADMIN, 200),
    "dotless-i-is-also-read-as-written": ("GET", "/f%C4%B1les/a.csv", READER, 403),
    # A method a rule does not list needs what the enclosing rule asks.
    "unlisted-method-inherits-the-enclosing-rule": ("DELETE", "/reports", READER, 403),
    "unlisted-method-for-admin": ("DELETE", "/reports", ADMIN, 200),
    "reader-cannot-post-files": ("POST", "/files/a.csv", READER, 403),
    "rule-without-roles-needs-authentication-only": ("DELETE", "/api/x", PARTNER, 200),
}


def path_info(target: str) -> str:
    """What a PEP 3333 server puts in PATH_INFO: decoded once, bytes as latin-1."""
    return unquote_to_bytes(target).decode("latin-1")


@pytest.mark.parametrize(("method", "target", "credentials", "status"), CASES.values(),
                         ids=CASES.keys())
def test_every_reading_is_held_to_its_own_rule(method, target, credentials, status):
    answer = call(guard(generous_app), path_info(target), method=method, **credentials)
    assert answer.status == status, answer.body
    assert answer.body.startswith(b"VIEW") == (status == 200)
    if status == 400:
        assert answer.body == b"Bad Request"
        assert "WWW-Authenticate" not in answer.headers


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    with gunicorn("tests.rules_apps:guarded", "--limit-request-line", "0") as address:
        yield address


def headers_of(credentials: dict[str, str]) -> dict[str, str]:
    names = {"HTTP_AUTHORIZATION": "Authorization", "HTTP_X_API_KEY": "X-API-Key"}
    return {names[key]: value for key, value in credentials.items()}


@pytest.mark.parametrize(("method", "target", "credentials", "status"), CASES.values(),
                         ids=CASES.keys())
def test_every_reading_is_held_to_its_own_rule_under_gunicorn(server, method, target,
                                                              credentials, status):
    answer_status, body = raw_request(server, target.replace("\\", "%5C"), method,
                                      headers_of(credentials))
    assert answer_status == status, body
    assert body.startswith(b"VIEW") == (status == 200)


def test_readings_under_different_callbacks_of_one_handler_are_ambiguous(recording_app):
    basic_auth = HTTPBasicAuth()
    middleware = AuthMiddleware(recording_app, auth=basic_auth, authenticate=check_basic,
                                rules=[Rule("/ops", authenticate=lambda auth: True)])
    assert call(middleware, "/ops/x", **READER).status == 200
    assert call(middleware, "/ops/../x", **READER).status == 400
    assert call(middleware, "/x/../ops", **READER).status == 400
    assert recording_app.seen[0]["PATH_INFO"] == "/ops/x" and len(recording_app.seen) == 1


def test_a_rule_whose_handler_is_the_middlewares_own_is_not_ambiguous(recording_app):
    basic_auth = HTTPBasicAuth()
    middleware = AuthMiddleware(recording_app, auth=basic_auth, authenticate=check_basic,
                                rules=[Rule("/ops", auth=basic_auth, authenticate=check_basic,
                                            roles={"*": "admin"})])
    assert call(middleware, "/ops/../x", **ADMIN).status == 200
    assert call(middleware, "/ops/../x", **READER).status == 403


def test_a_path_with_too_many_readings_is_refused_even_when_nothing_is_protected_there(
        recording_app):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
                                prefixes=["/scheduler"])
    nested_escapes = "/%" + "25" * 300 + "2e"
    assert readings(nested_escapes) is None
    assert call(middleware, nested_escapes, **ADMIN).status == 400
    assert call(middleware, "/public/x%2Fy", **ADMIN).status == 200  # many readings is not it
    assert recording_app.seen[0]["PATH_INFO"] == "/public/x%2Fy"


def test_an_ambiguous_path_is_audited(caplog, recording_app):
    with caplog.at_level("INFO", logger="authmw.audit"):
        call(guard(generous_app), "/scheduler/../api/x", REMOTE_ADDR="192.0.2.4", **PARTNER)
    assert [record.getMessage() for record in caplog.records] == [
        "denied 192.0.2.4 GET '/scheduler/../api/x': ambiguous path (readings under different "
        "handlers) (user None)"]


# Generated paths: pieces of the configured prefixes, traversals and separators.
PIECES = ["reports", "admin", "files", "api", "scheduler", "x", "REPORTS", "..", ".", "%2e%2e",
          "%2E.", "%252e%252e", "%2f", "%5c", "\\", ";p", "//", "%00", "%3f", "%C5%BFcheduler"]


@st.composite
def generated_paths(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=8))
    return "/" + "/".join(parts)


def required_roles(reading: str, method: str) -> set[str] | str:
    """The roles ``tests/rules_apps.py`` asks for a plain reading, as written: an independent
    oracle (methods a rule does not list need what ``/`` asks: admin)."""
    for prefix, roles in (("/reports", {"GET": {"reader", "admin"}, "HEAD": {"reader", "admin"}}),
                          ("/files", {"GET": {"reader", "admin"}, "DELETE": {"admin"}}),
                          ("/scheduler", {"GET": {"reader", "admin"}, "*": {"admin"}}),
                          ("/api", "partner")):
        if reading == prefix or reading.startswith(prefix + "/"):
            return roles if isinstance(roles, str) else roles.get(method, {"admin"})
    return {"admin"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=generated_paths(), method=st.sampled_from(["GET", "DELETE", "delete", "Get"]),
       who=st.sampled_from(["reader", "admin", "partner"]))
def test_generated_paths_pass_only_when_the_rule_of_every_reading_allows_them(path, method,
                                                                               who):
    credentials = {"reader": READER, "admin": ADMIN, "partner": PARTNER}[who]
    answer = call(guard(generous_app), path, method=method, **credentials)
    if answer.status != 200:
        return
    found = readings(path)
    assert found is not None
    roles = {"reader": {"reader"}, "admin": {"reader", "admin"}, "partner": {"partner"}}[who]
    for reading in {*found, *(text.lower() for text in found), generous_reading(path)}:
        required = required_roles(reading, method.upper())
        if required == "partner":
            assert who == "partner", reading
        else:
            assert who != "partner", reading
            assert roles & required, (reading, method)


@pytest.mark.parametrize(
    "rules",
    [[Rule("/admin"), Rule("/Admin", roles={"*": "admin"})],
     [Rule("/admin", roles={"GET": "reader"}), Rule("/admin/", roles={"*": "admin"})]],
    ids=["prefixes-differing-only-in-case", "the-same-prefix-twice"],
)
def test_rules_that_a_router_could_confuse_are_refused_when_built(recording_app, rules):
    with pytest.raises(ValueError, match=r"differ only in case|two rules"):
        AuthMiddleware(recording_app, auth=HTTPBasicAuth(), rules=rules)


def test_a_rule_listing_methods_refuses_the_others_where_no_enclosing_rule_lists_them(
        recording_app):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
                                prefixes=[], rules=[Rule("/reports", roles={"GET": "reader"})])
    assert call(middleware, "/reports", **READER).status == 200
    assert call(middleware, "/reports", method="DELETE", **ADMIN).status == 403


@pytest.mark.parametrize("method", ["delete", "Delete", "dELETE"])
def test_roles_are_looked_up_with_the_method_the_app_reads(method):
    middleware = guard(generous_app)
    answer = call(middleware, "/files/a.csv", method=method, **READER)
    assert answer.status == 403
    admin = call(middleware, "/files/a.csv", method=method, **ADMIN)
    assert admin.body == b"VIEW DELETE /files/a.csv"


def test_a_lower_case_method_through_werkzeugs_own_server_is_held_to_its_role():
    server = make_server("127.0.0.1", 0, guard(generous_app))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = ("127.0.0.1", server.server_port)
        status, body = raw_request(address, "/files/a.csv", "delete",
                                   {"Authorization": READER["HTTP_AUTHORIZATION"]})
        assert (status, body) == (403, b"Forbidden")
        status, body = raw_request(address, "/files/a.csv", "delete",
                                   {"Authorization": ADMIN["HTTP_AUTHORIZATION"]})
        assert (status, body) == (200, b"VIEW DELETE /files/a.csv")
    finally:
        server.shutdown()
        server.server_close()


PREFLIGHT = {"HTTP_ORIGIN": "https://app.example", "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST"}


@pytest.mark.parametrize(
    ("method", "query", "passes"),
    [("OPTIONS", "", True),
     ("options", "", True),
     ("OPTIONS", "page=2", True),
     ("OPTIONS", "_method=DELETE", False),
     ("OPTIONS", "%5Fmethod=DELETE", False),
     ("OPTIONS", "%5fmethod=DELETE", False),
     ("OPTIONS", "%255Fmethod=DELETE", False),
     ("OPTIONS", "_METHOD=DELETE", False),
     ("OPTIONS", "_me%74hod=DELETE", False),
     ("OPTIONS", "a=1&_me%09thod=DELETE", False),
     ("OPTIONS", "x-http-method-override=DELETE", False),
     ("OPTIONS", "X-HTTP-Method=DELETE", False),
     ("OPTIONS", "%" + "25" * 20 + "5Fmethod=DELETE", False)],
    ids=["preflight", "lower-case-options", "other-query", "override", "encoded-underscore",
         "encoded-lower-case", "double-encoded", "upper-case-name", "encoded-letter",
         "tab-inside-the-name", "override-header-name", "x-http-method-name",
         "encoded-past-the-bound"],
)
def test_the_preflight_exemption_reads_the_query_as_an_override_middleware_would(
        recording_app, method, query, passes):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
                                cors_preflight=True)
    answer = call(middleware, "/x", method=method, QUERY_STRING=query, **PREFLIGHT)
    assert answer.status == (200 if passes else 401)
    assert query_overrides_method(query) is not passes


def test_the_preflight_exemption_never_overrides_an_ambiguous_path(recording_app):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
                                cors_preflight=True,
                                rules=[Rule("/api", auth=APIKeyAuth(), authenticate=check_basic)])
    assert call(middleware, "/x/../api", method="OPTIONS", **PREFLIGHT).status == 400
    assert recording_app.seen == []


@pytest.mark.parametrize(
    "public",
    ["/health;x", "/a/../health", "/%68ealth", "health", "//health", "/health\x00", "/h\\x",
     "/health?x"],
    ids=["params", "traversal", "encoded", "relative", "double-slash", "nul", "backslash",
         "query"],
)
def test_public_paths_with_another_reading_are_refused_when_configured(recording_app, public):
    with pytest.raises(ValueError, match="public path"):
        AuthMiddleware(recording_app, auth=HTTPBasicAuth(), public=[public])


def test_public_paths_may_start_with_a_dot_segment_name(recording_app):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
                                public=["/.well-known/openid-configuration"])
    assert call(middleware, "/.well-known/openid-configuration").status == 200
    assert call(middleware, "/.well-known/../admin").status == 401


@pytest.mark.parametrize("path", ["/admin", "/admin/users", "/%61dmin", "//admin/x", "/ADMIN"],
                         ids=["lower-case", "lower-case-sub-path", "encoded", "double-slash",
                              "upper-case"])
def test_a_prefix_with_capitals_protects_every_case_of_it(recording_app, path):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
                                prefixes=["/Admin"])
    assert call(middleware, path_info(path)).status == 401
    assert recording_app.seen == []


NO_ROLES = {"HTTP_AUTHORIZATION": basic("nobody", "pw")}


@pytest.mark.parametrize(
    ("rules", "method", "path", "credentials", "status"),
    [([Rule("/reports", roles={"GET": "reader"})], "DELETE", "/reports", READER, 403),
     ([Rule("/reports", roles={"GET": "reader"})], "HEAD", "/reports", READER, 200),
     ([Rule("/reports", roles={"GET": "reader"})], "HEAD", "/reports", NO_ROLES, 403),
     ([Rule("/", roles={"*": "admin"}), Rule("/a"), Rule("/a/b", roles={"GET": "reader"})],
      "DELETE", "/a/b/x", READER, 403),
     ([Rule("/", roles={"*": "admin"}), Rule("/a"), Rule("/a/b", roles={"GET": "reader"})],
      "DELETE", "/a/b/x", ADMIN, 200),
     ([Rule("/", roles={"*": "admin"}), Rule("/a")], "POST", "/a/x", READER, 403),
     ([Rule("/other")], "DELETE", "/other", NO_ROLES, 200)],
    ids=["unlisted-method-under-the-implicit-root", "head-is-gets", "head-needs-gets-role",
         "through-a-rule-without-roles", "admin-through-a-rule-without-roles",
         "a-rule-without-roles-inherits", "no-roles-anywhere-is-authentication-only"],
)
def test_roles_go_up_through_the_enclosing_rules_of_the_same_users(recording_app, rules,
                                                                   method, path,
                                                                   credentials, status):
    users = {**{"nobody": {"roles": []}}}

    def check(auth):
        return users.get(auth["username"]) or check_basic(auth)

    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check,
                                rules=rules)
    assert call(middleware, path, method=method, **credentials).status == status


def test_a_rule_with_its_own_users_does_not_inherit_anothers_roles(recording_app):
    middleware = guard(generous_app)  # /api: API keys, roles None, under / (Basic, admin)
    assert call(middleware, "/api/x", method="DELETE", **PARTNER).status == 200


class Users:
    def check(self, auth):
        return check_basic(auth)


def test_one_bound_method_read_twice_is_one_callback(recording_app):
    users = Users()
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=users.check,
                                rules=[Rule("/a", authenticate=users.check),
                                       Rule("/b", authenticate=users.check)],
                                throttle=Throttle(max_failures=3))
    assert call(middleware, "/a/..%2fb", **READER).status == 200
    statuses = [call(middleware, path, authorization=basic("reader", "guess"),
                     REMOTE_ADDR=f"203.0.113.{index}").status
                for index, path in enumerate(["/a", "/b", "/x", "/a", "/b"])]
    assert statuses == [401, 401, 401, 429, 429]  # one count for the one user store
