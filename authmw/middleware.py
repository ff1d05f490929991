"""WSGI middleware that authenticates requests under protected path prefixes.

It answers ``401`` with a ``WWW-Authenticate`` challenge *before* the wrapped app runs, so
the app never sees a request without valid credentials. It protects against:

- path tricks that make the app route a request somewhere the middleware did not check
  (``//scheduler``, ``/%2Fscheduler``, ``/x/../scheduler``, ``/Scheduler``, ``;params``...):
  a request must satisfy the rule of every reading of its path, and a path whose readings
  fall under rules with different handlers, or that has too many readings, is a 400;
- method spellings (``delete``) that the app upper-cases after the roles were looked up;
- malformed or hostile Authorization headers (parsed strictly, never raising);
- a raising or missing callback, or a broken handler: the request is refused, never let through;
- a forged inbound ``REMOTE_USER``: it is removed on protected paths;
- password guessing, with a :class:`~authmw.throttle.Throttle`.

Usage::

    app = AuthMiddleware(app, auth=HTTPBasicAuth(), prefixes=["/scheduler"])
    app.authenticate(lambda auth: auth["username"] == "admin" and auth["password"] == "s")
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from .auth import (
    AuthenticateCallback,
    Authorization,
    HTTPAuth,
    check_callback,
    quote_header_value,
)
from .context import current_environ_var
from .paths import PrefixMatcher, fold_case, readings
from .redaction import describe_error, request_secrets
from .rules import Rule
from .throttle import Throttle

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("authmw")
audit_logger = logging.getLogger("authmw.audit")

#: ``on_deny(environ, start_response, status, headers)``: answers a refused request.
DenyPolicy = Callable[["WSGIEnvironment", "StartResponse", str, list[tuple[str, str]]],
                      Iterable[bytes]]

_BODIES = {
    "400 Bad Request": b"Bad Request",
    "401 Unauthorized": b"Access Denied",
    "403 Forbidden": b"Forbidden",
    "429 Too Many Requests": b"Too Many Requests",
    "500 Internal Server Error": b"Internal Server Error",
}
#: Headers that make a method-override middleware turn an OPTIONS into something else.
_UNSEEN: Any = object()
_METHOD_OVERRIDES = ("HTTP_X_HTTP_METHOD_OVERRIDE", "HTTP_X_HTTP_METHOD", "HTTP_X_METHOD_OVERRIDE")
#: Query parameters that method-override middleware reads (Rails, Laravel, Symfony...).
_METHOD_OVERRIDE_PARAMETERS = ("_method", "x-http-method-override", "x-http-method",
                               "x-method-override")
#: Percent-decodings of a query string looked through before giving up (fail closed), and
#: the longest query string looked through at all (a preflight's is short).
_MAX_QUERY_DECODINGS = 8
_MAX_PREFLIGHT_QUERY = 8192
_TAB_OR_NEWLINE_RE = re.compile(r"[\t\r\n]")


def plain_denial(environ: WSGIEnvironment, start_response: StartResponse, status: str,
                 headers: list[tuple[str, str]]) -> Iterable[bytes]:
    """The default refusal: the seed's ``text/plain`` body (``Access Denied`` for a 401)."""
    body = _BODIES.get(status, status.encode("latin-1"))
    start_response(status, [*headers, ("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
    return [body]


def request_method(environ: WSGIEnvironment) -> str:
    """The method as werkzeug, Flask, Django and WebOb read it: upper-cased."""
    return str(environ.get("REQUEST_METHOD", "GET")).upper()


def query_overrides_method(query: str) -> bool:
    """Could a method-override middleware read a method from this query string?

    Every percent-decoding is looked at (``%5Fmethod``, ``%255Fmethod``), case-folded, with
    and without tabs and newlines (which URL parsers drop); True past the decoding bound or
    past :data:`_MAX_PREFLIGHT_QUERY` characters.
    """
    if len(query) > _MAX_PREFLIGHT_QUERY:
        return True
    for _ in range(_MAX_QUERY_DECODINGS):
        folded = fold_case(query)
        for text in (folded, _TAB_OR_NEWLINE_RE.sub("", folded)):
            if any(name in text for name in _METHOD_OVERRIDE_PARAMETERS):
                return True
        decoded = unquote_plus(query, errors="replace")
        if decoded == query:
            return False
        query = decoded
    return True


def same_callable(first: object, second: object) -> bool:
    """The same callable: one object, or ``obj.method`` read twice (a new bound method each
    time), compared without calling anyone's ``__eq__``."""
    if first is second:
        return True
    return (inspect.ismethod(first) and inspect.ismethod(second)
            and first.__self__ is second.__self__ and first.__func__ is second.__func__)


def _check_public_path(path: object) -> str:
    if not isinstance(path, str) or not path.startswith("/") or readings(path) != {path}:
        raise ValueError(f"public path {path!r} must be a str starting with '/' that has no "
                         "other reading (no % \\ ; ? # //, dot segments or control characters)")
    return path


def _check_handler(auth: object) -> None:
    for method in ("get_authorization", "get_authenticate_header"):
        implementation = getattr(type(auth), method, None)
        if not callable(implementation) or implementation is getattr(HTTPAuth, method):
            raise TypeError(f"auth handler {type(auth).__name__} must implement {method}()")


class _Refusal:
    """How to answer a refused request, and why (for the audit log)."""

    __slots__ = ("headers", "reason", "status", "username")

    def __init__(self, status: str, reason: str, headers: list[tuple[str, str]],
                 username: object = None) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.username = username


class AuthMiddleware:
    """Require authentication for every request whose path falls under ``prefixes``.

    :param app: the WSGI application to protect.
    :param auth: an :class:`~authmw.HTTPAuth` handler; None disables authentication
        (development only: a warning is logged).
    :param prefixes: path prefixes to protect, relative to where the middleware is mounted
        (``PATH_INFO``); the default ``("/",)`` protects everything.
    :param authenticate: the callback that validates an :class:`~authmw.Authorization`;
        it can also be registered with ``@middleware.authenticate``.
    :param rules: :class:`~authmw.Rule` objects for prefixes with their own handler,
        callback or roles (each reading of a path selects its longest matching prefix, and
        the request must satisfy the rule of every reading).
    :param public: paths served without authentication, matched exactly as sent (no other
        spelling of them is public); each must be plain, without another reading.
    :param cors_preflight: let CORS preflights (``OPTIONS`` with ``Origin`` and
        ``Access-Control-Request-Method``, no method override, no body) through unchecked.
    :param throttle: a :class:`~authmw.Throttle` for failed attempts (429 past it).
    :param on_deny: answers refused requests (default :func:`plain_denial`).
    """

    def __init__(
        self,
        app: WSGIApplication,
        auth: HTTPAuth | None = None,
        prefixes: Iterable[str] | str = ("/",),
        authenticate: AuthenticateCallback | None = None,
        *,
        rules: Iterable[Rule] = (),
        public: Iterable[str] = (),
        cors_preflight: bool = False,
        throttle: Throttle | None = None,
        on_deny: DenyPolicy = plain_denial,
    ) -> None:
        self.app = app
        self.auth = auth
        self.authenticate_callback: AuthenticateCallback | None = None
        if authenticate is not None:
            self.authenticate(authenticate)
        prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
        rules = list(rules)
        for rule in rules:
            if rule.auth is not None:
                _check_handler(rule.auth)
            if rule.authenticate is not None:
                check_callback(rule.authenticate)
        self.rules = {rule.prefix: rule for rule in [Rule(prefix) for prefix in prefixes]}
        explicit: set[str] = set()
        for rule in rules:
            if rule.prefix in explicit:
                raise ValueError(f"two rules for the prefix {rule.prefix!r}")
            explicit.add(rule.prefix)
            self.rules[rule.prefix] = rule
        self.matcher = PrefixMatcher(self.rules)
        #: prefix -> the rule of the longest shorter prefix enclosing it (roles inherit).
        self.enclosing = {prefix: self._enclosing_rule(prefix) for prefix in self.rules}
        self._roles_anywhere = any(rule.roles is not None for rule in self.rules.values())
        #: (callback, the throttle's scope for its usernames): the shortest prefix of the rules
        #: that have it as their own callback (the same in every process of one config).
        self._throttle_scopes: list[tuple[AuthenticateCallback, str]] = []
        for rule in sorted(self.rules.values(), key=lambda rule: len(rule.prefix)):
            if (rule.authenticate is not None and not same_callable(rule.authenticate,
                                                                    authenticate)
                    and self._throttle_scope(rule.authenticate) == ""):
                self._throttle_scopes.append((rule.authenticate, "rule:" + rule.prefix))
        self._memo = self.matcher.memo
        self.public = frozenset(map(_check_public_path, public))
        self.cors_preflight = cors_preflight
        self.throttle = throttle
        self.on_deny = on_deny
        self._sendable_challenges: set[object] = set()  # challenge values already checked
        self._warned_no_callback = False
        unguarded = [prefix for prefix, rule in self.rules.items() if rule.auth is None]
        if auth is None and unguarded:
            logger.warning("AuthMiddleware built with auth=None: %s is served WITHOUT "
                           "authentication", ", ".join(sorted(unguarded)))

    def _enclosing_rule(self, prefix: str) -> Rule | None:
        for other in self.matcher.prefixes:  # longest first
            if other != prefix and (other == "/" or prefix.startswith(other + "/")):
                return self.rules[other]
        return None

    def _throttle_scope(self, callback: AuthenticateCallback | None) -> str:
        for known, scope in self._throttle_scopes:
            if same_callable(known, callback):
                return scope
        return ""

    def allows(self, rule: Rule, method: str, user: object) -> bool:
        """Does ``rule`` let ``user`` use ``method``?

        A method the rule does not list goes up to the enclosing rules that check the same
        users (the same callback); where one of them has ``roles`` but none lists the
        method, it is refused; where none has ``roles``, authentication is enough.
        """
        callback = self._callback_of(rule)
        checked: Rule | None = rule
        has_roles = False
        while checked is not None and same_callable(self._callback_of(checked), callback):
            if checked.roles is not None:
                has_roles = True
                required = checked.required_roles(method)
                if required is not None:
                    return not required.isdisjoint(checked.get_roles(user))
            checked = self.enclosing[checked.prefix]
        return not has_roles

    def _callback_of(self, rule: Rule) -> AuthenticateCallback | None:
        return rule.authenticate or self.authenticate_callback

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The normalised protected prefixes, longest first."""
        return self.matcher.prefixes

    @property
    def auth(self) -> HTTPAuth | None:
        """The handler in use; it may be replaced at any time (None: no authentication)."""
        return self._auth

    @auth.setter
    def auth(self, auth: HTTPAuth | None) -> None:
        if auth is not None:
            _check_handler(auth)
        self._auth = auth

    def authenticate(self, callback: AuthenticateCallback) -> AuthenticateCallback:
        """Register ``callback(authorization)``; truthy means valid. Usable as a decorator."""
        check_callback(callback)
        self.authenticate_callback = callback
        return callback

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        selected = self._memo.get(path, _UNSEEN)  # the matcher's memo, read without a call
        if selected is _UNSEEN:
            selected = self.matcher.select(path)
        if not selected:
            if selected is not None:  # no reading is protected
                return self.app(environ, start_response)
            return self._refuse(environ, start_response, _Refusal(
                "400 Bad Request", "ambiguous path (too many readings)", []))
        rule = self.rules[selected[0]]
        auth = rule.auth or self._auth
        callback = self._callback_of(rule)
        others: tuple[Rule, ...] = ()
        if len(selected) > 1:  # readings under other rules: one verdict must hold for all
            others = tuple(self.rules[prefix] for prefix in selected[1:])
            if any((other.auth or self._auth) is not auth
                   or not same_callable(self._callback_of(other), callback)
                   for other in others):
                return self._refuse(environ, start_response, _Refusal(
                    "400 Bad Request", "ambiguous path (readings under different handlers)", []))
        if path in self.public or (self.cors_preflight and not others
                                   and self._is_preflight(environ)):
            return self.app(environ, start_response)
        environ.pop("REMOTE_USER", None)  # only this middleware may say who the user is
        if auth is not None:
            token = current_environ_var.set(environ)
            try:
                refusal = self._authenticate(rule, others, auth, callback, environ)
            finally:
                current_environ_var.reset(token)
            if refusal is not None:
                return self._refuse(environ, start_response, refusal)
        return self.app(environ, start_response)

    def _refuse(self, environ: WSGIEnvironment, start_response: StartResponse,
                refusal: _Refusal) -> Iterable[bytes]:
        self._audit(environ, refusal)
        environ["authmw.denied"] = refusal.reason  # why, for on_deny (metrics count it)
        return self.on_deny(environ, start_response, refusal.status, refusal.headers)

    @staticmethod
    def _is_preflight(environ: WSGIEnvironment) -> bool:
        return (request_method(environ) == "OPTIONS" and "HTTP_ORIGIN" in environ
                and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
                and not any(header in environ for header in _METHOD_OVERRIDES)
                and not query_overrides_method(environ.get("QUERY_STRING", ""))
                and environ.get("CONTENT_LENGTH", "") in ("", "0")
                and "HTTP_TRANSFER_ENCODING" not in environ)

    def _authenticate(self, rule: Rule, others: tuple[Rule, ...], auth: HTTPAuth,
                      callback: AuthenticateCallback | None,
                      environ: WSGIEnvironment) -> _Refusal | None:
        """Publish the result in ``environ`` and return None, or return the refusal.

        ``rule`` and ``others`` are the rules the path's readings select: each must allow it.
        """
        authorization = None
        try:
            authorization = auth.get_authorization()
            username = authorization.get("username") if authorization is not None else None
            throttle_keys: list[str] = []
            scope = self._throttle_scope(callback) if self.throttle is not None else ""
            if self.throttle is not None:
                throttle_keys = self.throttle.keys(environ.get("REMOTE_ADDR"), username, scope)
                wait = self.throttle.retry_after(throttle_keys)
                if wait:
                    return _Refusal("429 Too Many Requests", "throttled",
                                    [("Retry-After", str(wait))], username)
            verdict = self._verdict(callback, authorization)
            if not verdict:
                if self.throttle is not None and authorization is not None:
                    self.throttle.failed(throttle_keys)  # a guess: credentials were sent
                reason = ("no credentials" if authorization is None
                          and "HTTP_AUTHORIZATION" not in environ else "credentials refused")
                return _Refusal("401 Unauthorized", reason, self._challenges(auth), username)
            if self.throttle is not None:
                self.throttle.succeeded(environ.get("REMOTE_ADDR"), username, scope)
            if self._roles_anywhere:
                method = request_method(environ)
                for selected in (rule, *others):
                    if not self.allows(selected, method, verdict):
                        return _Refusal("403 Forbidden", "role not allowed", [], username)
        except Exception as exc:  # noqa: BLE001 - fail closed on anything a plug-in raises
            logger.error("authentication failed with an error; request %s %r refused with 500"
                         "\n%s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                         describe_error(exc, lambda: request_secrets(environ, authorization)))
            return _Refusal("500 Internal Server Error", "error", [])
        environ["authmw.authorization"] = authorization
        if isinstance(username, str):
            environ["REMOTE_USER"] = username
        if verdict is not True:
            environ["authmw.user"] = verdict
        return None

    def _challenges(self, auth: HTTPAuth) -> list[tuple[str, str]]:
        values = auth.get_authenticate_headers()
        for value in values:
            if value not in self._sendable_challenges:
                if not isinstance(value, str) or not value:
                    raise TypeError(f"{type(auth).__name__} gave no WWW-Authenticate value")
                quote_header_value(value, "WWW-Authenticate")  # refuses CR, LF, other controls
                if len(self._sendable_challenges) < 64:
                    self._sendable_challenges.add(value)
        return [("WWW-Authenticate", value) for value in values]

    def _verdict(self, callback: AuthenticateCallback | None,
                 authorization: Authorization | None) -> Any:
        if authorization is None:
            return False
        if callback is None:
            if not self._warned_no_callback:
                self._warned_no_callback = True
                logger.warning("AuthMiddleware has an auth handler but no authenticate "
                               "callback: every protected request is refused")
            return False
        verdict = callback(authorization)
        if verdict is True or verdict is False:
            return verdict
        if inspect.isawaitable(verdict) or inspect.isgenerator(verdict):
            close = getattr(verdict, "close", None)
            if close is not None:
                close()  # no "never awaited" warning; the request is refused below
            raise TypeError("the authenticate callback returned an awaitable or a generator")
        return verdict

    @staticmethod
    def _audit(environ: WSGIEnvironment, refusal: _Refusal) -> None:
        """One record per refusal: who, what, why; never a password or Authorization value."""
        if audit_logger.isEnabledFor(logging.INFO):
            username = refusal.username
            audit_logger.info("denied %s %s %r: %s (user %r)", environ.get("REMOTE_ADDR", "-"),
                              environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                              refusal.reason, username[:32] if isinstance(username, str) else None)
