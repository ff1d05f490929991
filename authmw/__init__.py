"""authmw: authentication for any WSGI app, before it runs.

Wrap the app, name the prefixes to protect, register a callback::

    from authmw import AuthMiddleware, HTTPBasicAuth
    app = AuthMiddleware(app, auth=HTTPBasicAuth(), prefixes=["/scheduler"])

    @app.authenticate
    def authenticate(auth):
        return auth["username"] == "admin" and compare_secrets(auth["password"], "secret")
"""

from __future__ import annotations

from .auth import (
    APIKeyAuth,
    Authorization,
    HTTPAuth,
    HTTPBasicAuth,
    HTTPTokenAuth,
    MultiAuth,
    compare_secrets,
    get_authorization_header,
)
from .context import request
from .middleware import AuthMiddleware, plain_denial
from .rules import Rule
from .throttle import MemoryThrottleStore, RedisThrottleStore, Throttle

__all__ = [
    "APIKeyAuth",
    "AuthMiddleware",
    "Authorization",
    "HTTPAuth",
    "HTTPBasicAuth",
    "HTTPTokenAuth",
    "MemoryThrottleStore",
    "MultiAuth",
    "RedisThrottleStore",
    "Rule",
    "Throttle",
    "compare_secrets",
    "get_authorization_header",
    "plain_denial",
    "request",
]
