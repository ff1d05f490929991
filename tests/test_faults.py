"""Faults: a locked or unreachable job store, a worker killed mid-request.

Every fault must give a JSON 503 within bounded time (never a hung worker), the API must
recover by itself, and no job that was acknowledged may be lost.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from . import tasks
from .api_helpers import APIClient, running_api
from .conftest import POSTGRES_URL, gunicorn, needs_postgres
from .test_cluster import cluster_env

JOB = {"func": "tests.tasks:record", "trigger": "cron", "hour": "3"}


def test_a_sqlite_store_locked_by_another_process_is_a_503_then_recovers(tmp_path):
    store = tmp_path / "jobs.sqlite"
    with running_api(store) as (_, client):
        assert client.post("/jobs", json={"id": "before", **JOB}).status_code == 200
        with held_sqlite_write_lock(store, "EXCLUSIVE"):
            started = time.monotonic()
            refused = client.post("/jobs", json={"id": "during", **JOB})
            assert refused.status_code == 503
            assert refused.json == {"error_message":
                                    "the job store is unavailable, try again later"}
            assert time.monotonic() - started < 15
        assert client.post("/jobs", json={"id": "after", **JOB}).status_code == 200
        assert {job["id"] for job in client.get("/jobs").json} == {"before", "after"}
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone() == ("ok",)


class TcpProxy:
    """A loopback TCP forwarder that can be cut (connections dropped, new ones refused)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._connections: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        for connection in self._connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()
        self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@needs_postgres
# APScheduler's own thread may die of the outage (an error outside its retry); the
# coordinator starts a new one, which this test checks by running a job afterwards.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_postgres_going_away_is_a_503_then_the_api_recovers_by_itself(tmp_path,
                                                                      postgres_table):
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        with running_api(tmp_path / "unused.sqlite", SCHEDULER_JOBSTORE_URL=proxied,
                         SCHEDULER_JOBSTORE_TABLE=postgres_table) as (scheduler, client):
            assert client.post("/jobs", json={"id": "before", **JOB}).status_code == 200
            proxy.cut()
            started = time.monotonic()
            for method, path in (("GET", "/jobs"), ("POST", "/jobs"), ("GET", "")):
                response = client.request(method, path, json={"id": "during", **JOB})
                assert response.status_code == 503, (method, path, response.json)
            assert time.monotonic() - started < 30
            proxy.restore()
            deadline = time.monotonic() + 20
            while client.get("/jobs").status_code != 200:
                assert time.monotonic() < deadline, "the API did not recover"
                time.sleep(0.2)
            assert [job["id"] for job in client.get("/jobs").json] == ["before"]
            assert client.post("/jobs", json={"id": "after", **JOB}).status_code == 200
            deadline = time.monotonic() + 10
            while not (scheduler.coordinator and scheduler.coordinator.is_leader):
                assert time.monotonic() < deadline, "leadership was not regained"
                time.sleep(0.2)
            tasks.ran.clear()
            assert client.post("/jobs", json={"id": "runs-again", "func": "tests.tasks:record",
                                              "args": ["after the outage"]}).status_code == 200
            assert tasks.ran.wait(10), "no job runs after the outage"
    finally:
        proxy.cut()


def get_surviving(url: str) -> Any:
    """GET through whichever worker is alive (one may be dying, or being respawned)."""
    for _ in range(20):
        try:
            return requests.get(url, auth=("admin", "secret"), timeout=10,
                                headers={"Connection": "close"}).json()
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError(f"no worker answered {url}")


def test_workers_killed_mid_request_lose_no_acknowledged_job(tmp_path):
    store = tmp_path / "jobs.sqlite"
    env = cluster_env(tmp_path / "runs.log", f"sqlite:///{store}")
    acknowledged: list[str] = []
    with gunicorn("tests.cluster_app:app", "--workers", "2", env=env) as (host, port):
        base = f"http://{host}:{port}/scheduler"
        stop = threading.Event()

        def post_jobs() -> None:
            index = 0
            while not stop.is_set():
                job_id = f"job-{index}"
                index += 1
                try:
                    response = requests.post(f"{base}/jobs", json={"id": job_id, **JOB},
                                             auth=("admin", "secret"), timeout=10,
                                             headers={"Connection": "close"})
                except requests.RequestException:
                    continue  # the worker died under this request: not acknowledged
                if response.status_code == 200:
                    acknowledged.append(job_id)

        poster = threading.Thread(target=post_jobs)
        poster.start()
        try:
            for _ in range(4):
                time.sleep(0.7)
                os.kill(get_surviving(base)["current_pid"], signal.SIGKILL)
            time.sleep(0.7)
            # Enough acknowledged jobs for the check to mean something: on a slow machine
            # the respawned workers take most of those seconds to import the app.
            deadline = time.monotonic() + 30
            while len(acknowledged) < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop.set()
            poster.join(timeout=30)
        listed = {job["id"] for job in get_surviving(f"{base}/jobs")}
    assert len(acknowledged) >= 5
    assert set(acknowledged) <= listed
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize(
    ("pragma", "message"),
    [("PRAGMA query_only = ON", "the job store is read-only; nothing was changed"),
     ("PRAGMA max_page_count = {pages}", "the job store is out of space; nothing was changed")],
    ids=["read-only", "disk-full"],
)
def test_a_store_that_cannot_be_written_is_a_clear_503_and_stays_intact(tmp_path, pragma,
                                                                       message):
    """SQLite's own read-only and disk-full errors (SQLITE_READONLY, SQLITE_FULL), raised
    here through pragmas, as a read-only mount or a full disk would raise them."""
    from sqlalchemy import event

    store = tmp_path / "jobs.sqlite"
    with running_api(store) as (scheduler, client):
        for index in range(3):
            assert client.post("/jobs", json={"id": f"before-{index}", **JOB}).status_code == 200
        before = client.get("/jobs").json
        engine = scheduler._engine
        pages = sqlite3.connect(store).execute("PRAGMA page_count").fetchone()[0]

        @event.listens_for(engine, "connect")
        def restrict(dbapi_connection, _):  # type: ignore[no-untyped-def]
            dbapi_connection.execute(pragma.format(pages=pages))

        engine.dispose()
        big = {"args": ["x" * 200_000]}  # needs new pages: past max_page_count
        refused = client.post("/jobs", json={"id": "during", **JOB, **big})
        assert refused.status_code == 503
        assert refused.json == {"error_message": message}
        assert client.patch("/jobs/before-0", json={"name": "renamed", **big}).status_code == 503
        assert client.get("/jobs").json == before
        event.remove(engine, "connect", restrict)
        engine.dispose()
        assert client.post("/jobs", json={"id": "after", **JOB}).status_code == 200
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_store_is_a_clear_error_and_stays_intact(tmp_path):
    store = tmp_path / "jobs.sqlite"
    with running_api(store) as (_, client):
        assert client.post("/jobs", json={"id": "before", **JOB}).status_code == 200
        for path in tmp_path.iterdir():
            path.chmod(0o444)
        tmp_path.chmod(0o555)
        try:
            response = client.post("/jobs", json={"id": "during", **JOB})
            assert response.status_code == 503
            assert [job["id"] for job in client.get("/jobs").json] == ["before"]
        finally:
            tmp_path.chmod(0o755)
            for path in tmp_path.iterdir():
                path.chmod(0o644)
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone() == ("ok",)


# -- every wait is bounded: one budget per request, reads never wait for a writer ----------

BOUND = 5.0  # scheduler_api.deadlines.STORE_WAIT_SECONDS, as the README documents it
SLACK = 2.0
QUICK = 1.0  # a read behind waiting writers: well under the bound


@contextmanager
def held_sqlite_write_lock(store: Path, mode: str = "IMMEDIATE") -> Iterator[None]:
    """Another process holding SQLite's write lock (``BEGIN IMMEDIATE``; ``EXCLUSIVE`` keeps
    readers out too) on ``store``."""
    locker = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, time\n"
         f"c = sqlite3.connect({str(store)!r}, isolation_level=None)\n"
         f"c.execute('BEGIN {mode}'); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        yield
    finally:
        locker.kill()
        locker.wait()


@contextmanager
def held_postgres_lock(statement: str) -> Iterator[None]:
    """Another connection holding a lock (``statement``) in an open transaction."""
    import psycopg
    from sqlalchemy.engine import make_url

    assert POSTGRES_URL is not None
    conninfo = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(conninfo) as connection:
        connection.execute(statement)
        try:
            yield
        finally:
            connection.rollback()


def timed(client: APIClient, method: str, path: str, **kwargs: Any) -> tuple[int, float]:
    started = time.monotonic()
    response = client.request(method, path, **kwargs)
    return response.status_code, time.monotonic() - started


@pytest.mark.parametrize(
    ("store", "lock", "method", "path", "body"),
    [
        pytest.param("sqlite", "BEGIN IMMEDIATE", "POST", "/jobs", JOB,
                     id="sqlite-another-process-writes-four-POSTs"),
        pytest.param("postgres", 'LOCK TABLE "{table}" IN EXCLUSIVE MODE', "POST", "/jobs", JOB,
                     id="postgres-table-locked-four-POSTs", marks=needs_postgres),
        pytest.param("postgres", "SELECT 1 FROM \"{table}\" WHERE id = 'before' FOR UPDATE",
                     "PATCH", "/jobs/before", {"name": "renamed"},
                     id="postgres-row-locked-four-PATCHes", marks=needs_postgres),
    ],
)
def test_behind_a_held_lock_every_request_answers_within_the_bound(request, tmp_path, store,
                                                                   lock, method, path, body):
    config = {}
    if store == "postgres":
        table = request.getfixturevalue("postgres_table")
        config = {"SCHEDULER_JOBSTORE_URL": POSTGRES_URL, "SCHEDULER_JOBSTORE_TABLE": table}
    sqlite_file = tmp_path / "jobs.sqlite"
    with running_api(sqlite_file, **config) as (_, client):
        assert client.post("/jobs", json={"id": "before", **JOB}).status_code == 200
        held = (held_sqlite_write_lock(sqlite_file) if store == "sqlite"
                else held_postgres_lock(lock.format(table=config["SCHEDULER_JOBSTORE_TABLE"])))
        writes: dict[int, tuple[int, float]] = {}
        reads: dict[str, tuple[int, float]] = {}
        with held:
            writers = [threading.Thread(target=lambda index=index: writes.__setitem__(
                index, timed(APIClient(client.client.application), method, path,
                             json={**body, "id": f"write-{index}"} if method == "POST"
                             else body))) for index in range(4)]
            for writer in writers:
                writer.start()
            time.sleep(0.5)  # the writers are waiting (for the database, or for each other)
            for read in ("/jobs/before", "/jobs", "/jobs?limit=10", ""):
                reads[read] = timed(client, "GET", read)
            for writer in writers:
                writer.join(timeout=30)
        assert all(status == 200 and seconds < QUICK for status, seconds in reads.values()), \
            reads
        assert sorted(writes) == [0, 1, 2, 3]
        assert all(status == 503 and seconds < BOUND + SLACK
                   for status, seconds in writes.values()), writes
        assert client.request(method, path, json={**body, "id": "after"} if method == "POST"
                              else body).status_code == 200
        assert [job["id"] for job in client.get("/jobs").json] == (
            ["after", "before"] if method == "POST" else ["before"])


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_schema_work_is_done_at_start_never_in_a_listing(request, tmp_path, store):
    from sqlalchemy import event, inspect

    config = {}
    if store == "postgres":
        config = {"SCHEDULER_JOBSTORE_URL": POSTGRES_URL,
                  "SCHEDULER_JOBSTORE_TABLE": request.getfixturevalue("postgres_table")}
    with running_api(tmp_path / "jobs.sqlite", **config) as (scheduler, client):
        engine, table = scheduler._engine, scheduler._tablename
        assert f"ix_{table}_next_run_time_id" in {
            index["name"] for index in inspect(engine).get_indexes(table)}
        assert scheduler.recorder.flush()  # the start's events are written: not the listing's
        statements: list[str] = []
        listing_thread = threading.get_ident()

        @event.listens_for(engine, "before_cursor_execute")
        def record(connection, cursor, statement, *_):  # type: ignore[no-untyped-def]
            if threading.get_ident() == listing_thread:  # not the run history's writer
                statements.append(statement)

        try:
            assert client.get("/jobs").json == []
            assert client.get("/jobs?limit=5").json["total"] == 0
        finally:
            event.remove(engine, "before_cursor_execute", record)
    assert statements
    # Reads only (BEGIN: the page and its total are read in one snapshot, on SQLite).
    assert all(statement.lstrip().upper().startswith(("SELECT", "BEGIN"))
               for statement in statements), statements
