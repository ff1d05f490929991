"""The apps bench_gunicorn.py and bench_credential_cache.py serve: one tiny route, with and
without authmw in front, checked against a plaintext password or an htpasswd file.

    gunicorn --chdir <repo> benchmarks.gunicorn_app:with_authmw
    AUTHMW_BENCH_HTPASSWD=/tmp/x/htpasswd gunicorn --chdir <repo> \
        'benchmarks.gunicorn_app:htpasswd_app(cache=True)'
"""

from __future__ import annotations

import os
from typing import Any

from authmw import AuthMiddleware, HtpasswdFile, HTTPBasicAuth, compare_secrets

#: The environment variable that holds the htpasswd file's path, for :func:`htpasswd_app`.
HTPASSWD_ENV = "AUTHMW_BENCH_HTPASSWD"

USER, PASSWORD = "admin", "s3cret-password"
BODY = b'{"ok":true}'


def without_authmw(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]


def authenticate(auth: dict[str, str]) -> bool:
    # As the demo server does: both compared, in constant time.
    user_ok = compare_secrets(auth["username"], USER)
    password_ok = compare_secrets(auth["password"], PASSWORD)
    return user_ok and password_ok


with_authmw = AuthMiddleware(without_authmw, auth=HTTPBasicAuth(), prefixes=["/scheduler"],
                             authenticate=authenticate)


def htpasswd_app(cache: bool = True) -> AuthMiddleware:
    """The same route behind authmw, checked against the htpasswd file named by
    ``$AUTHMW_BENCH_HTPASSWD`` (an app factory: gunicorn calls it in each worker, so each
    worker reads the file and has its own credential cache, as in production)."""
    users = HtpasswdFile(os.environ[HTPASSWD_ENV], cache=cache)
    return AuthMiddleware(without_authmw, auth=HTTPBasicAuth(), prefixes=["/scheduler"],
                          authenticate=users.authenticate)
