"""One job runner among many processes that share a SQL job store.

Under ``gunicorn -w N`` (or on several hosts sharing PostgreSQL) every process runs an
APScheduler on the same store. APScheduler has no locking between schedulers, so each would
run every job. Here every process keeps its scheduler *paused* (it still reads and writes the
store, so every process serves the API from the same jobs) and a :class:`Coordinator` thread
elects one leader with a lock the database engine provides; only the leader resumes::

    coordinator = Coordinator(scheduler, engine, tablename="apscheduler_jobs")
    coordinator.start(initial_state="running")

- SQLite: an ``fcntl`` (POSIX record) lock on ``<database>.leader.lock``: released by the OS
  when the process dies, even by SIGKILL, and never inherited by a forked child.
- PostgreSQL: a session advisory lock on a dedicated connection, which also LISTENs: other
  processes NOTIFY after a change, so the leader wakes at once.
- The leader also polls every ``poll_interval`` seconds: it wakes its scheduler (to see jobs
  other processes added), follows the shared state (running / paused / stopped) and runs the
  jobs other processes asked to run now.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from apscheduler.schedulers.base import (
    STATE_PAUSED,
    STATE_RUNNING,
    BaseScheduler,
)
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from . import engine

logger = logging.getLogger("scheduler_api")

SHARED_STATES = ("running", "paused", "stopped")


class LeaderLock(Protocol):
    def try_acquire(self) -> bool: ...
    def still_held(self) -> bool: ...
    def release(self) -> None: ...
    def wait(self, timeout: float, stop: threading.Event) -> None: ...
    def notify(self, engine: Engine) -> None: ...


class FileLeaderLock:
    """An exclusive ``lockf`` lock on a file beside the SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def still_held(self) -> bool:
        return self._fd is not None  # the OS keeps it until the process closes it or dies

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def wait(self, timeout: float, stop: threading.Event) -> None:
        stop.wait(timeout)

    def notify(self, engine: Engine) -> None:
        """Nothing to send: the leader polls SQLite."""


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key (64-bit) for ``name``: the same in every process."""
    digest = hashlib.sha256(f"scheduler_api:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresListener:
    """A dedicated autocommit psycopg connection that LISTENs on one channel.

    Outside SQLAlchemy's pool: a LISTEN holds its session, and a pooled connection is not
    one's own between checkouts.
    """

    def __init__(self, engine: Engine, channel: str) -> None:
        url = engine.url.set(drivername="postgresql")
        self.conninfo = url.render_as_string(hide_password=False)
        self.channel = channel
        self._connection: Any = None

    def connect(self) -> Any:
        """The connection, LISTENing; a new one if there was none or it broke."""
        import psycopg

        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
            quoted = self.channel.replace('"', '""')  # an identifier: no parameters here
            self._connection.execute(f'LISTEN "{quoted}"')
        return self._connection

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.closed

    def wait_for_notify(self, timeout: float) -> None:
        """Return after a NOTIFY on the channel, or after ``timeout`` seconds."""
        for _ in self.connect().notifies(timeout=timeout, stop_after=1):
            break

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()  # ends the session (and its LISTEN, its locks)
            except Exception:  # noqa: BLE001, S110 - closing a broken connection
                pass
            self._connection = None


class PostgresLeaderLock(PostgresListener):
    """A session advisory lock on a dedicated connection that also LISTENs for changes."""

    def __init__(self, engine: Engine, key: int, channel: str) -> None:
        super().__init__(engine, channel)
        self.key = key

    def try_acquire(self) -> bool:
        try:
            connection = self.connect()
            row = connection.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            return bool(row[0])
        except Exception:
            logger.warning("cannot reach PostgreSQL for leader election", exc_info=True)
            self.release()
            return False

    def still_held(self) -> bool:
        try:
            self.connect().execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - a lost session has lost its lock
            self.release()
            return False

    def release(self) -> None:
        self.close()  # ends the session, and with it the lock

    def wait(self, timeout: float, stop: threading.Event) -> None:
        try:
            self.wait_for_notify(timeout)
        except Exception:  # noqa: BLE001 - nothing to wait on; the caller's loop retries
            stop.wait(timeout)

    def notify(self, engine: Engine) -> None:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_notify(:channel, '')"), {"channel": self.channel})


def lock_for(engine: Engine, tablename: str) -> LeaderLock | None:
    """The leader lock this engine offers, or None (one process only)."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return FileLeaderLock(Path(database + ".leader.lock"))
    if engine.dialect.name == "postgresql":
        return PostgresLeaderLock(engine, advisory_key(tablename), f"{tablename}_changes")
    return None


class Coordinator:
    """Elects the process that runs jobs and shares the scheduler's state through the store."""

    def __init__(self, scheduler: BaseScheduler, engine: Engine, lock: LeaderLock,
                 run_job: Callable[[str], object], tablename: str = "apscheduler_jobs",
                 poll_interval: float = 0.5,
                 on_lead: Callable[[str], object] = lambda identity: None) -> None:
        self.scheduler = scheduler
        self.run_job = run_job
        #: Called with this process's identity ("host:pid") when it becomes the leader.
        self.on_lead = on_lead
        self.engine = engine
        self.lock = lock
        self.poll_interval = poll_interval
        self.identity = f"{socket.gethostname().lower()}:{os.getpid()}"
        metadata = MetaData()
        self.state_table = Table(
            f"{tablename}_state", metadata,
            Column("name", String(32), primary_key=True),
            Column("value", String(255), nullable=False),
            Column("updated", DateTime(timezone=True), nullable=False),
        )
        self.runs_table = Table(
            f"{tablename}_runs", metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("job_id", String(191), nullable=False),
        )
        self._metadata = metadata
        self.is_leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- shared state ----------------------------------------------------------------------

    def _write(self, name: str, value: str, only_if_missing: bool = False) -> None:
        now = datetime.now(timezone.utc)
        with self.engine.begin() as connection:
            try:
                with connection.begin_nested():
                    connection.execute(insert(self.state_table).values(
                        name=name, value=value, updated=now))
            except IntegrityError:
                if not only_if_missing:
                    connection.execute(update(self.state_table).where(
                        self.state_table.c.name == name).values(value=value, updated=now))

    def _read(self) -> dict[str, tuple[str, datetime]]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(self.state_table)).all()
        return {row.name: (row.value, row.updated) for row in rows}

    @property
    def shared_state(self) -> str:
        return self._read().get("state", ("running", None))[0]

    def set_shared_state(self, state: str) -> None:
        """Set running / paused / stopped for every process; the leader follows at once."""
        if state not in SHARED_STATES:
            raise ValueError(f"state must be one of {SHARED_STATES}")
        self._write("state", state)
        if self.is_leader:
            self._follow_state()
        else:
            self.changed()

    def leader(self) -> dict[str, Any] | None:
        value = self._read().get("leader")
        if value is None:
            return None
        host, _, pid = value[0].rpartition(":")
        since = value[1] if value[1].tzinfo else value[1].replace(tzinfo=timezone.utc)  # SQLite
        return {"host": host, "pid": int(pid), "since": since.isoformat()}

    def request_run(self, job_id: str) -> None:
        """Ask the leader to run ``job_id`` now."""
        with self.engine.begin() as connection:
            connection.execute(insert(self.runs_table).values(job_id=job_id))
        self.changed()

    def changed(self) -> None:
        """Tell the leader something changed (wake it now instead of at its next poll)."""
        if self.is_leader:
            return
        try:
            self.lock.notify(self.engine)
        except Exception:
            logger.debug("change notification failed", exc_info=True)

    # -- the election loop -----------------------------------------------------------------

    def start(self, initial_state: str) -> None:
        self._metadata.create_all(self.engine)
        self._write("state", initial_state, only_if_missing=True)
        self._stop.clear()
        self._elect()  # at once: a single process leads before start() returns
        self._thread = threading.Thread(target=self._run, name="scheduler_api-leader",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self._thread = None
        self._step_down()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._revive_main_loop()
            try:
                self._elect()
            except Exception:
                logger.exception("leader election step failed")
                self._step_down()
            self.lock.wait(self.poll_interval, self._stop)

    def _elect(self) -> None:
        if self.is_leader:
            if not self.lock.still_held():
                logger.warning("lost the leader lock: this process stops running jobs")
                self._step_down()
                return
        elif self.lock.try_acquire():
            self.is_leader = True
            self._write("leader", self.identity)
            logger.info("%s is now the leader: it runs the jobs", self.identity)
            self.on_lead(self.identity)
        else:
            return
        self._follow_state()
        self._run_requested_jobs()
        if self.scheduler.state == STATE_RUNNING:
            self.scheduler.wakeup()  # see what other processes wrote to the store

    def _revive_main_loop(self) -> None:
        if engine.revive_main_loop(self.scheduler):
            logger.error("APScheduler's scheduling thread died; a new one was started")

    def _step_down(self) -> None:
        if self.scheduler.state == STATE_RUNNING:
            self.scheduler.pause()
        if self.is_leader:
            self.is_leader = False
            self.lock.release()

    def _follow_state(self) -> None:
        wanted = STATE_RUNNING if self.shared_state == "running" else STATE_PAUSED
        if self.scheduler.state == wanted:
            return
        if wanted == STATE_RUNNING:
            self.scheduler.resume()
        else:
            self.scheduler.pause()

    def _run_requested_jobs(self) -> None:
        with self.engine.begin() as connection:
            rows = connection.execute(select(self.runs_table)).all()
            if rows:
                connection.execute(delete(self.runs_table).where(
                    self.runs_table.c.id.in_([row.id for row in rows])))
        for row in rows:
            try:
                self.run_job(row.job_id)
            except Exception:
                logger.exception("could not run job %s as requested", row.job_id)
