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

import operator
import threading
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from sqlalchemy import Index, func, select
from sqlalchemy.schema import CreateIndex

from .codec import encode_json
from .jobs import job_to_json

CACHE_SIZE = 16384


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
            end = None if limit is None else offset + limit
            if type(store) is MemoryJobStore:
                # Its sorted (job, next run timestamp) list, sliced under the lock APScheduler
                # changes it under: get_all_jobs() would copy all N jobs for one page.
                with self.scheduler._jobstores_lock:
                    jobs = [job for job, _ in store._jobs[offset:end]]
                    total = len(store._jobs)
            else:  # a subclass may keep its jobs elsewhere
                every_job = store.get_all_jobs()
                jobs, total = every_job[offset:end], len(every_job)
            fragments = self._memory_fragments(jobs, end is None and not offset)
        else:  # pending jobs (a stopped scheduler), several or custom stores: no shortcut
            jobs = self.scheduler.get_jobs()
            end = None if limit is None else offset + limit
            fragments = [encode_json(job_to_json(job)) for job in jobs[offset:end]]
            total = len(jobs)
        return b"[" + b",".join(fragments) + b"]", total

    def _remember(self, cache: dict[Any, Any], key: Any, value: Any) -> None:
        with self._lock:
            if len(cache) >= CACHE_SIZE:
                cache.clear()  # bounded; a full listing refills it
            cache[key] = value

    def _memory_fragments(self, jobs: list[Job], complete: bool) -> list[bytes]:
        known = self._by_identity
        fresh: dict[str, tuple[tuple[Any, ...], bytes]] = {}
        fragments = []
        for job in jobs:
            fingerprint = _fingerprint(job)
            cached = known.get(job.id)
            if cached is None or not all(map(operator.is_, cached[0], fingerprint)):
                cached = (fingerprint, encode_json(job_to_json(job)))
                if not complete:
                    self._remember(known, job.id, cached)
            fresh[job.id] = cached
            fragments.append(cached[1])
        if complete:
            self._by_identity = fresh  # exactly the jobs there are: no stale entries kept
        return fragments

    def _sql_page(self, store: SQLAlchemyJobStore, limit: int | None,
                  offset: int) -> tuple[list[bytes], int]:
        table = store.jobs_t
        # Scheduled jobs (by next run time, then id: the index below serves it), then paused
        # ones (by id): two queries, because databases disagree on where NULLs sort.
        scheduled = (select(table.c.job_state).where(table.c.next_run_time.is_not(None))
                     .order_by(table.c.next_run_time, table.c.id))
        paused = (select(table.c.job_state).where(table.c.next_run_time.is_(None))
                  .order_by(table.c.id))
        with store.engine.begin() as connection:
            if limit is None and not offset:
                states = [*connection.execute(scheduled).scalars(),
                          *connection.execute(paused).scalars()]
                total = len(states)
            else:
                total = connection.execute(select(func.count()).select_from(table)).scalar_one()
                running = connection.execute(select(func.count()).select_from(table).where(
                    table.c.next_run_time.is_not(None))).scalar_one()
                states = list(connection.execute(scheduled.limit(limit).offset(offset)).scalars())
                if limit is None or len(states) < limit:
                    rest = None if limit is None else limit - len(states)
                    states += connection.execute(
                        paused.limit(rest).offset(max(0, offset - running))).scalars()
        complete = limit is None and not offset
        known = self._by_state
        fresh: dict[bytes, bytes] = {} if complete else known
        fragments = []
        for state in states:
            fragment = known.get(state)
            if fragment is None:
                fragment = encode_json(job_to_json(store._reconstitute_job(state)))
            fragments.append(fragment)
            if complete:
                fresh[state] = fragment
            elif fragment is not known.get(state):
                self._remember(known, state, fragment)
        if complete:
            self._by_state = fresh  # exactly the jobs there are: no stale entries kept
        return fragments, total


def create_listing_index(store: SQLAlchemyJobStore) -> None:
    """Index (next_run_time, id), so that a page never sorts the whole table.

    Schema work, done when the scheduler starts (never inside a listing, where it would wait
    for the database's write lock like any write).
    """
    index = Index(f"ix_{store.jobs_t.name}_next_run_time_id", store.jobs_t.c.next_run_time,
                  store.jobs_t.c.id)
    with store.engine.begin() as connection:
        connection.execute(CreateIndex(index, if_not_exists=True))
