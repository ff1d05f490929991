"""get_authorization_header() and HTTPBasicAuth.get_authorization(): strict, never raising."""

from __future__ import annotations

import base64

import pytest

from authmw import Authorization, HTTPBasicAuth, compare_secrets, get_authorization_header
from authmw.context import current_environ_var

from .conftest import basic


def parse(value: str | None):
    environ = {} if value is None else {"HTTP_AUTHORIZATION": value}
    token = current_environ_var.set(environ)
    try:
        return get_authorization_header(), HTTPBasicAuth().get_authorization()
    finally:
        current_environ_var.reset(token)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Basic dXNlcjpwYXNz", ("basic", b"dXNlcjpwYXNz")),
        ("Bearer token123", ("bearer", b"token123")),
        ("bAsIc dXNlcjpwYXNz", ("basic", b"dXNlcjpwYXNz")),
        ("  Basic   dXNlcjpwYXNz  ", ("basic", b"dXNlcjpwYXNz")),
        ("Bearer abc.def-ghi_jkl~+/==", ("bearer", b"abc.def-ghi_jkl~+/==")),
        (None, None),
        ("", None),
        ("Basic", None),
        ("Basic ", None),
        ("dXNlcjpwYXNz", None),
        ("Basic dXNl cjpwYXNz", None),
        ("Basic dXNlcjpwYXNz, Basic YTpi", None),
        ("Basic dXNlcjpwYXNz\r\nX-Injected: 1", None),
        ("Basic dXNlcjpwYXNz\x00", None),
        ("Basic\tdXNlcjpwYXNz", None),
        ("Básic dXNlcjpwYXNz", None),
        ("Basic dXNlcjpwYXNz\xff", None),
        ("Basic " + "A" * 8200, None),
        ("Ba(sic dXNlcjpwYXNz", None),
    ],
    ids=[
        "basic",
        "bearer",
        "mixed-case-scheme",
        "surrounding-and-repeated-spaces",
        "token68-charset",
        "missing",
        "empty",
        "scheme-alone",
        "scheme-and-space",
        "credentials-without-scheme",
        "space-inside-credentials",
        "duplicate-headers-joined-by-comma",
        "crlf-injection",
        "nul-byte",
        "tab-separator",
        "non-ascii-scheme",
        "non-ascii-byte",
        "over-8-kib",
        "scheme-not-a-token",
    ],
)
def test_get_authorization_header(value, expected):
    assert parse(value)[0] == expected


def encoded(raw: bytes, scheme: str = "Basic") -> str:
    return f"{scheme} " + base64.b64encode(raw).decode("ascii")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (basic("admin", "secret"), ("admin", "secret")),
        (basic("admin", "a:b:c"), ("admin", "a:b:c")),
        (basic("admin", ""), ("admin", "")),
        (basic("", "secret"), ("", "secret")),
        (basic("jürgen", "pässwörd"), ("jürgen", "pässwörd")),
        (basic("jürgen", "pässwörd", "latin-1"), ("jürgen", "pässwörd")),
        (basic("用户", "密码🔑"), ("用户", "密码🔑")),
        (encoded(b"admin:secret", "basic"), ("admin", "secret")),
        (encoded(b"admin:secret", "BASIC"), ("admin", "secret")),
        (encoded(b"adminsecret"), None),
        (encoded(b""), None),
        (encoded(b"admin:sec\x00ret"), None),
        (encoded(b"adm\nin:secret"), None),
        (encoded(b"admin:secret\x7f"), None),
        (encoded("admin:pa\x9bss".encode()), None),
        (encoded(b"admin:pa\x9bss"), None),
        ("Basic YWRtaW46c2VjcmV0", ("admin", "secret")),
        ("Basic YWRtaW46c2VjcmV0=", None),
        ("Basic YWRtaW46c2VjcmV", None),
        ("Basic YWRtaW46c2Vjcm!0", None),
        ("Basic YWRta W46c2VjcmV0", None),
        ("Basic YWRtaW46c2VjcmV0==", None),
        ("Basic YQ==", None),
        ("Basic YWRtaW46cw==", ("admin", "s")),
        ("Basic YWRtaW46cx==", None),
        ("Basic YWRtaW46c2VjcmV0" + "=" * 4, None),
        ("Basic YWRtaW46c2Vj-mV0", None),
        ("BasicX YWRtaW46c2VjcmV0", None),
        ("Bearer YWRtaW46c2VjcmV0", None),
    ],
    ids=[
        "plain",
        "password-with-colons",
        "empty-password",
        "empty-username",
        "utf-8",
        "latin-1-fallback",
        "utf-8-outside-latin-1",
        "lowercase-scheme",
        "uppercase-scheme",
        "no-colon",
        "empty-credentials",
        "nul-in-password",
        "newline-in-username",
        "del-in-password",
        "utf-8-c1-control",
        "latin-1-c1-control",
        "canonical-seed-header",
        "excess-padding",
        "missing-padding",
        "character-outside-alphabet",
        "space-inside-base64",
        "double-excess-padding",
        "no-colon-padded",
        "one-char-password",
        "non-zero-padding-bits",
        "padding-block",
        "urlsafe-alphabet",
        "scheme-with-suffix",
        "other-scheme",
    ],
)
def test_basic_credentials(value, expected):
    authorization = parse(value)[1]
    if expected is None:
        assert authorization is None
    else:
        assert isinstance(authorization, Authorization)
        assert authorization.auth_type == "basic"
        assert (authorization["username"], authorization["password"]) == expected


def test_authorization_is_a_dict_with_auth_type():
    auth = Authorization("apikey", key="k1")
    assert auth == {"key": "k1"}
    assert auth.auth_type == "apikey"
    assert auth.get("username") is None


def test_authorization_repr_hides_values():
    assert "hunter2" not in repr(Authorization("basic", username="u", password="hunter2"))


def test_get_authorization_header_outside_a_request_raises():
    with pytest.raises(RuntimeError, match="only available"):
        get_authorization_header()


@pytest.mark.parametrize(
    ("given", "expected", "equal"),
    [
        ("secret", "secret", True),
        ("secret", "Secret", False),
        ("pässwörd", "pässwörd", True),
        ("pässwörd", "passwort", False),
        (b"bytes", "bytes", True),
        ("", "x", False),
    ],
    ids=["equal", "case-differs", "non-ascii-equal", "non-ascii-differs", "bytes-vs-str",
         "empty"],
)
def test_compare_secrets(given, expected, equal):
    assert compare_secrets(given, expected) is equal
