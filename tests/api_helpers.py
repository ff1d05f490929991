from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from werkzeug.test import Client, TestResponse

from authmw import HTTPBasicAuth, compare_secrets
from scheduler_api import APScheduler

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:secret").decode()}


def event_stream_fields(text: str) -> list[dict[str, str]]:
    """The events of a text/event-stream body, each as its fields (``id``, ``event``,
    ``data``, ``retry``); comments, and blocks without an event (the opening ``retry:``),
    left out."""
    found = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data", "retry"):
                fields[name] = value
        if "event" in fields:
            found.append(fields)
    return found


def plain_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the wrapped app"]


class APIClient:
    """A werkzeug test client that sends credentials and JSON by default."""

    def __init__(self, wsgi_app: Any, prefix: str = "/scheduler") -> None:
        self.client = Client(wsgi_app)
        self.prefix = prefix

    def request(self, method: str, path: str = "", *, auth: bool = True,
                **kwargs: Any) -> TestResponse:
        headers = {**(AUTH if auth else {}), **kwargs.pop("headers", {})}
        return self.client.open(self.prefix + path, method=method, headers=headers, **kwargs)

    def get(self, path: str = "", **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str = "", **kwargs: Any) -> TestResponse:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str = "", **kwargs: Any) -> TestResponse:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str = "", **kwargs: Any) -> TestResponse:
        return self.request("DELETE", path, **kwargs)


def make_scheduler(store: Path, **config: Any) -> tuple[APScheduler, Any]:
    scheduler = APScheduler()
    app = scheduler.init_app(plain_app, config={
        "SCHEDULER_API_ENABLED": True,
        "SCHEDULER_AUTH": HTTPBasicAuth(),
        "SCHEDULER_JOBSTORE_URL": f"sqlite:///{store}",
        "SCHEDULER_API_ALLOWED_FUNCS": ["tests.tasks:*"],
        "SCHEDULER_TIMEZONE": "UTC",
        **config,
    })
    scheduler.authenticate(lambda auth: compare_secrets(auth["username"], "admin")
                           and compare_secrets(auth["password"], "secret"))
    return scheduler, app


@contextmanager
def running_api(store: Path, paused: bool = False, **config: Any) -> Iterator[
        tuple[APScheduler, APIClient]]:
    scheduler, app = make_scheduler(store, **config)
    scheduler.start(paused=paused)
    try:
        yield scheduler, APIClient(app)
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=False)
