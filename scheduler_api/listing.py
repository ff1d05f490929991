"""Job listings that cost little for jobs that did not change since the last listing.

Serialising every job on every ``GET /jobs`` dominates a listing (and with the SQL store,
unpickling every job does). A :class:`JobListing` keeps each job's JSON and reuses it while
the job is unchanged:

- SQL store: keyed by the job's pickled state as stored (any change rewrites it), so an
  unchanged job is neither unpickled nor serialised again;
- memory store: keyed by the identity of the job's attributes (APScheduler replaces them on
  every change).

A stored job that cannot be restored (its func's module was removed or renamed by a deploy)
is listed as what could be read of it plus an ``error`` (:func:`broken_job_json`), not cached,
and does not break the listing.

Pages (``limit``/``offset``) follow the listing's order: next run time, paused jobs last,
then id. A ``query`` keeps the jobs whose id or name holds it (case-insensitive), in that
order, and counts them::

    listing = JobListing(scheduler)
    body, total = listing.page(limit=100, offset=0)   # body: a JSON array, as bytes
    body, found = listing.page(50, 0, query="nightly")

A SQL store keeps a job's name only inside its pickled state (APScheduler's table has no
name column), so a search reads every row's state and each job's name is unpickled once, then
kept while its state is the same: no func is imported and only the page's jobs are restored.
A ``LIKE`` on the pickled bytes would not do: pickle writes a name equal to an earlier string
of the state (its id, its func) as a back-reference, and bytes have no case to fold.
"""

from __future__ import annotations

import json
import logging
import operator
import pickle
import threading
from collections.abc import Callable
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from sqlalchemy import Index, Select, func, select
from sqlalchemy.schema import CreateIndex

from . import engine
from .codec import encode_json
from .config import read_snapshot
from .jobs import JSON, iso_8601, job_to_json, trigger_to_json

CACHE_SIZE = 16384
logger = logging.getLogger("scheduler_api")


def restore_error(error: BaseException) -> str:
    """Why a stored job cannot be restored, as its ``error`` field says it."""
    text = f"cannot be restored: {type(error).__name__}: {error}"
    cause = error.__cause__
    return text if cause is None else f"{text} ({type(cause).__name__}: {cause})"


def broken_job_json(job_id: str, state: bytes | None, error: BaseException) -> JSON:
    """A stored job that cannot be restored: ``id``, what its state holds, and ``error``.

    APScheduler keeps the func as a ``module:name`` reference in the pickled state, so the
    rest can usually be read; when the state itself cannot be unpickled (args holding an
    instance of a class that is gone), only the id and the error are shown.
    """
    data: JSON = {"id": job_id}
    try:
        saved = pickle.loads(state) if state is not None else {}  # noqa: S301 - as APScheduler
        data.update({"name": saved["name"], "func": saved["func"], "args": list(saved["args"]),
                     "kwargs": dict(saved["kwargs"]), **trigger_to_json(saved["trigger"]),
                     "misfire_grace_time": saved["misfire_grace_time"],
                     "max_instances": saved["max_instances"], "coalesce": saved["coalesce"],
                     "next_run_time": iso_8601(saved["next_run_time"])})
    except Exception:  # noqa: BLE001 - whatever the state holds, the id and the error show
        data = {"id": job_id}
    data["error"] = restore_error(error)
    return data


def _fingerprint(job: Job) -> tuple[Any, ...]:
    return (job, job.trigger, job.next_run_time, job.name, job.func_ref, job.args, job.kwargs,
            job.misfire_grace_time, job.max_instances, job.coalesce, job.executor)


class JobListing:
    """Listings and pages of a scheduler's jobs as JSON bytes."""

    def __init__(self, scheduler: BaseScheduler) -> None:
        self.scheduler = scheduler
        self._by_state: dict[bytes, bytes] = {}
        self._by_identity: dict[str, tuple[tuple[Any, ...], bytes]] = {}
        #: job id -> (its JSON, its last run's JSON text, both spliced), see _with_last_runs.
        self._spliced: dict[str, tuple[bytes, str | None, bytes]] = {}
        self._lock = threading.Lock()
        self._reported: dict[tuple[str, str], bool] = {}
        #: job id -> (its pickled state, the name in it), see _stored_name.
        self._names: dict[str, tuple[bytes, str]] = {}
        #: Job ids -> each one's last run as JSON text (``last_run``; absent: never ran).
        self.last_runs: Callable[[list[str] | None], dict[str, str]] | None = None

    def page(self, limit: int | None = None, offset: int = 0,
             query: str = "") -> tuple[bytes, int]:
        """The jobs ``[offset, offset + limit)`` as a JSON array, and the number of jobs;
        with a ``query``, of the jobs whose id or name holds it (case-insensitive)."""
        stores = engine.jobstores(self.scheduler)
        store = stores.get("default") if len(stores) == 1 else None
        folded = query.casefold()
        complete = limit is None and not offset and not folded
        end = None if limit is None else offset + limit
        if self.scheduler.state != STATE_STOPPED and isinstance(store, SQLAlchemyJobStore):
            if folded:
                rows = self._sql_matches(store, folded)
                total = len(rows)
                rows = rows[offset:end]
            else:
                rows, total = self._sql_rows(store, limit, offset)
            fragments = self._sql_fragments(store, rows, complete)
            ids = [job_id for _, job_id in rows]
        elif self.scheduler.state != STATE_STOPPED and isinstance(store, MemoryJobStore):
            if folded:
                jobs = _matching(engine.memory_page(self.scheduler, store, 0, None)[0], folded)
                total = len(jobs)
                jobs = jobs[offset:end]
            else:
                jobs, total = engine.memory_page(self.scheduler, store, offset, end)
            fragments = self._memory_fragments(jobs, complete)
            ids = [job.id for job in jobs]
        else:  # pending jobs (a stopped scheduler), several or custom stores: no shortcut
            every_job = self.scheduler.get_jobs()
            if folded:
                every_job = _matching(every_job, folded)
            jobs = every_job[offset:end]
            fragments = [encode_json(job_to_json(job)) for job in jobs]
            ids = [job.id for job in jobs]
            total = len(every_job)
        if self.last_runs is not None and fragments:
            fragments = self._with_last_runs(fragments, ids,
                                             self.last_runs(None if complete else ids),
                                             complete)
        return b"[" + b",".join(fragments) + b"]", total

    def _with_last_runs(self, fragments: list[bytes], job_ids: list[str],
                        last_runs: dict[str, str], complete: bool) -> list[bytes]:
        """Each job's JSON with its ``last_run`` (:func:`splice_last_run`), reused while both
        are the same objects as last time (the fragments and the last runs are cached
        upstream: an unchanged job with an unchanged last run costs two identity checks)."""
        known = self._spliced
        fresh: dict[str, tuple[bytes, str | None, bytes]] = {}
        spliced = []
        for fragment, job_id in zip(fragments, job_ids, strict=True):
            summary = last_runs.get(job_id)
            cached = known.get(job_id)
            if cached is None or cached[0] is not fragment or cached[1] is not summary:
                cached = (fragment, summary, splice_last_run(fragment, summary))
                if not complete:
                    self._remember(known, job_id, cached)
            if complete:
                fresh[job_id] = cached
            spliced.append(cached[2])
        if complete:
            self._spliced = fresh  # exactly the jobs there are: no stale entries kept
        return spliced

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

    def _sql_rows(self, store: SQLAlchemyJobStore, limit: int | None,
                  offset: int) -> tuple[list[Any], int]:
        """The (job_state, id) rows ``[offset, offset + limit)`` in the listing's order, and
        the number of jobs."""
        scheduled, paused = _ordered(store)
        with read_snapshot(store.engine) as connection:  # counts and rows agree
            if limit is None and not offset:  # all(): one fetch, not one call per row
                rows = [*connection.execute(scheduled).all(), *connection.execute(paused).all()]
                return rows, len(rows)
            total = connection.execute(select(func.count()).select_from(store.jobs_t)).scalar_one()
            running = connection.execute(select(func.count()).select_from(store.jobs_t).where(
                store.jobs_t.c.next_run_time.is_not(None))).scalar_one()
            rows = list(connection.execute(scheduled.limit(limit).offset(offset)))
            if limit is None or len(rows) < limit:
                rest = None if limit is None else limit - len(rows)
                rows += connection.execute(paused.limit(rest).offset(max(0, offset - running)))
        return rows, total

    def _sql_matches(self, store: SQLAlchemyJobStore, folded: str) -> list[Any]:
        """The (job_state, id) rows, in the listing's order, of the jobs whose id or name
        holds ``folded`` (casefolded)."""
        rows, _ = self._sql_rows(store, None, 0)
        names = self._names
        if len(names) > max(CACHE_SIZE, 2 * len(rows)):
            names.clear()  # deleted jobs' entries: bounded; this search refills it
        return [row for row in rows if folded in row[1].casefold()
                or folded in self._stored_name(row[1], row[0]).casefold()]

    def _stored_name(self, job_id: str, state: bytes) -> str:
        """The name in a job's pickled state, unpickled once per state (the job is not
        restored: its func is not imported); "" when the state cannot be read."""
        cached = self._names.get(job_id)
        if cached is not None and cached[0] == state:
            return cached[1]
        try:
            name = str(pickle.loads(state)["name"])  # noqa: S301 - as APScheduler does
        except Exception:  # noqa: BLE001 - unreadable (a class in its args is gone): found by id
            return ""  # not kept: a later deploy may bring the class back
        with self._lock:
            self._names[job_id] = (state, name)
        return name

    def _sql_fragments(self, store: SQLAlchemyJobStore, rows: list[Any],
                       complete: bool) -> list[bytes]:
        """Each row's job as JSON, reused while its state is the same."""
        known = self._by_state
        fresh: dict[bytes, bytes] = {} if complete else known
        fragments = []
        for state, job_id in rows:
            fragment = known.get(state)
            if fragment is None:
                try:
                    job = engine.restore_job(store, state)
                except Exception as exc:  # noqa: BLE001 - its module is gone, say: shown
                    # with its error, never cached (a later deploy may bring the module back)
                    self._report_broken(job_id, exc)
                    fragments.append(encode_json(broken_job_json(job_id, state, exc)))
                    continue
                fragment = encode_json(job_to_json(job))
            fragments.append(fragment)
            if complete:
                fresh[state] = fragment
            elif fragment is not known.get(state):
                self._remember(known, state, fragment)
        if complete:
            self._by_state = fresh  # exactly the jobs there are: no stale entries kept
        return fragments

    def _report_broken(self, job_id: str, error: BaseException) -> None:
        """Log a job that cannot be restored: once per job and error, not per listing."""
        key = (job_id, restore_error(error))
        if key not in self._reported:
            self._remember(self._reported, key, True)
            logger.warning("job %s %s; it is listed with its error until it is deleted",
                           job_id, key[1])

    def job_ids(self) -> list[str]:
        """The ids of every job in every store (a SQL store's without restoring them)."""
        ids: list[str] = []
        for store in engine.jobstores(self.scheduler).values():
            if isinstance(store, SQLAlchemyJobStore):
                with store.engine.connect() as connection:
                    ids += connection.execute(select(store.jobs_t.c.id)).scalars()
            else:
                ids += [job.id for job in store.get_all_jobs()]
        return ids

    def stored_state(self, job_id: str) -> bytes | None:
        """The pickled state of a job in a SQL store, as stored; None if there is none."""
        for store in engine.jobstores(self.scheduler).values():
            if isinstance(store, SQLAlchemyJobStore):
                with store.engine.begin() as connection:
                    state = connection.execute(select(store.jobs_t.c.job_state).where(
                        store.jobs_t.c.id == job_id)).scalar()
                if state is not None:
                    return state  # type: ignore[no-any-return]
        return None


def _ordered(store: SQLAlchemyJobStore) -> tuple[Select[Any], Select[Any]]:
    """The (job_state, id) rows of the scheduled jobs (by next run time, then id: the index
    below serves it), and of the paused ones (by id): two queries, because databases
    disagree on where NULLs sort."""
    table = store.jobs_t
    scheduled = (select(table.c.job_state, table.c.id)
                 .where(table.c.next_run_time.is_not(None))
                 .order_by(table.c.next_run_time, table.c.id))
    paused = (select(table.c.job_state, table.c.id).where(table.c.next_run_time.is_(None))
              .order_by(table.c.id))
    return scheduled, paused


def _matching(jobs: list[Job], folded: str) -> list[Job]:
    """The jobs whose id or name holds ``folded`` (casefolded)."""
    return [job for job in jobs
            if folded in job.id.casefold() or folded in str(job.name).casefold()]


def with_last_run(data: JSON, last_run: str | None) -> JSON:
    """A job's JSON (a dict) with its ``last_run`` (JSON text; None: null, it never ran)."""
    data["last_run"] = None if last_run is None else json.loads(last_run)
    return data


def splice_last_run(fragment: bytes, last_run: str | None) -> bytes:
    """A job's JSON object with its ``last_run`` (JSON text; None: null, it never ran)."""
    return fragment[:-1] + b',"last_run":' + (
        b"null" if last_run is None else last_run.encode()) + b"}"


def create_listing_index(store: SQLAlchemyJobStore) -> None:
    """Index (next_run_time, id), so that a page never sorts the whole table.

    Schema work, done when the scheduler starts (never inside a listing, where it would wait
    for the database's write lock like any write).
    """
    index = Index(f"ix_{store.jobs_t.name}_next_run_time_id", store.jobs_t.c.next_run_time,
                  store.jobs_t.c.id)
    with store.engine.begin() as connection:
        connection.execute(CreateIndex(index, if_not_exists=True))
