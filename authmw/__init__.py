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
    AuthenticateCallback,
    Authorization,
    HTTPAuth,
    HTTPBasicAuth,
    HTTPTokenAuth,
    MultiAuth,
    compare_secrets,
    get_authorization_header,
)
from .context import request
from .credential_cache import CredentialCache, cached
from .htpasswd import HtpasswdFile
from .middleware import AuthMiddleware, plain_denial
from .passwords import hash_password, verify_password
from .paths import normalize_prefix
from .rules import Rule
from .throttle import MemoryThrottleStore, RedisThrottleStore, Throttle

__all__ = [
    "APIKeyAuth",
    "AuthMiddleware",
    "AuthenticateCallback",
    "Authorization",
    "CredentialCache",
    "HTTPAuth",
    "HTTPBasicAuth",
    "HTTPTokenAuth",
    "HtpasswdFile",
    "MemoryThrottleStore",
    "MultiAuth",
    "RedisThrottleStore",
    "Rule",
    "Throttle",
    "cached",
    "compare_secrets",
    "get_authorization_header",
    "hash_password",
    "normalize_prefix",
    "plain_denial",
    "request",
    "verify_password",
]
