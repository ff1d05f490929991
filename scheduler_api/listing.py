"""Job listings that cost little for jobs that did not change since the last listing.

Serialising every job on every ``GET /jobs`` dominates a listing (and with the SQL store,
unpickling every job does). A :class:`JobListing` keeps each job's JSON and reuses it while
the job is unchanged:

- SQL store: keyed by the job's pickled state as stored (any change rewrites it), so an
  unchanged job is neither unpickled nor serialised again;
- memory store: keyed by the identity of the job's attributes (APScheduler replaces them on
  every change).

Pages (``limit``/``offset``) follow the listing's order: next run time, paused jobs last,
then id::

    listing = JobListing(scheduler)
    body, total = listing.page(limit=100, offset=0)   # body: a JSON array, as bytes
"""

from __future__ import annotations

import json
import operator
import threading
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from sqlalchemy import func, select

from .jobs import job_to_json, json_default

CACHE_SIZE = 16384


def encode(data: Any) -> bytes:
    return json.dumps(data, default=json_default, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _fingerprint(job: Job) -> tuple[Any, ...]:
    return (job, job.trigger, job.next_run_time, job.name, job.func_ref, job.args, job.kwargs,
            job.misfire_grace_time, job.max_instances, job.coalesce, job.executor)


class JobListing:
    """Listings and pages of a scheduler's jobs as JSON bytes."""

    def __init__(self, scheduler: BaseScheduler) -> None:
        self.scheduler = scheduler
        self._by_state: dict[bytes, bytes] = {}
        self._by_identity: dict[str, tuple[tuple[Any, ...], bytes]] = {}
        self._lock = threading.Lock()

    def page(self, limit: int | None = None, offset: int = 0) -> tuple[bytes, int]:
        """The jobs ``[offset, offset + limit)`` as a JSON array, and the number of jobs."""
        stores = self.scheduler._jobstores
        store = stores.get("default") if len(stores) == 1 else None
        if self.scheduler.state != STATE_STOPPED and isinstance(store, SQLAlchemyJobStore):
            fragments, total = self._sql_page(store, limit, offset)
        elif self.scheduler.state != STATE_STOPPED and isinstance(store, MemoryJobStore):
            jobs = store.get_all_jobs()
            end = None if limit is None else offset + limit
            fragments, total = [self._memory_fragment(job) for job in jobs[offset:end]], len(jobs)
        else:  # pending jobs (a stopped scheduler), several or custom stores: no shortcut
            jobs = self.scheduler.get_jobs()
            end = None if limit is None else offset + limit
            fragments, total = [encode(job_to_json(job)) for job in jobs[offset:end]], len(jobs)
        return b"[" + b",".join(fragments) + b"]", total

    def _remember(self, cache: dict[Any, Any], key: Any, value: Any) -> None:
        with self._lock:
            if len(cache) >= CACHE_SIZE:
                cache.clear()  # bounded; a full listing refills it
            cache[key] = value

    def _memory_fragment(self, job: Job) -> bytes:
        fingerprint = _fingerprint(job)
        cached = self._by_identity.get(job.id)
        if cached is not None and all(map(operator.is_, cached[0], fingerprint)):
            return cached[1]
        fragment = encode(job_to_json(job))
        self._remember(self._by_identity, job.id, (fingerprint, fragment))
        return fragment

    def _sql_page(self, store: SQLAlchemyJobStore, limit: int | None,
                  offset: int) -> tuple[list[bytes], int]:
        table = store.jobs_t
        query = select(table.c.job_state).order_by(
            table.c.next_run_time.is_(None), table.c.next_run_time, table.c.id)
        if limit is not None or offset:
            query = query.limit(limit).offset(offset)
        with store.engine.begin() as connection:
            states = connection.execute(query).scalars().all()
            total = (len(states) if limit is None and not offset else
                     connection.execute(select(func.count()).select_from(table)).scalar_one())
        fragments = []
        for state in states:
            fragment = self._by_state.get(state)
            if fragment is None:
                job = store._reconstitute_job(state)
                fragment = encode(job_to_json(job))
                self._remember(self._by_state, state, fragment)
            fragments.append(fragment)
        return fragments, total
