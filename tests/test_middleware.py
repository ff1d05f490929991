"""AuthMiddleware's flow: the seed's 401, the published results, failing closed."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from urllib.parse import quote, quote_plus

import pytest

from authmw import (
    APIKeyAuth,
    AuthMiddleware,
    Authorization,
    HTTPAuth,
    HTTPBasicAuth,
    HTTPTokenAuth,
    request,
)

from .conftest import basic, call


def protected(app, **kwargs):
    middleware = AuthMiddleware(app, auth=HTTPBasicAuth(), prefixes=["/scheduler"], **kwargs)

    @middleware.authenticate
    def authenticate(auth):
        return auth["username"] == "admin" and auth["password"] == "secret"

    return middleware


SEED_401_HEADERS = {
    "WWW-Authenticate": 'Basic realm="Authentication Required"',
    "Content-Type": "text/plain",
    "Content-Length": "13",
    "Cache-Control": "no-store",
}


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic", "Basic !!!!", "Bearer abc", basic("admin", "wrong"), basic("root", "secret"),
     basic("admin", "secret") + ", Basic YTpi"],
    ids=["missing", "scheme-alone", "malformed-base64", "other-scheme", "wrong-password",
         "unknown-user", "joined-duplicates"],
)
def test_refusals_are_the_seeds_byte_identical_401(recording_app, authorization):
    answer = call(protected(recording_app), "/scheduler/jobs", authorization=authorization)
    assert answer.status == 401
    assert answer.headers == SEED_401_HEADERS
    assert answer.body == b"Access Denied"
    assert recording_app.seen == []


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE",
                                    "TRACE", "PROPFIND"])
def test_every_method_is_protected(recording_app, method):
    assert call(protected(recording_app), "/scheduler", method=method).status == 401
    assert recording_app.seen == []


def test_valid_credentials_reach_the_app_with_the_user_published(recording_app):
    answer = call(protected(recording_app), "/scheduler/jobs",
                  authorization=basic("admin", "secret"), REMOTE_USER="forged")
    assert (answer.status, answer.body) == (200, b"reached the app")
    environ = recording_app.seen[0]
    assert environ["REMOTE_USER"] == "admin"
    assert environ["authmw.authorization"] == {"username": "admin", "password": "secret"}
    assert environ["authmw.authorization"].auth_type == "basic"
    assert "authmw.user" not in environ  # the callback returned True, not a user


def test_a_user_object_returned_by_the_callback_is_published(recording_app):
    user = {"name": "admin", "roles": ["admin"]}
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), prefixes="/scheduler",
                                authenticate=lambda auth: user)
    assert call(middleware, "/scheduler", authorization=basic("admin", "x")).status == 200
    assert recording_app.seen[0]["authmw.user"] is user


def test_inbound_remote_user_is_dropped_on_protected_paths_even_without_auth(recording_app):
    middleware = AuthMiddleware(recording_app, prefixes=["/scheduler"])
    call(middleware, "/scheduler", REMOTE_USER="forged")
    assert "REMOTE_USER" not in recording_app.seen[0]


def test_unprotected_paths_pass_untouched(recording_app):
    answer = call(protected(recording_app), "/public", REMOTE_USER="from-the-server")
    assert answer.status == 200
    assert recording_app.seen[0]["REMOTE_USER"] == "from-the-server"
    assert "authmw.authorization" not in recording_app.seen[0]


def test_default_prefix_protects_everything(recording_app):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(),
                                authenticate=lambda auth: True)
    for path in ["/", "", "/anything", "/a/b/c"]:
        assert call(middleware, path).status == 401
    assert recording_app.seen == []


def test_auth_none_serves_without_authentication_and_warns(recording_app, caplog):
    with caplog.at_level(logging.WARNING, logger="authmw"):
        middleware = AuthMiddleware(recording_app, auth=None, prefixes=["/scheduler"])
    assert "WITHOUT authentication" in caplog.text
    assert call(middleware, "/scheduler").status == 200


def test_auth_without_callback_refuses_everything_and_warns_once(recording_app, caplog):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), prefixes=["/scheduler"])
    with caplog.at_level(logging.WARNING, logger="authmw"):
        for _ in range(3):
            assert call(middleware, "/scheduler", authorization=basic("a", "b")).status == 401
    assert caplog.text.count("no authenticate callback") == 1
    assert recording_app.seen == []


def test_a_raising_callback_is_a_bare_500_and_logged_without_credentials(recording_app, caplog):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), prefixes=["/scheduler"])

    @middleware.authenticate
    def authenticate(auth):
        raise LookupError(f"no such user {auth['username']} with {auth['password']}")

    header = basic("admin", "hunter2-secret")
    with caplog.at_level(logging.ERROR, logger="authmw"):
        answer = call(middleware, "/scheduler", authorization=header)
    assert answer.status == 500
    assert answer.body == b"Internal Server Error"
    assert "LookupError" not in answer.body.decode()
    assert recording_app.seen == []
    assert "LookupError" in caplog.text and "Traceback" in caplog.text
    assert "hunter2-secret" not in caplog.text
    assert header.split()[1] not in caplog.text


class BrokenHandler(HTTPAuth):
    def get_authorization(self):
        raise KeyError("boom")

    def get_authenticate_header(self):
        return 'Custom realm="x"'


class NoneChallenge(HTTPAuth):
    def get_authorization(self):
        return None

    def get_authenticate_header(self):
        return None


class InjectingChallenge(NoneChallenge):
    def get_authenticate_header(self):
        return 'Custom realm="x"\r\nSet-Cookie: pwned=1'


@pytest.mark.parametrize("handler", [BrokenHandler(), NoneChallenge(), InjectingChallenge()],
                         ids=["get-authorization-raises", "challenge-is-none",
                              "challenge-with-crlf"])
def test_a_broken_handler_fails_closed_with_500(recording_app, handler, caplog):
    middleware = AuthMiddleware(recording_app, auth=handler, prefixes=["/scheduler"],
                                authenticate=lambda auth: True)
    with caplog.at_level(logging.ERROR, logger="authmw"):
        answer = call(middleware, "/scheduler")
    assert answer.status == 500
    assert "WWW-Authenticate" not in answer.headers
    assert recording_app.seen == []
    assert "refused with 500" in caplog.text


class OnlyAuthorization(HTTPAuth):
    def get_authorization(self):
        return None


@pytest.mark.parametrize("handler", [HTTPAuth(), OnlyAuthorization(), object()],
                         ids=["base-class", "no-challenge", "not-a-handler"])
def test_a_handler_that_cannot_challenge_is_refused_when_set(recording_app, handler):
    with pytest.raises(TypeError, match="must implement"):
        AuthMiddleware(recording_app, auth=handler)
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth())
    with pytest.raises(TypeError):
        middleware.auth = handler
    assert isinstance(middleware.auth, HTTPBasicAuth)


def test_base_class_methods_raise_not_implemented():
    with pytest.raises(NotImplementedError):
        HTTPAuth().get_authorization()
    with pytest.raises(NotImplementedError):
        HTTPAuth().get_authenticate_header()


def test_auth_can_be_replaced_and_takes_effect_on_the_next_request(recording_app):
    middleware = protected(recording_app)
    assert call(middleware, "/scheduler").status == 401
    middleware.auth = None
    assert call(middleware, "/scheduler").status == 200
    middleware.auth = HTTPBasicAuth(realm="Other")
    assert call(middleware, "/scheduler").headers["WWW-Authenticate"] == 'Basic realm="Other"'


@pytest.mark.parametrize(
    ("realm", "header"),
    [
        ("Scheduler API", 'Basic realm="Scheduler API"'),
        ('say "hi"', r'Basic realm="say \"hi\""'),
        ("back\\slash", r'Basic realm="back\\slash"'),
        ("Planificación", 'Basic realm="Planificación"'),
        ("", 'Basic realm=""'),
    ],
    ids=["plain", "double-quotes-escaped", "backslash-escaped", "latin-1", "empty"],
)
def test_realm_is_quoted(realm, header):
    assert HTTPBasicAuth(realm=realm).get_authenticate_header() == header
    handler = HTTPBasicAuth()
    handler.www_authenticate_realm = realm
    assert handler.get_authenticate_header() == header


@pytest.mark.parametrize("realm", ["a\r\nSet-Cookie: x=1", "a\nb", "tab\there", "nul\x00",
                                   "del\x7f", "snow☃man", 42],
                         ids=["crlf", "lf", "tab", "nul", "del", "above-latin-1", "not-a-str"])
def test_a_realm_that_cannot_be_sent_is_refused_when_set(realm):
    with pytest.raises(ValueError):
        HTTPBasicAuth(realm=realm)
    handler = HTTPBasicAuth()
    with pytest.raises(ValueError):
        handler.www_authenticate_realm = realm
    assert handler.get_authenticate_header() == 'Basic realm="Authentication Required"'


def test_a_bad_realm_set_on_the_class_never_reaches_a_header(recording_app, monkeypatch):
    monkeypatch.setattr(HTTPBasicAuth, "www_authenticate_realm", "x\r\nSet-Cookie: a=1")
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), prefixes="/scheduler",
                                authenticate=lambda auth: True)
    answer = call(middleware, "/scheduler")
    assert answer.status == 500
    assert all("Set-Cookie" not in value for _, value in answer.header_list)


def test_class_default_realm():
    assert HTTPBasicAuth.www_authenticate_realm == "Authentication Required"


class HeaderEcho(HTTPAuth):
    """Reads the current request through authmw.request, as the seed's custom class does."""

    def get_authorization(self):
        value = request.headers.get("X-Who")
        return Authorization("who", name=value) if value else None

    def get_authenticate_header(self):
        return 'Who realm="test"'


def test_request_is_context_local_across_threads():
    results: dict[str, object] = {}
    barrier = threading.Barrier(8)

    def callback(auth):
        barrier.wait(timeout=5)  # all eight threads are inside authentication at once
        return auth["name"]

    def app(environ, start_response):
        results[environ["authmw.user"]] = environ["PATH_INFO"]
        start_response("200 OK", [])
        return [b""]

    middleware = AuthMiddleware(app, auth=HeaderEcho(), authenticate=callback)
    threads = [
        threading.Thread(target=call, args=(middleware, f"/path-{i}"),
                         kwargs={"HTTP_X_WHO": f"user-{i}"})
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {f"user-{i}": f"/path-{i}" for i in range(8)}


def test_request_outside_authentication_raises():
    with pytest.raises(RuntimeError):
        request.headers
    assert repr(request) == "<authmw.request unbound>"


def test_an_async_callback_is_refused_when_registered(recording_app):
    async def authenticate(auth):
        return False

    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth())
    with pytest.raises(TypeError, match="not async"):
        middleware.authenticate(authenticate)
    with pytest.raises(TypeError, match="not async"):
        AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=authenticate)


async def _refuse(auth):
    return False


def _refuse_lazily(auth):
    yield False


@pytest.mark.parametrize(
    "callback",
    [lambda auth: _refuse(auth), _refuse_lazily],
    ids=["returns-a-coroutine", "is-a-generator-function"],
)
def test_a_callback_result_that_is_not_a_verdict_fails_closed(recording_app, callback):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=callback)
    answer = call(middleware, "/", authorization=basic("anyone", "wrong"))
    assert answer.status == 500
    assert recording_app.seen == []


@pytest.mark.parametrize(
    "password",
    ["Zq", "se\\cret-Zq", "pässwörd-Zq", "hunter2-Zq"],
    ids=["two-characters", "backslash", "non-ascii", "plain"],
)
def test_no_form_of_the_password_reaches_the_log(recording_app, caplog, password):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth())

    @middleware.authenticate
    def authenticate(auth):
        secret = auth["password"]
        raise KeyError(secret.encode())  # the bytes form, escaped in its repr

    with caplog.at_level(logging.DEBUG):
        assert call(middleware, "/", authorization=basic("admin", password)).status == 500
    assert "KeyError" in caplog.text
    assert "Zq" not in caplog.text
    assert basic("admin", password).split()[1] not in caplog.text


def _forms_of(secret):
    raw = secret.encode()
    return {
        "plain": secret, "percent-encoded": quote(secret, safe=""), "plus-encoded":
        quote_plus(secret), "base64": base64.b64encode(raw).decode(), "urlsafe-base64":
        base64.urlsafe_b64encode(raw).decode().rstrip("="), "bytes-repr": repr(raw),
        "json": json.dumps(secret), "repr": repr(secret),
    }


@pytest.mark.parametrize("form", list(_forms_of("x")), ids=list(_forms_of("x")))
@pytest.mark.parametrize(
    ("handler", "credentials", "secret"),
    [(HTTPBasicAuth(), {"authorization": basic("admin", "pä ss/wörd+1")}, "pä ss/wörd+1"),
     (HTTPTokenAuth(), {"authorization": "Bearer tok.en-9_Zq~"}, "tok.en-9_Zq~"),
     (APIKeyAuth(), {"HTTP_X_API_KEY": "key-7/Zq+9"}, "key-7/Zq+9")],
    ids=["basic-password", "bearer-token", "api-key"],
)
def test_a_raising_callback_logs_its_message_with_every_credential_redacted(
        recording_app, caplog, handler, credentials, secret, form):
    shown = _forms_of(secret)[form]

    def authenticate(auth):
        raise RuntimeError(f"user database unreachable (query for {shown})")

    middleware = AuthMiddleware(recording_app, auth=handler, authenticate=authenticate)
    with caplog.at_level(logging.ERROR, logger="authmw"):
        assert call(middleware, "/", **credentials).status == 500
    assert "builtins.RuntimeError: user database unreachable (query for " in caplog.text
    assert "[redacted]" in caplog.text
    for text in (*_forms_of(secret).values(), *credentials.values()):
        assert text not in caplog.text
    assert secret[2:-2] not in caplog.text


def test_the_raw_authorization_header_and_its_causes_are_redacted(recording_app, caplog):
    header = basic("admin", "s3cret-Zq")

    def authenticate(auth):
        try:
            raise ConnectionError(f"pool exhausted while sending {header}")
        except ConnectionError as exc:
            raise LookupError("users backend failed") from exc

    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=authenticate)
    with caplog.at_level(logging.ERROR, logger="authmw"):
        assert call(middleware, "/", authorization=header).status == 500
    assert "builtins.LookupError: users backend failed" in caplog.text
    assert "caused by builtins.ConnectionError: pool exhausted while sending Basic [redacted]" \
        in caplog.text
    assert header.split()[1] not in caplog.text and "s3cret-Zq" not in caplog.text


def test_an_exception_whose_message_cannot_be_read_is_still_logged(recording_app, caplog):
    class Unprintable(Exception):
        def __str__(self):
            raise ValueError("no")

    def authenticate(auth):
        raise Unprintable

    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=authenticate)
    with caplog.at_level(logging.ERROR, logger="authmw"):
        assert call(middleware, "/", authorization=basic("a", "b")).status == 500
    assert "Unprintable: (message withheld: it could not be read)" in caplog.text


LONG_PASSWORD = "Tr0ub4dor&3!x y#z" + "".join(chr(0x41 + index % 26) for index in range(263))

MANGLINGS = {
    "cut-short-by-int": lambda pw: int(pw),
    "half-percent-encoded-url": lambda pw: _raise(f"url: /check?p={quote(pw, safe='&!#')}"),
    "hex": lambda pw: _raise(pw.encode().hex()),
    "upper-case": lambda pw: _raise(pw.upper()),
    "json-not-ascii": lambda pw: _raise(json.dumps(pw, ensure_ascii=False)),
    "latin-1-bytes": lambda pw: _raise(repr(pw.encode("latin-1"))),
    "in-the-middle-of-a-word": lambda pw: _raise("prefix" + pw[3:40] + "suffix"),
    "base64-after-a-domain": lambda pw: _raise(
        "Basic " + base64.b64encode(f"CORP\\alice:{pw}".encode()).decode()),
    "base64-one-byte-in": lambda pw: _raise(base64.b64encode(b"x" + pw.encode()).decode()),
    "hex-with-spaces": lambda pw: _raise(pw.encode().hex(" ")),
}


def _raise(message):
    raise RuntimeError(message)


@pytest.mark.parametrize("mangle", MANGLINGS.values(), ids=MANGLINGS.keys())
def test_a_credential_mangled_by_the_callback_is_still_kept_out_of_the_log(
        recording_app, caplog, mangle):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(),
                                authenticate=lambda auth: mangle(auth["password"]))
    with caplog.at_level(logging.ERROR, logger="authmw"):
        assert call(middleware, "/", authorization=basic("admin", LONG_PASSWORD)).status == 500
    logged = caplog.text.lower()
    for start in range(len(LONG_PASSWORD) - 6):
        assert LONG_PASSWORD[start:start + 7].lower() not in logged, start
    assert "builtins." in caplog.text


def test_a_custom_header_the_handler_read_is_kept_out_of_the_log(recording_app, caplog):
    class SignatureAuth(HTTPAuth):
        def get_authorization(self):
            return Authorization("signature", value=int(request.headers["X-Signature"], 16))

        def get_authenticate_header(self):
            return "Signature"

    middleware = AuthMiddleware(recording_app, auth=SignatureAuth(), authenticate=bool)
    with caplog.at_level(logging.ERROR, logger="authmw"):
        assert call(middleware, "/", HTTP_X_SIGNATURE="deadbeefZZ9f00d5eed").status == 500
    assert "deadbeef" not in caplog.text and "ZZ9f00d5eed" not in caplog.text
    assert "builtins.ValueError: invalid literal for int() with base 16: '[redacted]'" \
        in caplog.text


def test_a_request_with_more_credentials_than_can_be_looked_for_has_its_message_withheld(
        recording_app, caplog):
    def authenticate(auth):
        raise KeyError(auth["username"])

    headers = {f"HTTP_X_KEY_{index}": " ".join(f"{index}-{word}" for word in range(1600))
               for index in range(90)}
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=authenticate)
    with caplog.at_level(logging.ERROR, logger="authmw"):
        assert call(middleware, "/", authorization=basic("nobody", "pw"), **headers).status == 500
    assert "builtins.KeyError: (message withheld: too many credentials to look for)" \
        in caplog.text


class _RaisingBool(Exception):
    def __bool__(self):
        raise RuntimeError("no truth")


class _HostileStr(str):
    def __len__(self):
        raise RuntimeError("no length")


class _HostileMessage(Exception):
    def __str__(self):
        return _HostileStr("db down")


def _raise_with_hostile_cause(auth):
    raise LookupError("lookup failed") from _RaisingBool()


@pytest.mark.parametrize(
    ("callback", "extra", "logged"),
    [(_raise_with_hostile_cause, {}, "caused by tests.test_middleware._RaisingBool"),
     (lambda auth: _raise_hostile(), {}, "tests.test_middleware._HostileMessage: db down"),
     (lambda auth: _raise("db down"), {1: "not a str key"}, "builtins.RuntimeError: db down")],
    ids=["cause-whose-truth-raises", "message-whose-length-raises", "environ-key-not-a-str"],
)
def test_hostile_exceptions_are_still_a_bare_500_with_a_log_record(recording_app, caplog,
                                                                    callback, extra, logged):
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=callback)

    def server(environ, start_response):  # a server may add keys of any kind
        return middleware({**environ, **extra}, start_response)

    with caplog.at_level(logging.ERROR, logger="authmw"):
        answer = call(server, "/", authorization=basic("a", "s3cret-pw"))
    assert (answer.status, answer.body) == (500, b"Internal Server Error")
    assert logged in caplog.text


def _raise_hostile():
    raise _HostileMessage


def test_redacting_a_repetitive_credential_costs_little(recording_app, caplog):
    def authenticate(auth):
        raise KeyError(auth["username"])

    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=authenticate)
    started = time.thread_time()
    with caplog.at_level(logging.ERROR, logger="authmw"):
        assert call(middleware, "/", authorization=basic("a" * 3000, "p"),
                    HTTP_X_PAD="a" * 1000).status == 500
    assert time.thread_time() - started < 2  # 9 s of CPU and 1.3 GB before (quadratic)
    assert "a" * 7 not in caplog.text
