"""The apps bench_gunicorn.py serves: one tiny route, with and without authmw in front.

    gunicorn --chdir <repo> benchmarks.gunicorn_app:with_authmw
"""

from __future__ import annotations

from typing import Any

from authmw import AuthMiddleware, HTTPBasicAuth, compare_secrets

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
