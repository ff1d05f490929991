"""Targets named by the PasteDeploy test's .ini file."""

from __future__ import annotations

from typing import Any


def app_factory(global_conf: dict[str, Any], **settings: str):
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"hello {environ.get('REMOTE_USER')}".encode()]

    return app


def authenticate(auth: dict[str, str]) -> bool:
    return auth["username"] == "paste" and auth["password"] == "deploy"
