"""Real deployments: Bearer, API keys, several schemes, rules per prefix and method, public
paths, CORS preflights, throttling and the audit log."""

from __future__ import annotations

import logging
import os
import uuid

import pytest

from authmw import (
    APIKeyAuth,
    AuthMiddleware,
    HTTPBasicAuth,
    HTTPTokenAuth,
    MemoryThrottleStore,
    MultiAuth,
    RedisThrottleStore,
    Rule,
    Throttle,
    compare_secrets,
)

from .conftest import basic, call

USERS = {"reader": {"name": "reader", "roles": ["reader"]},
         "admin": {"name": "admin", "roles": ["reader", "admin"]}}


def check_basic(auth):
    user = USERS.get(auth["username"])
    return user if user and compare_secrets(auth["password"], "pw") else False


@pytest.mark.parametrize(
    ("authorization", "status", "challenge"),
    [(None, 401, 'Bearer realm="api"'),
     ("Bearer good-token", 200, None),
     ("bearer good-token", 200, None),
     ("Bearer bad-token", 401, 'Bearer realm="api", error="invalid_token"'),
     ("Bearer " + "a" * 5000, 401, 'Bearer realm="api", error="invalid_token"'),
     ("Bearer bad token", 401, 'Bearer realm="api", error="invalid_token"'),
     ("Bearer té", 401, 'Bearer realm="api", error="invalid_token"'),
     ("BearerX good-token", 401, 'Bearer realm="api"'),
     (basic("admin", "pw"), 401, 'Bearer realm="api"')],
    ids=["missing", "valid", "lowercase-scheme", "wrong-token", "too-long", "space-in-token",
         "non-ascii", "scheme-with-suffix", "other-scheme"],
)
def test_bearer_tokens(recording_app, authorization, status, challenge):
    middleware = AuthMiddleware(recording_app, auth=HTTPTokenAuth(realm="api"),
                                authenticate=lambda auth: compare_secrets(auth["token"],
                                                                          "good-token"))
    answer = call(middleware, "/x", authorization=authorization)
    assert answer.status == status
    assert answer.headers.get("WWW-Authenticate") == challenge
    if status == 200:
        assert recording_app.seen[0]["authmw.authorization"].auth_type == "bearer"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"HTTP_X_API_KEY": "key1"}, 200), ({"HTTP_X_API_KEY": "nope"}, 401),
     ({"HTTP_X_API_KEY": "key1,key2"}, 401), ({"HTTP_X_API_KEY": "k\x00"}, 401),
     ({"HTTP_X_API_KEY": ""}, 401)],
    ids=["missing", "valid", "unknown", "joined-duplicates", "control-character", "empty"],
)
def test_api_keys(recording_app, headers, status):
    middleware = AuthMiddleware(recording_app, auth=APIKeyAuth(realm="Scheduler API"),
                                authenticate=lambda auth: auth["key"] in {"key1", "key2"})
    answer = call(middleware, "/x", **headers)
    assert answer.status == status
    if status == 401:
        assert answer.headers["WWW-Authenticate"] == 'API-Key realm="Scheduler API"'


def test_several_schemes_at_once(recording_app):
    handler = MultiAuth(HTTPBasicAuth(realm="r"), HTTPTokenAuth(realm="r"), APIKeyAuth(realm="r"))

    def authenticate(auth):
        return {"basic": lambda: check_basic(auth), "bearer": lambda: auth["token"] == "t",
                "apikey": lambda: auth["key"] == "k"}[auth.auth_type]()

    middleware = AuthMiddleware(recording_app, auth=handler, authenticate=authenticate)
    refused = call(middleware, "/x")
    assert refused.status == 401
    assert [value for name, value in refused.header_list if name == "WWW-Authenticate"] == [
        'Basic realm="r"', 'Bearer realm="r"', 'API-Key realm="r"']
    assert call(middleware, "/x", authorization=basic("admin", "pw")).status == 200
    assert call(middleware, "/x", authorization="Bearer t").status == 200
    assert call(middleware, "/x", HTTP_X_API_KEY="k").status == 200
    # The first handler whose credentials are present decides: a wrong Basic password is not
    # rescued by a valid API key sent alongside.
    assert call(middleware, "/x", authorization=basic("admin", "no"),
                HTTP_X_API_KEY="k").status == 401


def guarded_by_rules(app):
    return AuthMiddleware(
        app, auth=HTTPBasicAuth(), prefixes=[], authenticate=check_basic,
        rules=[Rule("/scheduler", roles={"GET": "reader", "HEAD": "reader", "*": "admin"}),
               Rule("/scheduler/admin", roles={"*": "admin"}),
               Rule("/api", auth=HTTPTokenAuth(), authenticate=lambda auth: auth["token"] == "t")],
    )


@pytest.mark.parametrize(
    ("method", "path", "credentials", "status"),
    [("GET", "/scheduler/jobs", basic("reader", "pw"), 200),
     ("HEAD", "/scheduler/jobs", basic("reader", "pw"), 200),
     ("POST", "/scheduler/jobs", basic("reader", "pw"), 403),
     ("DELETE", "/scheduler/jobs/x", basic("reader", "pw"), 403),
     ("POST", "/scheduler/jobs", basic("admin", "pw"), 200),
     ("GET", "/scheduler/admin/x", basic("reader", "pw"), 403),
     ("GET", "//Scheduler/admin", basic("reader", "pw"), 403),
     ("GET", "/scheduler/admin/x", basic("admin", "pw"), 200),
     ("GET", "/scheduler/jobs", basic("reader", "wrong"), 401),
     ("GET", "/api/x", "Bearer t", 200),
     ("GET", "/api/x", basic("admin", "pw"), 401),
     ("GET", "/elsewhere", None, 200)],
    ids=["reader-reads", "reader-heads", "reader-cannot-write", "reader-cannot-delete",
         "admin-writes", "longest-prefix-wins", "longest-prefix-wins-odd-spelling",
         "admin-in-admin-area", "wrong-password-is-401-not-403", "own-handler-for-api",
         "api-refuses-basic", "unprotected"],
)
def test_rules_per_prefix_and_method(recording_app, method, path, credentials, status):
    answer = call(guarded_by_rules(recording_app), path, method=method, authorization=credentials)
    assert answer.status == status
    assert len(recording_app.seen) == (1 if status == 200 else 0)
    if status == 403:
        assert "WWW-Authenticate" not in answer.headers
        assert answer.body == b"Forbidden"


def test_a_callback_returning_true_has_no_roles(recording_app):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=lambda a: True,
                                rules=[Rule("/", roles={"*": "admin"})])
    assert call(middleware, "/x", authorization=basic("a", "b")).status == 403


@pytest.mark.parametrize(
    "roles", [{"GET": []}, {"": "admin"}], ids=["no-role-at-all", "empty-method"])
def test_bad_rules_are_refused(roles):
    with pytest.raises(ValueError):
        Rule("/x", roles=roles)


@pytest.mark.parametrize(
    ("path", "public"),
    [("/health", True), ("/health/", False), ("//health", False), ("/Health", False),
     ("/health;x", False), ("/health/../admin", False), ("/healthz", False),
     ("/x/../health", False)],
    ids=["exact", "trailing-slash", "double-slash", "case", "params", "traversal-out",
         "longer-name", "traversal-in"],
)
def test_public_paths_match_only_exactly(recording_app, path, public):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
                                public=["/health"])
    assert call(middleware, path).status == (200 if public else 401)


@pytest.mark.parametrize(
    ("extra", "passes"),
    [({}, True),
     ({"HTTP_X_HTTP_METHOD_OVERRIDE": "DELETE"}, False),
     ({"HTTP_X_METHOD_OVERRIDE": "DELETE"}, False),
     ({"HTTP_X_HTTP_METHOD": "DELETE"}, False),
     ({"QUERY_STRING": "_method=DELETE"}, False),
     ({"CONTENT_LENGTH": "12"}, False),
     ({"HTTP_ORIGIN": None}, False),
     ({"HTTP_ACCESS_CONTROL_REQUEST_METHOD": None}, False)],
    ids=["preflight", "method-override-header", "x-method-override", "x-http-method",
         "method-override-query", "with-a-body", "no-origin", "no-request-method"],
)
def test_cors_preflight_exemption(recording_app, extra, passes):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
                                cors_preflight=True)
    environ = {"HTTP_ORIGIN": "https://app.example", "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
               **extra}
    environ = {key: value for key, value in environ.items() if value is not None}
    assert call(middleware, "/x", method="OPTIONS", **environ).status == (200 if passes else 401)


def test_cors_preflight_exemption_is_off_by_default(recording_app):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic)
    assert call(middleware, "/x", method="OPTIONS", HTTP_ORIGIN="https://a.example",
                HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST").status == 401


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttled(app, store):
    calls: list[str] = []

    def authenticate(auth):
        calls.append(auth["username"])
        return check_basic(auth)

    throttle = Throttle(max_failures=3, window=60, store=store)
    return AuthMiddleware(app, auth=HTTPBasicAuth(), authenticate=authenticate,
                          throttle=throttle), calls


def test_throttling_per_address_answers_429_before_any_check(recording_app):
    clock = FakeClock()
    middleware, calls = throttled(recording_app, MemoryThrottleStore(clock=clock))
    for attempt in range(3):
        assert call(middleware, "/x", authorization=basic(f"guess{attempt}", "x"),
                    REMOTE_ADDR="192.0.2.1").status == 401
    blocked = call(middleware, "/x", authorization=basic("admin", "pw"), REMOTE_ADDR="192.0.2.1")
    assert blocked.status == 429
    assert blocked.headers["Retry-After"] == "60"
    assert len(calls) == 3  # the callback (and its hashing) did not run for the 4th
    assert call(middleware, "/x", authorization=basic("admin", "pw"),
                REMOTE_ADDR="192.0.2.2").status == 200
    clock.now += 61
    assert call(middleware, "/x", authorization=basic("admin", "pw"),
                REMOTE_ADDR="192.0.2.1").status == 200


def test_throttling_per_username_across_addresses(recording_app):
    middleware, _ = throttled(recording_app, MemoryThrottleStore(clock=FakeClock()))
    for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        call(middleware, "/x", authorization=basic("admin", "bad"), REMOTE_ADDR=address)
    answer = call(middleware, "/x", authorization=basic("admin", "pw"), REMOTE_ADDR="198.51.100.9")
    assert answer.status == 429


REDIS_URL = os.environ.get("AUTHMW_TEST_REDIS_URL")


@pytest.mark.skipif(not REDIS_URL, reason="set AUTHMW_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
def test_throttling_shared_through_redis(recording_app):
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    store = RedisThrottleStore(client, namespace=f"authmw-test:{uuid.uuid4().hex}:")
    first, _ = throttled(recording_app, store)
    second, calls = throttled(recording_app, store)  # another worker, same store
    for _ in range(3):
        call(first, "/x", authorization=basic("admin", "bad"), REMOTE_ADDR="203.0.113.7")
    answer = call(second, "/x", authorization=basic("admin", "pw"), REMOTE_ADDR="203.0.113.7")
    assert answer.status == 429
    assert 0 < int(answer.headers["Retry-After"]) <= 60
    assert calls == []
    client.delete(*client.keys(store.namespace + "*"))


def test_the_audit_log_has_one_record_per_refusal_and_no_secret(recording_app, caplog):
    middleware = guarded_by_rules(recording_app)
    with caplog.at_level(logging.INFO, logger="authmw.audit"):
        call(middleware, "/scheduler", REMOTE_ADDR="192.0.2.9")
        call(middleware, "/scheduler", authorization=basic("reader", "s3cret-pw"),
             REMOTE_ADDR="192.0.2.9")
        call(middleware, "/scheduler", method="POST", authorization=basic("reader", "pw"),
             REMOTE_ADDR="192.0.2.9")
        call(middleware, "/scheduler", authorization=basic("admin", "pw"))
    records = [record.getMessage() for record in caplog.records if record.name == "authmw.audit"]
    assert records == [
        "denied 192.0.2.9 GET '/scheduler': no credentials (user None)",
        "denied 192.0.2.9 GET '/scheduler': credentials refused (user 'reader')",
        "denied 192.0.2.9 POST '/scheduler': role not allowed (user 'reader')",
    ]
    assert "s3cret-pw" not in caplog.text
    assert basic("reader", "s3cret-pw").split()[1] not in caplog.text
