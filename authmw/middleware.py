"""WSGI middleware that authenticates requests under protected path prefixes.

It answers ``401`` with a ``WWW-Authenticate`` challenge *before* the wrapped app runs, so
the app never sees a request without valid credentials. It protects against:

- path tricks that make the app route a request somewhere the middleware did not check
  (``//scheduler``, ``/%2Fscheduler``, ``/x/../scheduler``, ``/Scheduler``, ``;params``...);
- malformed or hostile Authorization headers (parsed strictly, never raising);
- a raising or missing callback, or a broken handler: the request is refused, never let through;
- a forged inbound ``REMOTE_USER``: it is removed on protected paths.

Usage::

    app = AuthMiddleware(app, auth=HTTPBasicAuth(), prefixes=["/scheduler"])
    app.authenticate(lambda auth: auth["username"] == "admin" and auth["password"] == "s")
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .auth import Authorization, HTTPAuth, quote_header_value
from .context import current_environ_var
from .paths import PrefixMatcher

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("authmw")

AuthenticateCallback = Callable[[Authorization], Any]

_DENIED_BODY = b"Access Denied"
_ERROR_BODY = b"Internal Server Error"


def _plain_response(
    start_response: StartResponse, status: str, body: bytes, *headers: tuple[str, str]
) -> list[bytes]:
    start_response(
        status,
        [
            *headers,
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]


def _traceback_without_values(exc: BaseException) -> str:
    """The frames and exception types of ``exc``: no messages, no source lines.

    A message or a source line may hold a password (``KeyError: 'pw'``, a hard-coded
    secret); redacting known strings misses short, escaped and transformed ones, so neither
    is logged.
    """
    lines = ["Traceback (most recent call last):\n"]
    for frame in traceback.extract_tb(exc.__traceback__):
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
    lines.append(f"{type(exc).__module__}.{type(exc).__qualname__} (message not logged)")
    return "".join(lines)


def _check_callback(callback: object) -> None:
    if not callable(callback):
        raise TypeError("the authenticate callback must be callable")
    if inspect.iscoroutinefunction(callback) or inspect.isasyncgenfunction(callback):
        raise TypeError("the authenticate callback must be a plain function, not async: "
                        "WSGI cannot await it, and an un-awaited coroutine is truthy")


def _check_handler(auth: object) -> None:
    for method in ("get_authorization", "get_authenticate_header"):
        implementation = getattr(type(auth), method, None)
        if not callable(implementation) or implementation is getattr(HTTPAuth, method):
            raise TypeError(f"auth handler {type(auth).__name__} must implement {method}()")


class AuthMiddleware:
    """Require authentication for every request whose path falls under ``prefixes``.

    :param app: the WSGI application to protect.
    :param auth: an :class:`~authmw.HTTPAuth` handler; None disables authentication
        (development only: a warning is logged).
    :param prefixes: path prefixes to protect, relative to where the middleware is mounted
        (``PATH_INFO``); the default ``("/",)`` protects everything.
    :param authenticate: the callback that validates an :class:`~authmw.Authorization`;
        it can also be registered with ``@middleware.authenticate``.
    """

    def __init__(
        self,
        app: WSGIApplication,
        auth: HTTPAuth | None = None,
        prefixes: Iterable[str] | str = ("/",),
        authenticate: AuthenticateCallback | None = None,
    ) -> None:
        self.app = app
        self.auth = auth
        self.matcher = PrefixMatcher([prefixes] if isinstance(prefixes, str) else prefixes)
        self.authenticate_callback: AuthenticateCallback | None = None
        if authenticate is not None:
            self.authenticate(authenticate)
        self._warned_no_callback = False
        if auth is None:
            logger.warning(
                "AuthMiddleware built with auth=None: %s is served WITHOUT authentication",
                ", ".join(self.matcher.prefixes),
            )

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
        _check_callback(callback)
        self.authenticate_callback = callback
        return callback

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.matcher.match(environ.get("PATH_INFO", "")) is None:
            return self.app(environ, start_response)
        environ.pop("REMOTE_USER", None)  # only this middleware may say who the user is
        auth = self._auth
        if auth is not None:
            denied = self._authenticate(auth, environ, start_response)
            if denied is not None:
                return denied
        return self.app(environ, start_response)

    def _authenticate(
        self, auth: HTTPAuth, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes] | None:
        """Publish the result in ``environ`` and return None, or return the refusal."""
        token = current_environ_var.set(environ)
        try:
            authorization = auth.get_authorization()
            verdict = self._verdict(authorization)
            if not verdict:
                challenge = auth.get_authenticate_header()
                if not isinstance(challenge, str) or not challenge:
                    raise TypeError(f"{type(auth).__name__}.get_authenticate_header() gave no str")
                quote_header_value(challenge, "WWW-Authenticate")  # refuses CR, LF, controls
                return _plain_response(
                    start_response,
                    "401 Unauthorized",
                    _DENIED_BODY,
                    ("WWW-Authenticate", challenge),
                )
        except Exception as exc:  # noqa: BLE001 - fail closed on anything a plug-in raises
            logger.error("authentication failed with an error; request %s %r refused with 500"
                         "\n%s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                         _traceback_without_values(exc))
            return _plain_response(start_response, "500 Internal Server Error", _ERROR_BODY)
        finally:
            current_environ_var.reset(token)
        environ["authmw.authorization"] = authorization
        username = authorization.get("username") if authorization is not None else None
        if isinstance(username, str):
            environ["REMOTE_USER"] = username
        if verdict is not True:
            environ["authmw.user"] = verdict
        return None

    def _verdict(self, authorization: Authorization | None) -> Any:
        if authorization is None:
            return False
        callback = self.authenticate_callback
        if callback is None:
            if not self._warned_no_callback:
                self._warned_no_callback = True
                logger.warning("AuthMiddleware has an auth handler but no authenticate "
                               "callback: every protected request is refused")
            return False
        verdict = callback(authorization)
        if inspect.isawaitable(verdict) or inspect.isgenerator(verdict):
            close = getattr(verdict, "close", None)
            if close is not None:
                close()  # no "never awaited" warning; the request is refused below
            raise TypeError("the authenticate callback returned an awaitable or a generator")
        return verdict
