from __future__ import annotations

import base64
import importlib
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import create_environ, run_wsgi_app

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("SCHEDULER_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="set SCHEDULER_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1/test)",
)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    header_list: list[tuple[str, str]]


def basic(username: str, password: str, encoding: str = "utf-8") -> str:
    raw = f"{username}:{password}".encode(encoding)
    return "Basic " + base64.b64encode(raw).decode("ascii")


def call(
    app: Callable[..., Any],
    path: str = "/",
    method: str = "GET",
    authorization: str | None = None,
    **extra: Any,
) -> Answer:
    """Call a WSGI app in process with ``path`` as the raw PATH_INFO, untouched."""
    environ = create_environ(method=method)
    environ["PATH_INFO"] = path
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    environ.update(extra)
    body_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
    header_list = list(headers.items())
    return Answer(int(status.split()[0]), dict(header_list), b"".join(body_iter), header_list)


class RecordingApp:
    """A WSGI app that records the environ of every request that reached it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.seen.append(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"reached the app"]


@pytest.fixture
def recording_app() -> RecordingApp:
    return RecordingApp()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen[Any],
                         timeout: float = 30) -> bool:
    """True once something listens on 127.0.0.1:``port``; False if ``process`` ended first
    or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)


@contextmanager
def gunicorn(app_spec: str, *args: str, env: dict[str, str] | None = None,
             timeout: float = 30, output: Path | None = None,
             cwd: Path = ROOT) -> Iterator[tuple[str, int]]:
    """Run a real gunicorn serving ``app_spec`` on a free loopback port; yield (host, port).

    ``output``: a file that gets gunicorn's stdout and stderr (its logs), else stderr is
    read only to explain a failed start.
    """
    port = free_port()
    log = open(output, "wb") if output is not None else None
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--graceful-timeout", "2", *args, app_spec],
        cwd=cwd, env={**os.environ, **(env or {})},
        stdout=log or subprocess.DEVNULL, stderr=log or subprocess.PIPE,
    )
    try:
        if not wait_until_listening(port, process, timeout):
            said = (output.read_bytes() if output is not None
                    else process.stderr.read())  # type: ignore[union-attr]
            raise RuntimeError(f"gunicorn did not start: {said.decode()}")
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not None:
            log.close()
        else:
            process.stderr.close()  # type: ignore[union-attr]


def raw_request(address: tuple[str, int], target: str, method: str = "GET",
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Send ``target`` byte for byte (no client-side normalisation); return (status, body)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {address[0]}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture
def api(tmp_path):
    """A started scheduler on a SQLite file, its API behind Basic auth (admin/secret)."""
    from .api_helpers import running_api

    with running_api(tmp_path / "jobs.sqlite") as (scheduler, client):
        yield scheduler, client


@pytest.fixture
def postgres_table():
    """A fresh job table name in the test PostgreSQL; its tables are dropped afterwards."""
    from sqlalchemy import create_engine, inspect, text

    table = f"jobs_{uuid.uuid4().hex[:8]}"
    yield table
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        for name in inspect(connection).get_table_names():
            if name.startswith(table):
                connection.execute(text(f'DROP TABLE "{name}"'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_config(request):
    """The config of a SQLite file (the default) or, when there is one, a fresh PostgreSQL
    table."""
    if request.param == "sqlite":
        return {}
    if not POSTGRES_URL:
        pytest.skip("set SCHEDULER_TEST_POSTGRES_URL (e.g. postgresql+psycopg://...)")
    return {"SCHEDULER_JOBSTORE_URL": POSTGRES_URL,
            "SCHEDULER_JOBSTORE_TABLE": request.getfixturevalue("postgres_table")}


class _Scope:
    """The secrets authmw read, and the log records, of one middleware call (or of none)."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.usernames: set[str] = set()
        self.texts: list[str] = []

    def leaks(self) -> set[str]:
        """Each secret found in a record, with where. One inside the username as the audit
        line shows it is not: hypothesis draws passwords equal to the username, or part of
        it, and the audit line names the user on purpose."""
        found = set()
        for secret in self.secrets:
            shown = {form for username in self.usernames
                     if secret in (form := f"(user {username[:32]!r})")}
            for text in self.texts:
                for form in shown:
                    text = text.replace(form, "\0")
                at = text.find(secret)
                if at >= 0:
                    found.add(f"{secret!r} in {text[max(at - 60, 0):at + 60]!r}")
        return found


class _ToScope(logging.Handler):
    """Files the text of every record (message and traceback) under the current scope."""

    def __init__(self, current: Callable[[], _Scope]) -> None:
        super().__init__(logging.DEBUG)
        self.current = current

    def emit(self, record: logging.LogRecord) -> None:
        self.current().texts.append(logging.Formatter().format(record))


@pytest.fixture(scope="session", autouse=True)
def no_secret_reaches_any_log():
    """Over the whole run: no password or Authorization value authmw read is in a log.

    Every header authmw parses and every password it decodes is remembered (the short ones
    and plain lower-case words aside), with every record logged at any level. A record logged
    during an ``AuthMiddleware`` call, in its thread (its audit line, the app's own logs), is
    searched for the secrets of that call; the rest, for the secrets read outside any call.
    Matching across calls would flag the property tests' made-up credentials wherever the
    same strings turn up legitimately: hypothesis also draws them from the code's own string
    constants ("addJob"), and schemathesis puts them in URLs that urllib3 logs.
    """
    import authmw.auth
    import authmw.middleware

    outside = _Scope()
    local = threading.local()
    leaks: set[str] = set()

    def current() -> _Scope:
        return getattr(local, "scope", None) or outside

    parse_header, split = authmw.auth.get_authorization_header, authmw.auth._split_credentials
    middleware_call = authmw.middleware.AuthMiddleware.__call__

    def remember(*candidates: str) -> None:
        current().secrets.update(candidate for candidate in candidates
                                 if len(candidate) >= 6 and not re.fullmatch(r"[a-z_.]+",
                                                                             candidate))

    def remembering_header():  # type: ignore[no-untyped-def]
        value = authmw.context.current_environ().get("HTTP_AUTHORIZATION")
        if isinstance(value, str) and value.split():
            remember(value.split()[-1])
        return parse_header()

    def remembering_split(raw):  # type: ignore[no-untyped-def]
        credentials = split(raw)
        if credentials is not None:
            remember(credentials[1], base64.b64encode(raw).decode("ascii"))
            current().usernames.add(credentials[0])
        return credentials

    def scoped_call(self, environ, start_response):  # type: ignore[no-untyped-def]
        enclosing = getattr(local, "scope", None)
        local.scope = scope = _Scope()
        try:
            return middleware_call(self, environ, start_response)
        finally:
            leaks.update(scope.leaks())
            local.scope = enclosing

    handler = _ToScope(current)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    authmw.auth.get_authorization_header = remembering_header
    authmw.auth._split_credentials = remembering_split
    authmw.middleware.AuthMiddleware.__call__ = scoped_call  # type: ignore[method-assign]
    try:
        yield
    finally:
        authmw.auth.get_authorization_header = parse_header
        authmw.auth._split_credentials = split
        authmw.middleware.AuthMiddleware.__call__ = middleware_call  # type: ignore[method-assign]
        root.removeHandler(handler)
        root.setLevel(previous_level)
    leaks.update(outside.leaks())
    assert not leaks, f"secrets found in the logs: {sorted(leaks)[:5]}"


@pytest.fixture
def vanishing_module(tmp_path, monkeypatch):
    """A module written into tmp_path (on sys.path); call ``gone()`` to remove it entirely."""
    name = f"vanishing_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "modules"
    folder.mkdir()
    source = folder / f"{name}.py"
    source.write_text("def task(*args, **kwargs):\n    pass\n\n\nclass Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module(name)

    def gone() -> None:
        source.unlink()
        for cached in folder.glob("__pycache__/*"):
            cached.unlink()
        del sys.modules[name]
        importlib.invalidate_caches()

    module.gone = gone
    return module
