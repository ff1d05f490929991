"""Process life: where and when a scheduler starts, and the election among processes.

Under ``gunicorn --preload`` the app is imported in the master, which must not start threads
(they would not survive the fork): the start is deferred to each worker
(:func:`defer_to_workers`). In a process, :func:`start_scheduler` starts APScheduler and, on
a store that several processes share (a SQLite file, PostgreSQL), the coordinator that
elects the one leader that runs the jobs::

    if not defer_to_workers(lambda: start()):
        coordinator = start_scheduler(scheduler, engine, "apscheduler_jobs", paused, run_job)
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from functools import partial

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from . import engine
from .coordination import Coordinator, lock_for
from .deadlines import remaining
from .listing import create_listing_index

logger = logging.getLogger("scheduler_api")


def inside_gunicorn_arbiter() -> bool:
    """True while gunicorn's master imports the app (``--preload``), before any fork.

    The master loads a preloaded app from ``Arbiter.setup``; a worker loads it from
    ``Arbiter.spawn_worker`` (after the fork), which is the frame that tells them apart.
    """
    frame = sys._getframe()
    arbiter = os.path.join("gunicorn", "arbiter.py")
    while frame is not None:
        if frame.f_code.co_filename.endswith(arbiter):
            return frame.f_code.co_name == "setup"
        frame = frame.f_back  # type: ignore[assignment]
    return False


def defer_to_workers(start: Callable[[], None]) -> bool:
    """In gunicorn's master: run ``start`` in each worker after its fork instead, and say
    True. Elsewhere: False (the caller starts now)."""
    if not inside_gunicorn_arbiter():
        return False
    master = os.getpid()

    def start_in_worker() -> None:
        if os.getppid() == master:  # a worker, not a process a worker forked
            start()

    os.register_at_fork(after_in_child=start_in_worker)
    return True


def retrying_while_busy(operation: Callable[[], object], attempts: int = 6) -> None:
    """Run a start-up step, again after a pause while the database is busy or away.

    Workers that start together all create tables and rows at once: on SQLite one of them
    may wait past the busy timeout; on PostgreSQL two concurrent ``CREATE TABLE IF NOT
    EXISTS`` can collide (a unique violation in the catalog). Failing its boot would take the
    whole server down. Inside a request (``POST /start``) there is no time to try again.
    """
    if remaining() is not None:
        attempts = 1
    for attempt in range(attempts):
        try:
            operation()
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            logger.warning("the job store is busy or unreachable at start-up; trying again")
            time.sleep(0.5 * 2**attempt)


def create_schema(scheduler: BaseScheduler) -> None:
    """Schema work beyond APScheduler's tables, at start-up: never inside a request."""
    for store in engine.jobstores(scheduler).values():
        if isinstance(store, SQLAlchemyJobStore):
            retrying_while_busy(partial(create_listing_index, store))


def start_scheduler(scheduler: BaseScheduler, db_engine: Engine | None, tablename: str,
                    paused: bool, run_job: Callable[[str], object],
                    on_lead: Callable[[str], object] = lambda identity: None,
                    ) -> Coordinator | None:
    """Start ``scheduler`` in this process; the coordinator when the store is shared.

    A store without a lock (an in-memory SQLite URL, MySQL, a non-SQL store) runs one
    scheduler per process. With one, the scheduler starts paused and the coordinator
    resumes it in the leader only.
    """
    engine.revive_executors(scheduler)
    lock = lock_for(db_engine, tablename) if db_engine is not None else None
    if lock is None or db_engine is None:
        scheduler.start(paused=paused)
        create_schema(scheduler)
        return None
    retrying_while_busy(lambda: scheduler.start(paused=True))
    create_schema(scheduler)
    coordinator = Coordinator(scheduler, db_engine, lock, run_job=run_job, tablename=tablename,
                              on_lead=on_lead)
    retrying_while_busy(lambda: coordinator.start(
        initial_state="paused" if paused else "running"))
    return coordinator
