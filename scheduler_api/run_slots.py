"""``max_instances`` across processes and hosts: a job's running instances, counted in the store.

APScheduler counts a job's running instances in its executor, in one process. When runs are
handed to Celery workers on several hosts (:mod:`scheduler_api.celery_worker`), the count has
to live where all of them see it: one row per running instance in a table beside the job
store's, ``(job_id, slot)`` its primary key, ``slot`` from 0 to ``max_instances - 1``. A
worker claims a slot with an INSERT (the database refuses a second row with the same key, so
two workers can never both take the last slot, on SQLite or PostgreSQL) and deletes its row
when the run ends::

    slots = RunSlots(engine, "apscheduler_jobs", node="web-1/4026531836")  # host/pid namespace
    if slots.claim("nightly", max_instances=1):
        try: run()
        finally: slots.release("nightly")

A worker killed mid-run leaves its row behind: a claim that finds every slot taken frees the
rows whose process is gone (on this node, a pid that no longer runs; elsewhere, a claim older
than :data:`~scheduler_api.recorder.LOST_AFTER_SECONDS` with no live run in the history).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError

from .history import process_alive

#: How often a claim tries again after another process took the slot it tried.
CLAIM_ATTEMPTS = 5


class RunSlots:
    """The running instances of every job of one store, one row each."""

    def __init__(self, engine: Engine, tablename: str, node: str,
                 stale_after: float = 60.0,
                 running_elsewhere: Callable[[str, str, int, float], bool] | None = None
                 ) -> None:
        self.engine = engine
        self.node = node
        self.stale_after = stale_after
        #: (job_id, node, pid, since) -> whether the history shows that process running the
        #: job with a heartbeat since then (a row of another node is freed only if not).
        self.running_elsewhere = running_elsewhere or (lambda *_: False)
        metadata = MetaData()
        self.table = Table(
            f"{tablename}_run_slots", metadata,
            Column("job_id", String(191), primary_key=True),
            Column("slot", Integer, primary_key=True, autoincrement=False),
            Column("node", String(255), nullable=False),
            Column("pid", Integer, nullable=False),
            Column("claimed_at", Float, nullable=False),
        )
        self.metadata = metadata
        #: job id -> the slots this process holds (a job may run twice here).
        self._held: dict[str, list[int]] = {}
        #: (job id, slot) given back whose row could not be deleted (the database away at that
        #: moment): its row names a live process, so no other process of this node would ever
        #: free it. Deleted at this process's next claim, of any job.
        self._unreleased: list[tuple[str, int]] = []
        self._held_lock = threading.Lock()

    def create_schema(self) -> None:
        self.metadata.create_all(self.engine)

    def claim(self, job_id: str, max_instances: int) -> bool:
        """Take one of the job's ``max_instances`` slots; False if all are taken by live runs."""
        self._delete_unreleased()
        table = self.table
        for _ in range(CLAIM_ATTEMPTS):
            with self.engine.connect() as connection:
                taken = connection.execute(
                    select(table.c.slot, table.c.node, table.c.pid, table.c.claimed_at)
                    .where(table.c.job_id == job_id)).all()
            used = {row.slot for row in taken}
            free = next((slot for slot in range(max_instances) if slot not in used), None)
            if free is None:
                stale = [row for row in taken if self._stale(job_id, row)]
                if not stale:
                    return False
                self._free(job_id, stale)
                continue
            try:
                with self.engine.begin() as connection:
                    connection.execute(table.insert().values(
                        job_id=job_id, slot=free, node=self.node, pid=os.getpid(),
                        claimed_at=time.time()))
            except IntegrityError:
                continue  # another process took it meanwhile: look again
            with self._held_lock:
                self._held.setdefault(job_id, []).append(free)
            return True
        return False

    def release(self, job_id: str) -> None:
        """Give back a slot this process claimed for the job."""
        with self._held_lock:
            held = self._held.get(job_id)
            if not held:
                return
            slot = held.pop()
            if not held:
                del self._held[job_id]
        try:
            self._delete(job_id, slot)
        except Exception:
            with self._held_lock:
                self._unreleased.append((job_id, slot))
            raise

    def _delete_unreleased(self) -> None:
        with self._held_lock:
            pending, self._unreleased = self._unreleased, []
        for index, (job_id, slot) in enumerate(pending):
            try:
                self._delete(job_id, slot)
            except Exception:
                with self._held_lock:
                    self._unreleased.extend(pending[index:])
                raise

    def _delete(self, job_id: str, slot: int) -> None:
        table = self.table
        with self.engine.begin() as connection:
            connection.execute(delete(table).where(
                table.c.job_id == job_id, table.c.slot == slot, table.c.node == self.node,
                table.c.pid == os.getpid()))

    def _stale(self, job_id: str, row: Any) -> bool:
        node, pid, claimed_at = row.node, row.pid, row.claimed_at
        if node == self.node:
            return pid != os.getpid() and not process_alive(pid)
        since = time.time() - self.stale_after
        return claimed_at < since and not self.running_elsewhere(job_id, node, pid, since)

    def _free(self, job_id: str, rows: list[Any]) -> None:
        table = self.table
        with self.engine.begin() as connection:
            for row in rows:  # only if it is still the same claim
                connection.execute(delete(table).where(and_(
                    table.c.job_id == job_id, table.c.slot == row.slot,
                    table.c.node == row.node, table.c.pid == row.pid,
                    table.c.claimed_at == row.claimed_at)))
