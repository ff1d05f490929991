"""One time budget per API request for everything it waits on in the job store.

A request answers within :data:`STORE_WAIT_SECONDS` (its result, or a JSON 503) whatever else
is queued: every wait it makes is cut to what remains of one budget, started when the request
reaches the API::

    with deadline(STORE_WAIT_SECONDS):
        ...  # APScheduler's job store lock, SQLite's busy wait, PostgreSQL's lock waits

- APScheduler's ``_jobstores_lock`` (held by a writer while it waits for the database) is
  acquired with a timeout: :class:`DeadlineLock`; on timeout, :class:`StoreBusy`.
- SQLite waits for another writer (``busy_timeout``) at most what remains.
- PostgreSQL waits for a lock (``lock_timeout``), and runs a statement (``statement_timeout``),
  at most what remains when the transaction starts.

Outside a request (the scheduler's own thread, Python callers) nothing changes: SQLite waits
its 5 s per statement, PostgreSQL its server defaults, and the lock blocks.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

#: The bound on what one API request waits for in the job store, in seconds.
STORE_WAIT_SECONDS = 5.0
#: The longest a request waits for APScheduler's job-store lock (another change in this
#: process holds it while it waits for the database), within STORE_WAIT_SECONDS.
LOCK_WAIT_SECONDS = 1.0
#: SQLite's busy timeout outside requests (``make_engine`` connects with it).
SQLITE_BUSY_TIMEOUT_MS = 5000

_deadline: ContextVar[float | None] = ContextVar("scheduler_api_deadline", default=None)


class StoreBusy(SQLAlchemyTimeoutError):
    """A request's time for waiting on the job store ran out (answered as a 503)."""


def remaining() -> float | None:
    """Seconds left of the current request's budget (at least 0); None outside a request."""
    end = _deadline.get()
    return None if end is None else max(0.0, end - time.monotonic())


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound the waits of the code inside to ``seconds`` in all (an inner bound cannot extend
    an outer one)."""
    end = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(end if outer is None else min(end, outer))
    try:
        yield
    finally:
        _deadline.reset(token)


class DeadlineLock:
    """A (reentrant) lock whose ``with`` waits at most the current request's remaining time.

    Replaces APScheduler's ``_jobstores_lock``: a writer holds it while it waits for the
    database, and every other writer used to wait for it in turn, each then waiting its own
    busy timeout (the fourth of four writes answered after 20 s).
    """

    def __init__(self, lock: Any = None) -> None:
        self._lock = threading.RLock() if lock is None else lock

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        left = remaining()
        if left is None:
            return bool(self._lock.acquire())
        # A change queued behind another is refused after LOCK_WAIT_SECONDS: waiting its whole
        # budget, it would hold a server thread that reads could use (with 4 threads, 4
        # queued writes kept every read waiting 20 s).
        if not self._lock.acquire(timeout=min(left, LOCK_WAIT_SECONDS)):
            raise StoreBusy("the job store is busy: another change is still waiting for it")
        return True

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


def bound_store_waits(engine: Engine) -> None:
    """Make ``engine``'s statements wait at most the current request's remaining time."""
    if engine.dialect.name == "sqlite":
        if not event.contains(engine, "before_cursor_execute", _sqlite_busy_timeout):
            event.listen(engine, "before_cursor_execute", _sqlite_busy_timeout)
    elif engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        if not event.contains(engine, "before_cursor_execute", _postgres_timeouts):
            event.listen(engine, "before_cursor_execute", _postgres_timeouts)


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))  # 0 would mean "no wait" (SQLite), "none" (PG)


def _sqlite_busy_timeout(connection: Any, cursor: Any, statement: str, parameters: Any,
                         context: Any, executemany: bool) -> None:
    left = remaining()
    info = connection.info
    if left is None:
        if info.get("busy_timeout_ms", SQLITE_BUSY_TIMEOUT_MS) != SQLITE_BUSY_TIMEOUT_MS:
            cursor.connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            info["busy_timeout_ms"] = SQLITE_BUSY_TIMEOUT_MS
        return
    milliseconds = min(_milliseconds(left), SQLITE_BUSY_TIMEOUT_MS)
    cursor.connection.execute(f"PRAGMA busy_timeout = {milliseconds}")
    info["busy_timeout_ms"] = milliseconds


def _postgres_timeouts(connection: Any, cursor: Any, statement: str, parameters: Any,
                       context: Any, executemany: bool) -> None:
    left = remaining()
    if left is None:
        return
    import psycopg

    raw = cursor.connection
    if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return  # set when this transaction started (SET LOCAL lasts until its end)
    value = f"{_milliseconds(left)}ms"
    # The first statement of the transaction: it starts the transaction, which the settings
    # then last for.
    raw.execute("SELECT set_config('lock_timeout', %s, true), "
                "set_config('statement_timeout', %s, true)", (value, value))
