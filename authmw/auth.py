"""Authentication handlers: they read credentials from the current request.

A handler turns the request's credentials into an :class:`Authorization` (or ``None``) and
names the challenge a 401 carries. Deciding whether the credentials are *valid* is the job of
the ``authenticate`` callback registered on the middleware::

    auth = HTTPBasicAuth(realm="Scheduler API")
    app = AuthMiddleware(app, auth=auth, prefixes=["/scheduler"])

Parsing is strict and never raises: a header that is too long, not ASCII, carries control
characters, was joined from duplicates, or is not exactly well-formed gives ``None``, which
the middleware answers with the same 401 as missing or wrong credentials.
"""

from __future__ import annotations

import binascii
import hmac
import inspect
import re
from collections.abc import Callable
from typing import Any

from .context import current_environ

#: Longest Authorization value accepted; gunicorn's own limit for a header field is 8190.
MAX_HEADER_LENGTH = 8192

# RFC 9110 token (the scheme) then 1*SP then one run of visible ASCII (token68 or one
# auth-param). No comma: duplicate headers joined by a server would smuggle a second value.
_AUTHORIZATION_RE = re.compile(r"[ \t]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+) +([!-+\--~]+)[ \t]*")
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_BASE64_RE = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# C0, DEL and C1 (U+0080-U+009F, which latin-1 and UTF-8 can both carry): RFC 7617 allows no
# control character in a user-id or password.
_CREDENTIAL_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_API_KEY_RE = re.compile(r"[!-+\--~]+")


class Authorization(dict):  # type: ignore[type-arg]
    """The credentials a handler found: a dict of scheme-specific fields plus ``auth_type``.

    >>> Authorization("basic", username="admin", password="secret")["username"]
    'admin'
    """

    def __init__(self, auth_type: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.auth_type = auth_type

    def __repr__(self) -> str:
        # Never show secrets in logs or tracebacks: only the field names.
        return f"<Authorization {self.auth_type!r} fields={sorted(self)!r}>"


class HTTPAuth:
    """A base class from which all authentication handlers inherit.

    Subclasses implement :meth:`get_authorization` (read the current request through
    :data:`authmw.request` or :func:`get_authorization_header`) and
    :meth:`get_authenticate_header` (the challenge for a 401).
    """

    def get_authorization(self) -> Authorization | None:
        """Return the credentials of the current request, or None if absent or invalid."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_authorization()")

    def get_authenticate_header(self) -> str:
        """Return the value of the WWW-Authenticate header of a 401 response."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement get_authenticate_header()"
        )

    def get_authenticate_headers(self) -> list[str]:
        """The WWW-Authenticate values of a 401, one header each (one challenge by default)."""
        return [self.get_authenticate_header()]


#: ``authenticate(authorization)``: truthy (True, or the user) when the credentials are valid.
AuthenticateCallback = Callable[[Authorization], Any]


def check_callback(callback: object) -> None:
    """TypeError unless ``callback`` can be an ``authenticate`` callback."""
    if not callable(callback):
        raise TypeError("the authenticate callback must be callable")
    if inspect.iscoroutinefunction(callback) or inspect.isasyncgenfunction(callback):
        raise TypeError("the authenticate callback must be a plain function, not async: "
                        "WSGI cannot await it, and an un-awaited coroutine is truthy")


def quote_header_value(value: str, what: str = "value") -> str:
    """Quote ``value`` as an RFC 9110 quoted-string; ValueError if it cannot be sent safely."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, not {type(value).__name__}")
    if _CONTROL_RE.search(value) or max(value, default="\0") > "\xff":
        raise ValueError(f"{what} must not contain control characters or characters above U+00FF")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class HTTPBasicAuth(HTTPAuth):
    """HTTP Basic authentication (RFC 7617).

    ``www_authenticate_realm`` may be set on the class, on an instance, or with ``realm=``; a
    realm with control characters is refused with ValueError when it is set.
    """

    www_authenticate_realm: str = "Authentication Required"

    def __init__(self, realm: str | None = None) -> None:
        if realm is not None:
            self.www_authenticate_realm = realm

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "www_authenticate_realm":
            quote_header_value(value, "realm")
        super().__setattr__(name, value)

    def get_authorization(self) -> Authorization | None:
        """Return ``Authorization("basic", username=..., password=...)`` or None."""
        value = current_environ().get("HTTP_AUTHORIZATION")
        credentials = _recent_credentials.get(value) if isinstance(value, str) else None
        if credentials is None:
            credentials = _exact_basic_credentials(value)
            if isinstance(value, str) and credentials is not None and (
                    len(value) <= _RECENT_CREDENTIALS_MAX_LENGTH):
                if len(_recent_credentials) >= _RECENT_CREDENTIALS_SIZE:
                    _recent_credentials.clear()
                _recent_credentials[value] = credentials
        if credentials is None:  # not the one-space canonical form: the general parser
            header = get_authorization_header()
            if header is None or header[0] != "basic":
                return None
            credentials = decode_basic_credentials(header[1])
            if credentials is None:
                return None
        authorization = Authorization.__new__(Authorization)  # 3x cheaper than **kwargs
        authorization.auth_type = "basic"
        authorization["username"], authorization["password"] = credentials
        return authorization

    def get_authenticate_header(self) -> str:
        """Return ``Basic realm="<realm>"``."""
        realm = self.www_authenticate_realm
        cached = self.__dict__.get("_challenge")
        if cached is None or cached[0] is not realm:  # the realm may be changed at any time
            cached = (realm, "Basic realm=" + quote_header_value(realm, "realm"))
            self.__dict__["_challenge"] = cached
        return cached[1]


class HTTPTokenAuth(HTTPAuth):
    """Bearer tokens (RFC 6750): ``Authorization: Bearer <token68>``.

    The challenge carries ``error="invalid_token"`` only when a token was presented, as
    RFC 6750 asks; tokens over ``max_length`` or outside the token68 alphabet are refused.
    """

    def __init__(self, scheme: str = "Bearer", realm: str = "Authentication Required",
                 max_length: int = 4096) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9\-]*", scheme):
            raise ValueError(f"scheme {scheme!r} must be a plain token such as 'Bearer'")
        quote_header_value(realm, "realm")
        self.scheme = scheme
        self.realm = realm
        self.max_length = max_length

    def get_authorization(self) -> Authorization | None:
        """Return ``Authorization("bearer", token=...)`` or None."""
        header = get_authorization_header()
        if header is None or header[0] != self.scheme.lower():
            return None
        token = header[1]
        if len(token) > self.max_length or _TOKEN68_RE.fullmatch(token.decode()) is None:
            return None
        return Authorization(self.scheme.lower(), token=token.decode())

    def get_authenticate_header(self) -> str:
        challenge = f"{self.scheme} realm={quote_header_value(self.realm, 'realm')}"
        value = current_environ().get("HTTP_AUTHORIZATION")
        presented = isinstance(value, str) and value.strip().lower().startswith(
            self.scheme.lower() + " ")
        return challenge + ', error="invalid_token"' if presented else challenge


class APIKeyAuth(HTTPAuth):
    """An API key in a header (``X-API-Key`` by default): the seed's custom class, built in.

    The key must be visible ASCII without commas (duplicate headers joined by the server are
    refused), at most ``max_length`` characters. Validate it in the ``authenticate`` callback
    (``Authorization("apikey", key=...)``), e.g. with :func:`compare_secrets`.
    """

    def __init__(self, header: str = "X-API-Key", realm: str = "Authentication Required",
                 max_length: int = 4096) -> None:
        if not re.fullmatch(r"[A-Za-z0-9\-]+", header):
            raise ValueError(f"header {header!r} must be a plain header name")
        quote_header_value(realm, "realm")
        self.header = header
        self.realm = realm
        self.max_length = max_length
        self._environ_key = "HTTP_" + header.upper().replace("-", "_")

    def get_authorization(self) -> Authorization | None:
        value = current_environ().get(self._environ_key)
        if (not isinstance(value, str) or len(value) > self.max_length
                or _API_KEY_RE.fullmatch(value) is None):
            return None
        return Authorization("apikey", key=value)

    def get_authenticate_header(self) -> str:
        return f"API-Key realm={quote_header_value(self.realm, 'realm')}"


class MultiAuth(HTTPAuth):
    """Several handlers at once: the first whose credentials are present decides.

    A 401 carries one ``WWW-Authenticate`` header per handler (``get_authenticate_headers``).
    """

    def __init__(self, *handlers: HTTPAuth) -> None:
        if not handlers:
            raise ValueError("MultiAuth needs at least one handler")
        self.handlers = handlers

    def get_authorization(self) -> Authorization | None:
        for handler in self.handlers:
            authorization = handler.get_authorization()
            if authorization is not None:
                return authorization
        return None

    def get_authenticate_header(self) -> str:
        return self.handlers[0].get_authenticate_header()

    def get_authenticate_headers(self) -> list[str]:
        return [handler.get_authenticate_header() for handler in self.handlers]


#: Exact header value -> its decoded credentials, for clients that send the same header on
#: every request. A pure function of the header, so remembering it changes no answer; it
#: holds nothing the header strings themselves do not, and the verdict is never remembered.
_recent_credentials: dict[str, tuple[str, str]] = {}
_RECENT_CREDENTIALS_SIZE = 256
#: Longer headers are decoded each time: 256 of them at most 128 KiB, not 256 times 8 KiB.
_RECENT_CREDENTIALS_MAX_LENGTH = 512


def _exact_basic_credentials(value: object) -> tuple[str, str] | None:
    """The common case fast: exactly ``Basic <canonical base64>``; None for anything else.

    Everything this accepts, :func:`get_authorization_header` and
    :func:`decode_basic_credentials` accept with the same result; the rest goes to them.
    """
    if (not isinstance(value, str) or len(value) > MAX_HEADER_LENGTH
            or value[:6] not in ("Basic ", "basic ")):
        return None
    encoded = value[6:]
    try:
        raw = binascii.a2b_base64(encoded, strict_mode=True)  # type: ignore[call-arg]
    except (binascii.Error, ValueError, TypeError):  # not ASCII; TypeError: Python 3.10
        return None
    if binascii.b2a_base64(raw, newline=False) != encoded.encode("ascii"):
        return None
    return _split_credentials(raw)


def _split_credentials(raw: bytes) -> tuple[str, str] | None:
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    username, colon, password = text.partition(":")
    if not colon or _CREDENTIAL_CONTROL_RE.search(text):
        return None
    return username, password


def decode_basic_credentials(encoded: bytes) -> tuple[str, str] | None:
    """Decode Basic credentials strictly: canonical base64, a colon, no control characters.

    UTF-8 is tried first (RFC 7617's ``charset="UTF-8"``), then latin-1 for old clients.
    """
    if _BASE64_RE.fullmatch(encoded) is None:
        return None
    raw = binascii.a2b_base64(encoded)  # cannot fail: the pattern admits only valid base64
    if binascii.b2a_base64(raw, newline=False) != encoded:  # non-zero padding bits
        return None
    return _split_credentials(raw)


def get_authorization_header() -> tuple[str, bytes] | None:
    """Return the current request's Authorization header as ``(scheme, credentials)``.

    The scheme is lower-cased, the credentials are bytes: ``("basic", b"dXNlcjpwYXNz")``.
    None when the header is missing or not exactly well-formed (see the module docstring).
    """
    value = current_environ().get("HTTP_AUTHORIZATION")
    if not isinstance(value, str) or len(value) > MAX_HEADER_LENGTH:
        return None
    match = _AUTHORIZATION_RE.fullmatch(value)
    if match is None:
        return None
    return match.group(1).lower(), match.group(2).encode("ascii")


def compare_secrets(given: str | bytes, expected: str | bytes) -> bool:
    """Compare two secrets in constant time; str is compared as UTF-8 bytes.

    ``hmac.compare_digest`` raises TypeError on non-ASCII str, so both sides become bytes.
    """
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogatepass")
    if isinstance(expected, str):
        expected = expected.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(given, expected)
