"""The request being authenticated, reachable without passing it around.

The seed's handler methods (``get_authorization()``, ``get_authorization_header()``) take no
request argument, as in Flask. :class:`~authmw.middleware.AuthMiddleware` therefore publishes
the environ of the request it is authenticating in a :class:`contextvars.ContextVar`, so that
threads (and greenlets, with a contextvars-aware gevent) never see each other's request::

    from authmw import request
    api_key = request.headers.get("X-API-Key")

It is set while the middleware authenticates a request and reset afterwards; outside that,
using ``request`` raises :class:`RuntimeError` rather than answering for another request.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import webob

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

#: Set and reset by the middleware around authentication (a plain set/reset: no per-request
#: context-manager overhead on the hot path).
current_environ_var: ContextVar[WSGIEnvironment | None] = ContextVar(
    "authmw_current_environ", default=None
)


def current_environ() -> WSGIEnvironment:
    """Return the environ of the request being authenticated, or raise RuntimeError."""
    environ = current_environ_var.get()
    if environ is None:
        raise RuntimeError(
            "authmw.request is only available while AuthMiddleware authenticates a request"
        )
    return environ



class RequestProxy:
    """A stand-in for the current :class:`webob.Request`; every attribute is looked up on it."""

    __slots__ = ()

    def _get_current_object(self) -> webob.Request:
        return webob.Request(current_environ())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get_current_object(), name)

    def __repr__(self) -> str:
        environ = current_environ_var.get()
        if environ is None:
            return "<authmw.request unbound>"
        return f"<authmw.request {environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')!r}>"


request: webob.Request = RequestProxy()  # type: ignore[assignment]
