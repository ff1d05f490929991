"""An app that reads paths generously, behind nested rules with different handlers and roles.

The app decodes percent-escapes until none is left, reads ``\\`` as ``/``, drops ``;params``,
stops at a NUL, ``?`` or ``#``, merges slashes, resolves dot segments and folds case, then
answers which view it reached: what an attacker hopes a differently-reading app will do.
gunicorn imports this module (``tests.rules_apps:guarded``).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any
from urllib.parse import unquote

from authmw import APIKeyAuth, AuthMiddleware, HTTPBasicAuth, Rule, compare_secrets

USERS = {"reader": {"roles": ["reader"]}, "admin": {"roles": ["reader", "admin"]}}
PARTNER_KEY = "partner-key-1"


def check_basic(auth: Any) -> Any:
    user = USERS.get(auth["username"])
    return user if user is not None and compare_secrets(auth["password"], "pw") else False


def check_key(auth: Any) -> Any:
    return {"roles": ["partner"]} if compare_secrets(auth["key"], PARTNER_KEY) else False


def generous_reading(path: str) -> str:
    """The path as the most generous router reads it."""
    for _ in range(10):
        decoded = unquote(path, errors="replace")
        if decoded == path:
            break
        path = decoded
    path = re.split(r"[\x00?#]", path.replace("\\", "/"), maxsplit=1)[0]
    path = re.sub(r";[^/]*", "", path)
    return posixpath.normpath("/" + path.lstrip("/")).casefold()


def generous_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    method = environ["REQUEST_METHOD"].upper()  # as werkzeug, Flask, Django and WebOb do
    body = f"VIEW {method} {generous_reading(environ['PATH_INFO'])}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def guard(app: Any) -> AuthMiddleware:
    return AuthMiddleware(
        app, auth=HTTPBasicAuth(realm="ops"), authenticate=check_basic,
        rules=[Rule("/", roles={"*": "admin"}),
               Rule("/reports", roles={"GET": {"reader", "admin"}, "HEAD": {"reader", "admin"}}),
               Rule("/files", roles={"GET": {"reader", "admin"}, "DELETE": "admin"}),
               Rule("/scheduler", roles={"GET": {"reader", "admin"}, "*": "admin"}),
               Rule("/api", auth=APIKeyAuth(realm="partners"), authenticate=check_key)],
    )


guarded = guard(generous_app)
