"""The one place that reaches into APScheduler's internals.

Everything else in ``scheduler_api`` uses APScheduler's public API and the functions here:
the job stores and executors by name, the memory store's sorted jobs for a page, a stored
job's restoration, a run submitted now, the executors' pools and the scheduling thread
revived, the job-store lock replaced, jitter and a calendar trigger's time of day, and the
executor that starts a job only once the store has its next run time
(:class:`StoreFirstThreadPoolExecutor`). A new APScheduler 3.x release that renames one of
them breaks this module alone.

APScheduler 3 trusts its triggers and job stores: it computes every fire time a trigger asks
for, while it holds its job-store lock. Two kinds of schedule make that unbounded work:

* a cron whose fields never match together (``week="1", month="6"``): ``CronTrigger``
  searches year after year until 9999 (seconds of CPU per call, many per ``or``);
* a job whose next run time lies far in the past (year 1, or a store written long ago):
  ``Job._get_run_times`` lists every fire time from then until now, one a second for a
  one-second interval, which exhausts memory while the scheduler is locked.

This module bounds both. :func:`next_fire_time` computes a trigger's fire times within a
:class:`Budget` (a search horizon per cron, a wall-clock deadline for the whole trigger
tree), for validating a trigger before any scheduler lock is taken. :func:`bound_catch_up`
makes a scheduler move a job that is far behind to its first fire time in the
``misfire_grace_time`` window (or at or after now) before APScheduler lists its run times,
so that one scheduling step never lists more than :data:`MAX_RUN_TIMES` of them.
"""

from __future__ import annotations

import copy
import logging
import pickle
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from functools import partial
from typing import Any

from apscheduler.events import (
    EVENT_JOB_MODIFIED,
    EVENT_JOB_REMOVED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.base import BaseExecutor
from apscheduler.executors.base import run_job as base_run_job
from apscheduler.executors.pool import BasePoolExecutor, ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import STATE_RUNNING, STATE_STOPPED, BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import Connection, bindparam, select

from .errors import MODIFY_ATTEMPTS, JobKeptChanging

logger = logging.getLogger("scheduler_api")

#: How far a cron searches for its next fire time: 400 years, one full cycle of the
#: Gregorian calendar (weekdays and ISO weeks included). A pattern (without a year field)
#: that fires at all fires within any such span; ``week="1", month="6"`` never does.
CRON_HORIZON = timedelta(days=146_097)
CRON_HORIZON_YEARS = 400
#: Wall-clock time to validate one trigger tree: its first two fire times, every leaf.
VALIDATION_SECONDS = 0.25
#: CPU time one cron search may take (a thread's, so that a paused or busy machine does not
#: cut a legitimate search short): ordinary crons take microseconds; ``week="1"`` with
#: ``month="2-11"`` steps day by day through 400 years (0.9 s, 5 s with 64 expressions).
SEARCH_CPU_SECONDS = 0.05
#: Steps an ``and`` takes to make its triggers agree (``jobs.BoundedAndTrigger`` too).
AND_MAX_STEPS = 1000
#: Run times one scheduling step lists for one job; beyond them, a job is moved forward.
MAX_RUN_TIMES = 1000
#: Wall-clock time one scheduling step spends finding out whether a job is far behind.
CATCH_UP_SECONDS = 0.05
#: Due jobs one scheduling step takes from a SQL store, at most (the earliest first): of
#: 5,000 jobs due at once, the first start once 100 are unpickled and written, not once all
#: 5,000 are; the next step follows at once.
DUE_JOBS_PER_STEP = 100
#: How long after a full step (DUE_JOBS_PER_STEP due jobs: more are waiting) this process
#: counts as dispatching a backlog (see :func:`dispatching`).
BACKLOG_SECONDS = 0.1
#: time.monotonic() until which a scheduler of this process dispatches a backlog.
_backlog_until = 0.0


def dispatching() -> bool:
    """Whether a scheduler of this process is working through a backlog of due jobs (its
    last step took all it may take, within BACKLOG_SECONDS).

    Background writers (the run history's) wait meanwhile: the GIL and the database's write
    lock go to starting jobs first.
    """
    return time.monotonic() < _backlog_until


class Unschedulable(ValueError):
    """A trigger's fire times cannot be computed within the budget (or at all)."""

    def __init__(self, trigger: BaseTrigger, problem: str, field: str | None = None) -> None:
        super().__init__(problem)
        self.trigger = trigger
        self.problem = problem
        self.field = field


class Budget:
    """A wall-clock deadline shared by every fire time computed for one trigger tree."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = VALIDATION_SECONDS if seconds is None else seconds
        self.deadline = time.monotonic() + self.seconds

    def check(self, trigger: BaseTrigger) -> None:
        if time.monotonic() > self.deadline:
            raise Unschedulable(trigger, f"its fire times take more than {self.seconds:g} s "
                                "to compute (the budget for the whole trigger)")


# -- fire times within a budget (validation, before any scheduler lock) ---------------------

def next_fire_time(trigger: BaseTrigger, previous: datetime | None, now: datetime,
                   budget: Budget) -> datetime | None:
    """``trigger.get_next_fire_time(previous, now)``, within ``budget``.

    Raises :class:`Unschedulable` when a cron would search past :data:`CRON_HORIZON`, when
    the budget runs out, or when an ``and`` never fires (its triggers never agree).
    """
    budget.check(trigger)
    if isinstance(trigger, CronTrigger):
        return _cron_next(trigger, previous, now, budget)
    if isinstance(trigger, OrTrigger):
        times = [next_fire_time(child, previous, now, budget) for child in trigger.triggers]
        found = [fire_time for fire_time in times if fire_time is not None]
        return trigger._apply_jitter(min(found), trigger.jitter, now) if found else None  # type: ignore[no-any-return]
    if isinstance(trigger, AndTrigger):
        result = _and_next(trigger, previous, now, budget)
        if result is None and previous is None:
            raise Unschedulable(trigger, "the triggers of an 'and' never fire at the same time",
                                field="triggers")
        return result
    return trigger.get_next_fire_time(previous, now)  # type: ignore[no-any-return]


def _and_next(trigger: AndTrigger, previous: datetime | None, now: datetime,
              budget: Budget) -> datetime | None:
    last: list[datetime] = []
    for _ in range(AND_MAX_STEPS):
        times = [next_fire_time(child, previous, now, budget) for child in trigger.triggers]
        found = [fire_time for fire_time in times if fire_time is not None]
        if len(found) < len(times) or found == last:  # no fire time, or no progress
            return None
        if min(found) == max(found):
            return apply_jitter(trigger, found[0], now)
        now, last = max(found), found
    return None


class SearchTooLong(Exception):
    """A cron search ran past its CPU time (see :func:`cron_search`)."""


class _EndOrDeadline(datetime):
    """An end date that also ends the search once the thread has spent its CPU time.

    ``CronTrigger.get_next_fire_time`` compares each date it steps to with its end date; a
    date compared with this subclass asks this one first (Python tries a subclass's
    reflected comparison first), so the search can be stopped between two steps.
    """

    cpu_deadline: float

    def __lt__(self, other: object) -> bool:
        if time.thread_time() > self.cpu_deadline:
            raise SearchTooLong
        return datetime.__lt__(self, other)  # type: ignore[operator]


def cron_search(trigger: CronTrigger, previous: datetime | None, now: datetime,
                cpu_seconds: float = SEARCH_CPU_SECONDS) -> tuple[datetime | None, bool]:
    """A cron's next fire time, searched at most :data:`CRON_HORIZON` ahead and for at most
    ``cpu_seconds`` of this thread's CPU time (SearchTooLong past it); and whether the
    horizon (not the trigger's own end) cut the search short."""
    # Where CronTrigger.get_next_fire_time starts its search.
    if previous is not None:
        start = min(now, previous + timedelta(microseconds=1))
    else:
        start = max(now, trigger.start_date) if trigger.start_date else now
    try:
        horizon = start + CRON_HORIZON
    except OverflowError:  # within 400 years of 9999: the search ends there by itself
        horizon = datetime.max.replace(tzinfo=start.tzinfo)
    end = horizon if trigger.end_date is None else min(trigger.end_date, horizon)
    # CronTrigger checks its end date at every step of its search: a copy ending at the
    # horizon (or the deadline) gives up there instead of searching until the year 9999.
    # (The base class's method: a bounded subclass would come back here.)
    bounded = copy.copy(trigger)
    bounded.end_date = _EndOrDeadline(end.year, end.month, end.day, end.hour, end.minute,
                                      end.second, end.microsecond, end.tzinfo, fold=end.fold)
    bounded.end_date.cpu_deadline = time.thread_time() + cpu_seconds
    fire_time = CronTrigger.get_next_fire_time(bounded, previous, now)
    if fire_time is not None and type(fire_time) is _EndOrDeadline:  # min(date, end date)
        fire_time = end
    cut_short = fire_time is None and (trigger.end_date is None or trigger.end_date > horizon)
    return fire_time, cut_short


def _cron_next(trigger: CronTrigger, previous: datetime | None, now: datetime,
               budget: Budget) -> datetime | None:
    cpu_seconds = min(SEARCH_CPU_SECONDS, max(0.0, budget.deadline - time.monotonic()))
    try:
        fire_time, cut_short = cron_search(trigger, previous, now, cpu_seconds)
    except SearchTooLong:
        raise Unschedulable(trigger, f"{describe(trigger)}: one fire time takes more than "
                            f"{cpu_seconds:.2g} s to compute") from None
    if cut_short:
        raise Unschedulable(trigger, f"{describe(trigger)} does not fire within "
                            f"{CRON_HORIZON_YEARS} years")
    return fire_time


def describe(trigger: BaseTrigger, limit: int = 120) -> str:
    """The trigger as APScheduler prints it, cut to ``limit`` characters (a cron field may
    be long: an error message or a log line does not repeat a whole request body)."""
    text = str(trigger)
    return text if len(text) <= limit else text[:limit] + "..."


#: Plain trigger class -> its bounded subclass (registered by :mod:`scheduler_api.jobs`,
#: where they are defined, so that jobs stored earlier keep unpickling).
BOUNDED_TRIGGERS: dict[type, type] = {}


def bound_trigger(trigger: BaseTrigger) -> None:
    """Make a trigger (and those it combines) its bounded subclass, in place.

    A job stored by plain APScheduler (or an older version) carries triggers that may search
    for ever (a cron that never fires searches until 9999; an 'and' whose parts never agree
    never stops); the scheduler swaps them as it loads due jobs, and the store gets the
    bounded ones back with the job's next run time.
    """
    bounded = BOUNDED_TRIGGERS.get(type(trigger))
    if bounded is not None:
        trigger.__class__ = bounded  # a subclass with no slots of its own: same layout
    for child in getattr(trigger, "triggers", ()):
        bound_trigger(child)


# -- catching up with a job far behind (in the scheduling thread) --------------------------

def first_fire_time_from(trigger: BaseTrigger, moment: datetime) -> datetime | None:
    """The trigger's first fire time at or after ``moment``, without walking from the past.

    May be earlier than ``moment`` for a trigger class this module does not know.
    """
    if isinstance(trigger, DateTrigger):
        return trigger.run_date if trigger.run_date >= moment else None
    if isinstance(trigger, CalendarIntervalTrigger):
        return _calendar_from(trigger, moment)
    if isinstance(trigger, OrTrigger):
        times = [first_fire_time_from(child, moment) for child in trigger.triggers]
        found = [fire_time for fire_time in times if fire_time is not None]
        return min(found) if found else None
    if isinstance(trigger, AndTrigger):
        for _ in range(AND_MAX_STEPS):
            times = [first_fire_time_from(child, moment) for child in trigger.triggers]
            found = [fire_time for fire_time in times if fire_time is not None]
            if len(found) < len(times):
                return None
            if min(found) == max(found):
                return found[0]
            moment = max(found)
        return None
    # Interval and cron triggers compute their first fire time after `moment` directly.
    return trigger.get_next_fire_time(None, moment)  # type: ignore[no-any-return]


def _calendar_from(trigger: CalendarIntervalTrigger, moment: datetime) -> datetime | None:
    """A calendarinterval's first fire time at or after ``moment``.

    Its ``get_next_fire_time(None, now)`` is always its start date, however long ago; so
    jump close to ``moment`` by arithmetic, then step as APScheduler does.
    """
    start: date = trigger.start_date
    target = moment.astimezone(trigger.timezone).date()
    step_days = trigger.weeks * 7 + trigger.days
    step_months = trigger.years * 12 + trigger.months
    previous: date | None = None
    if target > start + timedelta(days=2):
        if not step_months:
            count = (target - start).days // step_days - 1
            previous = start + timedelta(days=step_days * count) if count > 0 else None
        elif not step_days:
            months = (target.year - start.year) * 12 + target.month - start.month
            count = months // step_months - 1
            while count > 0 and previous is None:  # a day 29-31 that this month lacks
                month = start.month - 1 + count * step_months
                try:
                    previous = date(start.year + month // 12, month % 12 + 1, start.day)
                except ValueError:
                    count -= 1
    fire_time = (trigger.get_next_fire_time(None, moment) if previous is None else
                 trigger.get_next_fire_time(datetime.combine(previous, trigger._time), moment))
    # Months and days together (or the last few steps): step, at most ~120,000 times.
    while fire_time is not None and fire_time < moment:
        fire_time = trigger.get_next_fire_time(fire_time, moment)
    return fire_time  # type: ignore[no-any-return]


def _backlog_is_bounded(job: Job, start: datetime | None, now: datetime,
                        deadline: float) -> tuple[bool, datetime | None]:
    """Whether APScheduler would list at most MAX_RUN_TIMES run times from ``start``.

    Returns (bounded, the last fire time reached).
    """
    fire_time = start
    for _ in range(MAX_RUN_TIMES):
        if fire_time is None or fire_time > now:
            return True, fire_time
        fire_time = job.trigger.get_next_fire_time(fire_time, now)
        if time.monotonic() > deadline:
            break
    return fire_time is None or fire_time > now, fire_time


def _catch_up(job: Job, now: datetime) -> str:
    """Move a job that is far behind; "due" (APScheduler lists its run times), "moved"
    (its next run time was moved past now) or "gone" (it has no fire time left)."""
    next_run_time = job.next_run_time
    if next_run_time is None or next_run_time > now:
        return "due"
    deadline = time.monotonic() + CATCH_UP_SECONDS
    bounded, reached = _backlog_is_bounded(job, next_run_time, now, deadline)
    if bounded:
        return "due"
    # Run times before now - misfire_grace_time would only be reported missed: start at the
    # window; if even the window holds too many, at the first fire time at or after now.
    moments = [now] if job.misfire_grace_time is None else [
        now - timedelta(seconds=job.misfire_grace_time), now]
    # Failing both (a trigger class that cannot jump ahead): move to where the walk got, so
    # that the next steps go on from there.
    target, outcome = reached, "moved"
    for moment in moments:
        candidate = first_fire_time_from(job.trigger, moment)
        if candidate is not None and candidate < moment:
            break
        if _backlog_is_bounded(job, candidate, now, time.monotonic() + CATCH_UP_SECONDS)[0]:
            target = candidate
            outcome = "due" if candidate is not None and candidate <= now else "moved"
            break
    logger.warning("job %.100r was due at %s, more than %d run times (or %g s of computing) "
                   "ago: its next run time is moved to %s", job.id, next_run_time,
                   MAX_RUN_TIMES, CATCH_UP_SECONDS, target)
    if target is None:
        return "gone"
    job._modify(next_run_time=target)
    return outcome


def _due_jobs(store: BaseJobStore, get_due_jobs: Callable[[datetime], list[Job]],
              now: datetime) -> list[Job]:
    """The store's due jobs (``get_due_jobs``: its own method); of a SQL store, the earliest
    :data:`DUE_JOBS_PER_STEP`.

    As ``SQLAlchemyJobStore.get_due_jobs``, with a limit: a job that cannot be restored is
    logged and removed, as APScheduler does.
    """
    if type(store) is not SQLAlchemyJobStore:
        return get_due_jobs(now)
    table = store.jobs_t
    query = (select(table.c.id, table.c.job_state)
             .where(table.c.next_run_time <= datetime_to_utc_timestamp(now))
             .order_by(table.c.next_run_time).limit(DUE_JOBS_PER_STEP))
    jobs: list[Job] = []
    failed: set[str] = set()
    # In a step, the states read: the step writes a job only over the state it read.
    read = _step.read.setdefault(id(store), {}) if in_scheduling_step() else {}
    with store.engine.begin() as connection:
        for row in connection.execute(query):
            try:
                jobs.append(store._reconstitute_job(row.job_state))
                read[row.id] = row.job_state
            except BaseException:
                store._logger.exception('Unable to restore job "%s" -- removing it', row.id)
                failed.add(row.id)
        if failed:
            connection.execute(table.delete().where(table.c.id.in_(failed)))
    return jobs


def _bounded_due_jobs(store: BaseJobStore, get_due_jobs: Callable[[datetime], list[Job]],
                      removed: Callable[[str], None]) -> Callable[..., list[Job]]:
    def get_bounded_due_jobs(now: datetime) -> list[Job]:
        global _backlog_until
        due = []
        jobs = _due_jobs(store, get_due_jobs, now)
        if len(jobs) >= DUE_JOBS_PER_STEP and type(store) is SQLAlchemyJobStore:
            _backlog_until = time.monotonic() + BACKLOG_SECONDS
        for job in jobs:
            bound_trigger(job.trigger)
            outcome = _catch_up(job, now)
            if outcome == "due":
                due.append(job)
            elif outcome == "moved":
                store.update_job(job)  # not due now: keep the scheduler from waking at once
            else:
                try:
                    store.remove_job(job.id)
                except JobLookupError:
                    continue
                removed(job.id)  # as APScheduler's remove_job does: listeners hear of it
        return due

    get_bounded_due_jobs.bounded = True  # type: ignore[attr-defined]
    return get_bounded_due_jobs


def _announce_removal(scheduler: BaseScheduler, store: BaseJobStore, alias: str,
                      job_id: str) -> None:
    """Tell listeners the job was removed from ``store``: in a scheduling step, once the
    step has written the removal, and not at all if it was refused (another process changed
    the job meanwhile: it stays)."""
    def announce() -> None:
        scheduler._dispatch_event(JobEvent(EVENT_JOB_REMOVED, job_id, alias))

    steps = getattr(_step, "stores", None)
    writes = steps.get(id(store)) if steps else None
    if writes is not None and job_id in writes.removals:
        writes.announcements[job_id] = announce
    else:
        announce()


def _removal_announced_once_written(scheduler: BaseScheduler) -> Callable[..., None]:
    """``scheduler.remove_job``; in a scheduling step (a job with no fire time left), its
    event is dispatched by :func:`_announce_removal`. APScheduler's dispatches it before the
    step's write, which may be refused."""
    remove_job = scheduler.remove_job

    def remove_job_announced_once_written(job_id: str, jobstore: str | None = None) -> None:
        if not in_scheduling_step():
            remove_job(job_id, jobstore)
            return
        with scheduler._jobstores_lock:
            for alias, store in scheduler._jobstores.items():
                if jobstore in (None, alias):
                    try:
                        store.remove_job(job_id)
                    except JobLookupError:
                        continue
                    break
            else:
                raise JobLookupError(job_id)
        _announce_removal(scheduler, store, alias, job_id)
        scheduler._logger.info("Removed job %s", job_id)  # as APScheduler logs it

    return remove_job_announced_once_written


def _next_run_time_after_writes(store: BaseJobStore,
                                get_next_run_time: Callable[[], Any]) -> Callable[[], Any]:
    """``store.get_next_run_time``, first committing the writes of the current scheduling
    step to the store (APScheduler asks it right after processing the store's due jobs):
    the next wake-up is computed from the new next run times, never from the old ones."""
    def get_next_run_time_after_writes() -> Any:
        steps = getattr(_step, "stores", None)
        writes = steps.pop(id(store), None) if steps else None
        if writes is not None:
            writes.commit()
        return get_next_run_time()

    return get_next_run_time_after_writes


def bound_catch_up(scheduler: BaseScheduler) -> None:
    """Make every scheduling step of ``scheduler`` list at most MAX_RUN_TIMES per job.

    Wraps ``scheduler._process_jobs`` so that each job store's ``get_due_jobs`` (stores added
    later included) hands APScheduler jobs whose backlog is bounded (see :func:`_catch_up`),
    at most :data:`DUE_JOBS_PER_STEP` of a SQL store per step. A step's job writes reported
    to a :class:`StoreFirstThreadPoolExecutor` are committed together, once per store and
    step (see :class:`_StepWrites`). Idempotent.
    """
    process_jobs = scheduler._process_jobs
    if getattr(process_jobs, "bounded", False):
        return

    def process_bounded_jobs() -> Any:
        # The stores' lock (re-entrant) is held for the whole step, as APScheduler's step
        # holds it, so that shutdown() cannot close the executors between the check below
        # and the step.
        with scheduler._jobstores_lock:
            # APScheduler's loop runs one more step once shutdown() has closed the executors:
            # each due job would go to a closed pool, its run be lost and logged as an error
            # (every overdue job of a paused scheduler, at each shutdown).
            if scheduler.state == STATE_STOPPED:
                return None
            for alias, store in scheduler._jobstores.items():
                if not getattr(store.get_due_jobs, "bounded", False):
                    store.get_next_run_time = _next_run_time_after_writes(
                        store, store.get_next_run_time)
                    store.get_due_jobs = _bounded_due_jobs(store, store.get_due_jobs, partial(
                        _announce_removal, scheduler, store, alias))
            _step.stores, _step.read = {}, {}
            try:
                return process_jobs()
            finally:
                # Normally committed already (get_next_run_time); after an error, now.
                stores, _step.stores = _step.stores, None
                try:
                    for writes in stores.values():
                        writes.commit()
                finally:
                    _step.read = {}

    process_bounded_jobs.bounded = True  # type: ignore[attr-defined]
    scheduler._process_jobs = process_bounded_jobs  # type: ignore[method-assign]
    scheduler.remove_job = _removal_announced_once_written(  # type: ignore[method-assign]
        scheduler)


def build_trigger(scheduler: BaseScheduler, trigger: object,
                  trigger_args: dict[str, Any]) -> BaseTrigger:
    """The trigger APScheduler's ``add_job(trigger=..., **trigger_args)`` would build."""
    return scheduler._create_trigger(trigger, trigger_args)  # type: ignore[no-any-return]


# -- the scheduler's parts, for the rest of the package -----------------------------------

def jobstores(scheduler: BaseScheduler) -> dict[str, BaseJobStore]:
    """The scheduler's job stores by alias (a copy: stores may be added meanwhile)."""
    return dict(scheduler._jobstores)


def executors(scheduler: BaseScheduler) -> dict[str, BaseExecutor]:
    """The scheduler's executors by alias (a copy)."""
    return dict(scheduler._executors)


def executor_names(scheduler: BaseScheduler) -> list[str]:
    return list(scheduler._executors)


def wrap_store_lock(scheduler: BaseScheduler, wrap: Callable[[Any], Any]) -> None:
    """Replace the lock APScheduler takes around its job stores with ``wrap(lock)``, once."""
    lock = scheduler._jobstores_lock
    if not getattr(lock, "wrapped", False):
        scheduler._jobstores_lock = wrap(lock)
        scheduler._jobstores_lock.wrapped = True


def memory_page(scheduler: BaseScheduler, store: MemoryJobStore, offset: int,
                end: int | None) -> tuple[list[Job], int]:
    """The jobs ``[offset, end)`` of a memory store in run order, and how many it holds.

    Its sorted (job, timestamp) list is sliced under the lock APScheduler changes it under:
    ``get_all_jobs()`` would copy all N jobs for one page. A subclass may keep its jobs
    elsewhere, so it is asked through the public API.
    """
    if type(store) is not MemoryJobStore:
        every_job = store.get_all_jobs()
        return every_job[offset:end], len(every_job)
    with scheduler._jobstores_lock:
        return [job for job, _ in store._jobs[offset:end]], len(store._jobs)


def restore_job(store: SQLAlchemyJobStore, state: bytes) -> Job:
    """The job a SQL store's pickled ``job_state`` holds (as the store itself restores it)."""
    return store._reconstitute_job(state)  # type: ignore[no-any-return]


class ManualRun(list):  # type: ignore[type-arg]
    """The run times of a run asked for (``run_job``), not fired by the trigger: a list, as
    executors expect, that a recording executor can tell apart."""


def run_now(scheduler: BaseScheduler, job: Job, jobstore: str | None) -> None:
    """Submit ``job`` to its executor now, as a scheduled run would be (events fire and
    ``max_instances`` holds: MaxInstancesReachedError), without changing its schedule."""
    executor = scheduler._lookup_executor(job.executor)
    run_time = datetime.now(scheduler.timezone)
    executor.submit_job(job, ManualRun([run_time]))
    scheduler._dispatch_event(JobSubmissionEvent(EVENT_JOB_SUBMITTED, job.id, jobstore,
                                                 [run_time]))


def revive_executors(scheduler: BaseScheduler) -> None:
    """Give pool executors whose pool APScheduler's ``shutdown()`` killed a new one.

    ``start()`` does not renew them, so jobs would never run again after a shutdown/start
    cycle.
    """
    for executor in scheduler._executors.values():
        if isinstance(executor, BasePoolExecutor):
            pool = executor._pool
            if getattr(pool, "_shutdown", False) or getattr(pool, "_shutdown_thread", False):
                executor._pool = type(pool)(max_workers=pool._max_workers)


def revive_main_loop(scheduler: BaseScheduler) -> bool:
    """Start a new scheduling thread if a started scheduler's has died; True if it had.

    APScheduler's loop does not survive every database error (a store that fails between
    ``get_due_jobs()`` and ``get_next_run_time()`` kills its thread), after which nothing
    would run again.
    """
    thread = getattr(scheduler, "_thread", None)
    if thread is None or thread.is_alive() or scheduler.state == STATE_STOPPED:
        return False
    thread = threading.Thread(target=scheduler._main_loop, name="APScheduler",
                              daemon=getattr(scheduler, "_daemon", True))
    scheduler._thread = thread
    thread.start()
    return True


def apply_jitter(trigger: BaseTrigger, fire_time: datetime, now: datetime) -> datetime:
    """``fire_time`` with the trigger's jitter, as APScheduler's own triggers apply it."""
    return trigger._apply_jitter(fire_time, trigger.jitter, now)  # type: ignore[no-any-return]


def calendar_time_of_day(trigger: CalendarIntervalTrigger) -> time_of_day:
    """The time of day a calendarinterval fires at (no public accessor in APScheduler 3)."""
    return trigger._time  # type: ignore[no-any-return]


class StoreFirstThreadPoolExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    """APScheduler's thread pool, starting each job only once its next run time is stored.

    APScheduler submits a due job to its executor *before* it writes the job's next run time
    back to the store. If the process dies in between (kill -9, OOM), the job has run but the
    store still says it is due, and the next leader runs it again. The write can take a while
    (an fsync; another writer holding SQLite's lock), so that window is real. This executor
    holds each submission until the store has the job's new state (its ``update_job`` or
    ``remove_job`` returned; in a scheduling step, a SQL store's writes are committed together
    when the step's due jobs are processed, see :func:`bound_catch_up`), or at the latest
    until the scheduler announces it (``EVENT_JOB_SUBMITTED``, dispatched after the whole
    batch of due jobs was written), which leaves a window of microseconds; a submission whose
    write failed is dropped (the job is still due: the next step submits it again). A step
    takes at most :data:`DUE_JOBS_PER_STEP` due jobs from a SQL store: of 5,000 jobs due at
    once, the first start after 100 are written in one commit, not after the 5,000th::

        scheduler.configure(executors={"default": StoreFirstThreadPoolExecutor(10)})

    ``run_job`` is the function each run goes through: APScheduler's, or a recorder's
    (:meth:`scheduler_api.recorder.RunRecorder.run_job`).
    """

    def __init__(self, max_workers: int = 10, pool_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(max_workers, pool_kwargs)
        self.run_job: Callable[..., list[Any]] = base_run_job
        self._held: dict[str, list[tuple[Job, list[datetime]]]] = {}
        self._held_lock = threading.Lock()

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        scheduler.add_listener(self._release, EVENT_JOB_SUBMITTED)
        for store in jobstores(scheduler).values():
            _after_writes(store, self._release_job, self._drop_job)

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        if isinstance(run_times, ManualRun):  # nothing to store first
            self._submit(job, run_times)
            return
        with self._held_lock:
            self._held.setdefault(job.id, []).append((job, run_times))

    def _release_job(self, job_id: str) -> None:
        with self._held_lock:
            held = self._held.pop(job_id, ())
        for job, run_times in held:
            self._submit(job, run_times)

    def _drop_job(self, job_id: str) -> None:
        """Its next run time could not be stored (it stays due in the store: the scheduler
        submits it again), or another process changed the job meanwhile (the next step reads
        it as it now is): it did not run, so it is no running instance either."""
        with self._held_lock:
            held = self._held.pop(job_id, ())
        for _ in held:
            self._run_job_success(job_id, [])

    def _release(self, event: object = None) -> None:
        with self._held_lock:
            held, self._held = self._held, {}
        for submissions in held.values():
            for job, run_times in submissions:
                self._submit(job, run_times)

    def _submit(self, job: Job, run_times: list[datetime]) -> None:
        """APScheduler's pool submission, through ``self.run_job``."""
        def done(future: Any) -> None:
            error = future.exception()
            if error is not None:
                self._run_job_error(job.id, error, error.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        try:
            future = self._pool.submit(self.run_job, job, job._jobstore_alias, run_times,
                                       self._logger.name)
        except RuntimeError as error:
            # The pool was shut down while the scheduler wrote the job (a shutdown racing a
            # scheduling step): the run does not happen, its instance is given back, and the
            # scheduling thread, whose store write called this, goes on.
            self._run_job_error(job.id, error, error.__traceback__)
            return
        future.add_done_callback(done)

    def shutdown(self, wait: bool = True) -> None:
        self._release()
        super().shutdown(wait)


#: Per thread: while it runs a scheduling step, ``stores`` maps id(store) -> _StepWrites.
_step = threading.local()


def in_scheduling_step() -> bool:
    """Whether this thread runs a scheduling step now: a job it removes is removed by the
    scheduler itself (no fire time left, or its executor gone)."""
    return getattr(_step, "stores", None) is not None


class _StepWrites:
    """The job writes of one SQL store in one scheduling step, committed in one transaction.

    APScheduler writes each due job's next run time (or removes it) in a transaction of its
    own: for 5,000 due jobs, 5,000 commits, while the jobs wait to start (store first).
    Here they are committed together when APScheduler asks the store for its next run time
    (right after its due jobs) or at the end of the step; then each job's held submission
    is released (``written``), or dropped if the commit failed (``unwritten``: the store
    still says the job is due, so the next step submits it again).

    A job is written only over the state the step read it with: one that another process
    changed meanwhile (a pause, a PATCH through another worker) keeps that change, and its
    held run is dropped (``unwritten``): the next step reads the job as it now is.
    """

    def __init__(self, store: SQLAlchemyJobStore, written: Callable[[str], None],
                 unwritten: Callable[[str], None]) -> None:
        self.store = store
        self.written = written
        self.unwritten = unwritten
        self.updates: dict[str, Job] = {}
        self.removals: dict[str, None] = {}
        #: Removals' events, dispatched once written (see :func:`_announce_removal`).
        self.announcements: dict[str, Callable[[], None]] = {}
        #: The states this step read the store's jobs with (by :func:`_due_jobs`), then
        #: those it wrote them with: a write later in the step (a listener's, as the step's
        #: events are dispatched) is made over the step's own, not refused as another's.
        self.read: dict[str, bytes] = _step.read.setdefault(id(store), {})

    def update(self, job: Job) -> None:
        self.removals.pop(job.id, None)
        self.announcements.pop(job.id, None)
        self.updates[job.id] = job

    def remove(self, job_id: str) -> None:
        self.updates.pop(job_id, None)
        self.removals[job_id] = None

    def commit(self) -> None:
        updates, removals, announcements = self.updates, self.removals, self.announcements
        self.updates, self.removals, self.announcements = {}, {}, {}
        if not updates and not removals:
            return
        store = self.store
        writes: dict[str, Job | None] = {**updates, **removals}
        try:
            with store.engine.begin() as connection:
                states: dict[str, bytes | None] = {}
                changed = swap_jobs(connection, store, writes, self.read, states)
        except BaseException:
            for job_id in writes:
                self.unwritten(job_id)
            raise
        # A write later in this step (a listener's, as the step's events are dispatched) is
        # made over the step's own write; of a job the step did not write, over what is stored.
        for job_id, state in states.items():
            if state is None or job_id in changed:
                self.read.pop(job_id, None)
            else:
                self.read[job_id] = state
        for job_id, announce in announcements.items():  # before the runs they let start
            if job_id not in changed:
                announce()
        for job_id in writes:
            if job_id in changed:
                logger.info("job %r was changed by another process as the scheduler wrote "
                            "its next run time: the change is kept, and the job is read "
                            "again", job_id)
                self.unwritten(job_id)
            else:
                self.written(job_id)
        # Hand the interpreter to the jobs just released: a job thread woken by its
        # submission would otherwise wait for the GIL until this thread has finished the
        # rest of the step (the next run time's query, the events), ~0.35 ms for a lone job.
        # One yield a commit, so at most one per DUE_JOBS_PER_STEP jobs of a burst.
        time.sleep(0)


def swap_jobs(connection: Connection, store: SQLAlchemyJobStore, writes: dict[str, Job | None],
              read: Mapping[str, bytes], states: dict[str, bytes | None] | None = None
              ) -> set[str]:
    """Write each job of ``writes`` (None: remove it) where ``store`` still holds the state
    it was read with (``read``; a job not in it is written whatever is stored): a compare and
    swap, as APScheduler's own writes (``WHERE id = ...``) would undo another process's
    change made in between. Returns the ids not written: their stored job is another.
    ``states``, if given, gets the state each job was to be written with (None: removed)."""
    table = store.jobs_t
    if states is None:
        states = {}
    states.update({job_id: None if job is None else pickle.dumps(job.__getstate__(),
                                                                 store.pickle_protocol)
                   for job_id, job in writes.items()})

    def write(job_ids: list[str], *where: Any) -> int:
        rows = [{"id_": job_id, "read_": read.get(job_id), "state_": states[job_id],
                 "next_": datetime_to_utc_timestamp(getattr(writes[job_id], "next_run_time",
                                                            None))}
                for job_id in job_ids]
        updates = [row for row in rows if row["state_"] is not None]
        removals = [row for row in rows if row["state_"] is None]
        count = 0
        if updates:
            count += connection.execute(table.update().where(*where).values(
                next_run_time=bindparam("next_"), job_state=bindparam("state_")),
                updates).rowcount
        if removals:
            count += connection.execute(table.delete().where(*where), removals).rowcount
        return count

    by_id = table.c.id == bindparam("id_")
    guarded = [job_id for job_id in writes if job_id in read]
    write([job_id for job_id in writes if job_id not in read], by_id)
    if write(guarded, by_id, table.c.job_state == bindparam("read_")) == len(guarded):
        return set()
    # Some found another state: those whose store does not now hold what they wrote (a
    # removal: no job) were not written.
    stored: dict[str, bytes] = dict(connection.execute(select(table.c.id, table.c.job_state).where(
        table.c.id.in_(guarded))).all())
    return {job_id for job_id in guarded if stored.get(job_id) != states[job_id]}


#: A change of a job computed from the job as it is read: the keyword arguments of
#: ``modify_job``.
JobChange = Callable[[Job], dict[str, Any]]


def modify_jobs_by_swap(scheduler: BaseScheduler) -> None:
    """Make ``scheduler.modify_job`` (and its ``pause_job``, ``resume_job`` and
    ``reschedule_job``, which call it) a :func:`change_job`: APScheduler's read, change and
    write would put back the next run time the leader had just moved on (the run would run
    twice) or undo its removal. Idempotent.
    """
    if getattr(scheduler.modify_job, "swaps", False):
        return

    def modify_job_by_swap(job_id: str, jobstore: str | None = None, **changes: Any) -> Job:
        return change_job(scheduler, job_id, lambda _: changes, jobstore)

    modify_job_by_swap.swaps = True  # type: ignore[attr-defined]
    scheduler.modify_job = modify_job_by_swap  # type: ignore[method-assign]


def change_job(scheduler: BaseScheduler, job_id: str, change: JobChange,
               jobstore: str | None = None) -> Job:
    """APScheduler's ``modify_job`` with the changes ``change(job)`` computes from the job
    as read, written to a SQL store only over the state it was read with
    (:func:`swap_jobs`): when another process wrote the job in between, it is read again and
    the change computed again, up to :data:`MODIFY_ATTEMPTS` times (then
    :class:`JobKeptChanging`). An error ``change`` raises is raised, nothing written."""
    if scheduler.state == STATE_STOPPED or in_scheduling_step():
        # Pending jobs; a write of the scheduling thread is one of its step's: APScheduler's
        job, _ = scheduler._lookup_job(job_id, jobstore)
        return type(scheduler).modify_job(scheduler, job_id, jobstore,  # type: ignore[no-any-return]
                                          **change(job))
    with scheduler._jobstores_lock:  # as APScheduler's modify_job, but for the write
        for alias, store in scheduler._jobstores.items():
            if jobstore not in (None, alias):
                continue
            if type(store) is SQLAlchemyJobStore:
                job = _swap_change(store, job_id, change)
            elif (job := store.lookup_job(job_id)) is not None:
                job._modify(**change(job))
                store.update_job(job)
            if job is not None:
                break
        else:
            raise JobLookupError(job_id)
    scheduler._dispatch_event(JobEvent(EVENT_JOB_MODIFIED, job_id, alias))
    if scheduler.state == STATE_RUNNING:
        scheduler.wakeup()
    return job


def _swap_change(store: SQLAlchemyJobStore, job_id: str, change: JobChange) -> Job | None:
    """The job ``job_id`` of ``store`` with ``change(job)``, written over the state it was
    read with; None if the store has no such job."""
    table = store.jobs_t
    for _ in range(MODIFY_ATTEMPTS):
        with store.engine.begin() as connection:
            state = connection.execute(select(table.c.job_state).where(
                table.c.id == job_id)).scalar()
        if state is None:
            return None
        job = store._reconstitute_job(state)
        job._modify(**change(job))
        with store.engine.begin() as connection:
            if not swap_jobs(connection, store, {job_id: job}, {job_id: state}):
                return job
    raise JobKeptChanging(job_id)


def _after_writes(store: BaseJobStore, written: Callable[[str], None],
                  unwritten: Callable[[str], None]) -> None:
    """Call ``written(job_id)`` after ``store`` updated or removed a job, ``unwritten(job_id)``
    when that failed. In a scheduling step, a SQL store's writes are committed together
    (:class:`_StepWrites`).

    Each store-first executor of the scheduler is told (the Celery executor and the
    ``leader`` pool both hold runs): the store's methods are wrapped once, and report to
    every pair of callbacks given, each pair once.
    """
    reports: list[tuple[Callable[[str], None], Callable[[str], None]]] | None = getattr(
        store, "_scheduler_api_write_reports", None)
    if reports is not None:
        if (written, unwritten) not in reports:
            reports.append((written, unwritten))
        return
    reports = [(written, unwritten)]
    store._scheduler_api_write_reports = reports  # type: ignore[attr-defined]

    def written_everywhere(job_id: str) -> None:
        for report, _ in list(reports):
            report(job_id)

    def unwritten_everywhere(job_id: str) -> None:
        for _, report in list(reports):
            report(job_id)

    written, unwritten = written_everywhere, unwritten_everywhere
    update_job, remove_job = store.update_job, store.remove_job
    batched = type(store) is SQLAlchemyJobStore

    def step_writes() -> _StepWrites | None:
        steps = getattr(_step, "stores", None)
        if steps is None or not batched:
            return None
        writes: _StepWrites | None = steps.get(id(store))
        if writes is None:
            writes = steps[id(store)] = _StepWrites(store, written, unwritten)
        return writes

    def update_and_report(job: Job) -> None:
        writes = step_writes()
        if writes is not None:
            writes.update(job)
            return
        try:
            update_job(job)
        except BaseException:
            unwritten(job.id)
            raise
        written(job.id)

    def remove_and_report(job_id: str) -> None:
        writes = step_writes()
        if writes is not None:
            writes.remove(job_id)
            return
        try:
            remove_job(job_id)
        except JobLookupError:  # gone already: nothing will run it twice
            written(job_id)
            raise
        except BaseException:
            unwritten(job_id)
            raise
        written(job_id)

    store.update_job = update_and_report  # type: ignore[method-assign]
    store.remove_job = remove_and_report  # type: ignore[method-assign]
