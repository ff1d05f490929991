"""The one place that reaches into APScheduler's internals.

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
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, JobLookupError
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

logger = logging.getLogger("scheduler_api")

#: How far a cron searches for its next fire time: 400 years, one full cycle of the
#: Gregorian calendar (weekdays and ISO weeks included). A pattern (without a year field)
#: that fires at all fires within any such span; ``week="1", month="6"`` never does.
CRON_HORIZON = timedelta(days=146_097)
CRON_HORIZON_YEARS = 400
#: Wall-clock time to validate one trigger tree: its first two fire times, every leaf.
VALIDATION_SECONDS = 0.25
#: Steps an ``and`` takes to make its triggers agree (as ``BoundedAndTrigger``).
AND_MAX_STEPS = 1000
#: Run times one scheduling step lists for one job; beyond them, a job is moved forward.
MAX_RUN_TIMES = 1000
#: Wall-clock time one scheduling step spends finding out whether a job is far behind.
CATCH_UP_SECONDS = 0.05


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
        return _cron_next(trigger, previous, now)
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
    for _ in range(AND_MAX_STEPS):
        times = [next_fire_time(child, previous, now, budget) for child in trigger.triggers]
        found = [fire_time for fire_time in times if fire_time is not None]
        if len(found) < len(times):
            return None
        if min(found) == max(found):
            return trigger._apply_jitter(found[0], trigger.jitter, now)  # type: ignore[no-any-return]
        now = max(found)
    return None


def _cron_next(trigger: CronTrigger, previous: datetime | None,
               now: datetime) -> datetime | None:
    # Where CronTrigger.get_next_fire_time starts its search.
    if previous is not None:
        start = min(now, previous + timedelta(microseconds=1))
    else:
        start = max(now, trigger.start_date) if trigger.start_date else now
    try:
        horizon = start + CRON_HORIZON
    except OverflowError:  # within 400 years of 9999: the search ends there by itself
        return trigger.get_next_fire_time(previous, now)  # type: ignore[no-any-return]
    if trigger.end_date is not None and trigger.end_date <= horizon:
        return trigger.get_next_fire_time(previous, now)  # type: ignore[no-any-return]
    # CronTrigger checks its end date at every step of its search: a copy ending at the
    # horizon gives up there instead of searching until the year 9999.
    bounded = copy.copy(trigger)
    bounded.end_date = horizon
    fire_time = bounded.get_next_fire_time(previous, now)
    if fire_time is None:
        raise Unschedulable(trigger, f"{trigger} does not fire within "
                            f"{CRON_HORIZON_YEARS} years")
    return fire_time  # type: ignore[no-any-return]


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
    logger.warning("job %r was due at %s, more than %d run times (or %g s of computing) "
                   "ago: its next run time is moved to %s", job.id, next_run_time,
                   MAX_RUN_TIMES, CATCH_UP_SECONDS, target)
    if target is None:
        return "gone"
    job._modify(next_run_time=target)
    return outcome


def _bounded_due_jobs(store: BaseJobStore,
                      get_due_jobs: Callable[[datetime], list[Job]]) -> Callable[..., list[Job]]:
    def get_bounded_due_jobs(now: datetime) -> list[Job]:
        due = []
        for job in get_due_jobs(now):
            outcome = _catch_up(job, now)
            if outcome == "due":
                due.append(job)
            elif outcome == "moved":
                store.update_job(job)  # not due now: keep the scheduler from waking at once
            else:
                try:
                    store.remove_job(job.id)
                except JobLookupError:
                    pass
        return due

    get_bounded_due_jobs.bounded = True  # type: ignore[attr-defined]
    return get_bounded_due_jobs


def bound_catch_up(scheduler: BaseScheduler) -> None:
    """Make every scheduling step of ``scheduler`` list at most MAX_RUN_TIMES per job.

    Wraps ``scheduler._process_jobs`` so that each job store's ``get_due_jobs`` (stores added
    later included) hands APScheduler jobs whose backlog is bounded (see :func:`_catch_up`).
    Idempotent.
    """
    process_jobs = scheduler._process_jobs
    if getattr(process_jobs, "bounded", False):
        return

    def process_bounded_jobs() -> Any:
        with scheduler._jobstores_lock:
            for store in scheduler._jobstores.values():
                if not getattr(store.get_due_jobs, "bounded", False):
                    store.get_due_jobs = _bounded_due_jobs(store, store.get_due_jobs)
        return process_jobs()

    process_bounded_jobs.bounded = True  # type: ignore[attr-defined]
    scheduler._process_jobs = process_bounded_jobs  # type: ignore[method-assign]


def build_trigger(scheduler: BaseScheduler, trigger: object,
                  trigger_args: dict[str, Any]) -> BaseTrigger:
    """The trigger APScheduler's ``add_job(trigger=..., **trigger_args)`` would build."""
    return scheduler._create_trigger(trigger, trigger_args)  # type: ignore[no-any-return]
