"""Jobs and triggers to JSON and back, in Flask-APScheduler's field names.

Everything a client sends is validated here before APScheduler sees it, so that bad input is
a :class:`InvalidField` (a 400 naming the field) and never a half-applied change::

    trigger, first = schedule_from_json({"trigger": "cron", "hour": "3"}, default_timezone=utc)
    trigger_to_json(trigger)  # {"trigger": "cron", "hour": "3", "timezone": "UTC", ...}

What :func:`job_to_json` returns can be posted back to create an identical job, for every
trigger APScheduler 3 ships (date, interval, cron, calendarinterval, and, or).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import MAXYEAR, date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.job import Job
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import convert_to_datetime

from . import engine

logger = logging.getLogger("scheduler_api")

JSON = dict[str, Any]


class BoundedAndTrigger(AndTrigger):  # type: ignore[misc]
    """An ``AndTrigger`` that gives up instead of looping forever.

    APScheduler's AndTrigger steps until its triggers agree, which never happens for, say,
    ``minute=0`` and ``minute=30``: the scheduler (and a request) would hang. This one stops
    after :data:`engine.AND_MAX_STEPS` steps, after 4 cron searches' CPU time in all, or as
    soon as a step finds the same fire times as the one before (after a fire, its triggers
    are asked again from the same previous fire time, and would answer the same 1,000
    times: 43 s of CPU for one fire time): then it has no next fire time.
    """

    __slots__ = ()

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        cpu_deadline = time.thread_time() + 4 * engine.SEARCH_CPU_SECONDS
        last: list[datetime | None] = []
        for _ in range(engine.AND_MAX_STEPS):
            fire_times = [trigger.get_next_fire_time(previous_fire_time, now)
                          for trigger in self.triggers]
            if None in fire_times or fire_times == last or time.thread_time() > cpu_deadline:
                return None
            if min(fire_times) == max(fire_times):
                return engine.apply_jitter(self, fire_times[0], now)
            now, last = max(fire_times), fire_times
        return None


class BoundedCalendarIntervalTrigger(CalendarIntervalTrigger):  # type: ignore[misc]
    """A ``CalendarIntervalTrigger`` that ends at the year 9999 instead of looping forever.

    APScheduler's skips a date that does not exist (Feb 29 in a common year) by stepping on,
    and a date past 9999 never exists: from 9999-12-31 with ``months=81`` the step never
    ended, in a request or in the scheduler's thread. The steps are simulated first; past the
    year 9999 they raise OverflowError, as the other triggers' date maths does there.
    """

    __slots__ = ()

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        if previous_fire_time is not None:
            year, month = previous_fire_time.year, previous_fire_time.month
            while True:  # the years grow on every step with months (or years) set
                month += self.months
                year += self.years + (month - 1) // 12
                month = (month - 1) % 12 + 1
                if year > MAXYEAR:
                    raise OverflowError("date value out of range")
                try:
                    date(year, month, previous_fire_time.day)
                    break
                except ValueError:
                    continue
        return super().get_next_fire_time(previous_fire_time, now)  # type: ignore[no-any-return]


class BoundedCronTrigger(CronTrigger):  # type: ignore[misc]
    """A ``CronTrigger`` that searches at most 400 years ahead, and 0.05 s of CPU time.

    A pattern that never fires (``week=1, month=6``), or one whose next fire time is
    centuries away, made APScheduler search until the year 9999 every time it asked, under
    its job-store lock (30 s for a long ``year`` list). Past 400 years (one Gregorian cycle:
    a pattern that fires at all fires within it), or past that CPU time (ordinary crons take
    under a millisecond), there is no next fire time: the job ends, with a warning.
    """

    __slots__ = ()

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        try:
            return engine.cron_search(self, previous_fire_time, now)[0]
        except engine.SearchTooLong:
            logger.warning("%s: its next fire time takes more than %g s of CPU to find; it "
                           "has none, and its job ends", engine.describe(self),
                           engine.SEARCH_CPU_SECONDS)
            return None


# A job whose trigger is one of these classes is made bounded when the scheduler loads it.
engine.BOUNDED_TRIGGERS.update({CronTrigger: BoundedCronTrigger, AndTrigger: BoundedAndTrigger,
                                CalendarIntervalTrigger: BoundedCalendarIntervalTrigger})


class InvalidField(ValueError):
    """A field of a request body is missing, unknown or has an invalid value."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


_INTERVAL_UNITS = ("weeks", "days", "hours", "minutes", "seconds")
_CALENDAR_UNITS = ("years", "months", "weeks", "days")
_TIME_OF_DAY = ("hour", "minute", "second")
_CRON_FIELDS = tuple(CronTrigger.FIELD_NAMES)
_DATES = ("start_date", "end_date")
#: The trigger arguments that are dates (of any trigger type).
TRIGGER_DATES = frozenset({*_DATES, "run_date"})

#: The fields each trigger type takes, besides ``trigger`` itself.
TRIGGER_FIELDS: dict[str, frozenset[str]] = {
    "date": frozenset({"run_date", "timezone"}),
    "interval": frozenset({*_INTERVAL_UNITS, *_DATES, "timezone", "jitter"}),
    "cron": frozenset({*_CRON_FIELDS, *_DATES, "timezone", "jitter"}),
    "calendarinterval": frozenset(
        {*_CALENDAR_UNITS, *_TIME_OF_DAY, *_DATES, "timezone", "jitter"}
    ),
    "and": frozenset({"triggers", "jitter"}),
    "or": frozenset({"triggers", "jitter"}),
}
ALL_TRIGGER_FIELDS = frozenset().union(*TRIGGER_FIELDS.values())

#: The job options a body may carry, besides the trigger and its fields.
JOB_FIELDS = frozenset({"id", "name", "func", "args", "kwargs", "misfire_grace_time",
                        "max_instances", "coalesce", "next_run_time", "replace_existing",
                        "jobstore", "executor"})

#: The largest jitter and misfire_grace_time (about 31 years): APScheduler turns both into a
#: timedelta while it schedules and runs the job, which overflows past ~2.7 million years.
MAX_SECONDS = 10**9
_MAX_NESTED_TRIGGERS = 16
_MAX_NESTING = 3
#: Leaf triggers in one trigger, counted across every nested 'and' and 'or'.
MAX_TRIGGER_LEAVES = 32
#: The shortest interval a trigger may have (seconds), unless SCHEDULER_MIN_INTERVAL says.
DEFAULT_MIN_INTERVAL = 1.0
#: A cron field's cost grows with its expressions (each is tried at every step of a search):
#: a 'year' list of 1,000 ranges took 30 s per fire time before searches were bounded.
MAX_CRON_EXPRESSIONS = 64
MAX_CRON_FIELD_LENGTH = 512
#: How far in the past a next_run_time may be (seconds): older runs could only be missed.
MAX_PAST_RUN_TIME = 86_400
_MAX_ID_LENGTH = 191  # the SQLAlchemy job store's id column
_ID_RE = re.compile(r"[^/\x00-\x1f\x7f]+")
_OFFSET_RE = re.compile(r"([+-])(\d\d):(\d\d)")


# -- JSON out ------------------------------------------------------------------------------

def timezone_to_json(tz: tzinfo | None) -> str | None:
    """A name :func:`parse_timezone` reads back: an IANA key, ``UTC`` or ``+HH:MM``."""
    if tz is None:
        return None
    if isinstance(tz, ZoneInfo):
        return tz.key
    offset = tz.utcoffset(None)
    if offset is None:
        return str(tz)
    if not offset:
        return "UTC"
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def iso_8601(value: date | datetime | None) -> str | None:
    """ISO 8601; an offset with seconds (a zone's local mean time before 1900: +11:39:04),
    which no ISO 8601 reader takes back, as the same instant in UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        offset = value.utcoffset()
        if offset is not None and offset % timedelta(minutes=1):
            return value.astimezone(timezone.utc).isoformat()
    return value.isoformat()


def _interval_parts(interval: timedelta) -> JSON:
    weeks, days = divmod(interval.days, 7)
    minutes, seconds = divmod(interval.seconds, 60)
    hours, minutes = divmod(minutes, 60)
    parts: JSON = {"weeks": weeks, "days": days, "hours": hours, "minutes": minutes}
    parts["seconds"] = seconds + interval.microseconds / 1e6 if interval.microseconds else seconds
    return {unit: value for unit, value in parts.items() if value}


def trigger_to_json(trigger: BaseTrigger) -> JSON:
    """The trigger type and its fields, flat; unknown trigger classes as ``str(trigger)``."""
    if isinstance(trigger, DateTrigger):
        return {"trigger": "date", "run_date": iso_8601(trigger.run_date),
                "timezone": timezone_to_json(trigger.run_date.tzinfo)}
    if isinstance(trigger, IntervalTrigger):
        data: JSON = {"trigger": "interval", **_interval_parts(trigger.interval)}
    elif isinstance(trigger, CronTrigger):
        data = {"trigger": "cron"}
        data.update((field.name, str(field)) for field in trigger.fields if not field.is_default)
    elif isinstance(trigger, CalendarIntervalTrigger):
        data = {"trigger": "calendarinterval"}
        data.update((unit, getattr(trigger, unit)) for unit in _CALENDAR_UNITS
                    if getattr(trigger, unit))
        time_of_day = engine.calendar_time_of_day(trigger)
        data.update(hour=time_of_day.hour, minute=time_of_day.minute, second=time_of_day.second)
    elif isinstance(trigger, (AndTrigger, OrTrigger)):
        kind = "and" if isinstance(trigger, AndTrigger) else "or"
        return {"trigger": kind, "triggers": [trigger_to_json(t) for t in trigger.triggers],
                "jitter": trigger.jitter}
    else:
        return {"trigger": str(trigger)}
    if trigger.start_date is not None:
        data["start_date"] = iso_8601(trigger.start_date)
    if trigger.end_date is not None:
        data["end_date"] = iso_8601(trigger.end_date)
    data["timezone"] = timezone_to_json(trigger.timezone)
    data["jitter"] = trigger.jitter
    return data


def job_to_json(job: Job) -> JSON:
    """A job as Flask-APScheduler shows it, plus ``coalesce`` and the trigger's timezone/jitter.

    Scheduling options appear once the job is scheduled (not while it is pending).
    """
    data: JSON = {"id": job.id, "name": job.name, "func": job.func_ref,
                  "args": list(job.args), "kwargs": dict(job.kwargs)}
    data.update(trigger_to_json(job.trigger))
    if not job.pending:
        data["misfire_grace_time"] = job.misfire_grace_time
        data["max_instances"] = job.max_instances
        data["coalesce"] = job.coalesce
        data["next_run_time"] = iso_8601(job.next_run_time)
    return data


# -- JSON in -------------------------------------------------------------------------------

def parse_timezone(value: object, field: str = "timezone") -> tzinfo:
    if not isinstance(value, str) or not value:
        raise InvalidField(field, "must be a time zone name such as 'Europe/Berlin' or 'UTC'")
    if value == "UTC":
        return timezone.utc
    offset = _OFFSET_RE.fullmatch(value)
    if offset:
        hours, minutes = int(offset.group(2)), int(offset.group(3))
        if hours > 23 or minutes > 59:  # datetime.timezone takes less than 24 hours
            raise InvalidField(field, f"offset {value!r} must be from -23:59 to +23:59")
        sign = -1 if offset.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidField(field, f"unknown time zone {value!r}") from None


#: APScheduler's date grammar (``convert_to_datetime``), in ASCII digits and nothing after it.
_ISO_8601 = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{1,2}):(\d{1,2})"
                       r"(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)?)?", re.ASCII)


def read_iso_8601(text: str) -> datetime:
    """``text`` as a datetime, naive unless it gives an offset; ValueError if it is none.

    APScheduler's own reading takes the fraction's digits for microseconds ('.5' was 5 us,
    JavaScript's '.500' 500 us), any Unicode digit and a final newline; this is its grammar
    read as ISO 8601 means it (up to 9 fraction digits, cut to microseconds)."""
    match = _ISO_8601.fullmatch(text)
    if match is None:
        raise ValueError(f"{text[:64]!r} is not an ISO 8601 date-time")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    zone = None
    if offset == "Z":
        zone = timezone.utc
    elif offset:
        sign = -1 if offset[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:])))
    return datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                    int(second or 0), int((fraction or "0").ljust(6, "0")[:6]), tzinfo=zone)


def to_datetime(value: object, tz: tzinfo, name: str) -> datetime:
    """APScheduler's ``convert_to_datetime``, with a string read by :func:`read_iso_8601`;
    OverflowError for an instant outside the years 1 to 9999 in UTC (9999-12-31T23:59-23:59),
    which the job store cannot write."""
    moment: datetime = convert_to_datetime(
        read_iso_8601(value) if isinstance(value, str) else value, tz, name)
    moment.astimezone(timezone.utc)  # raises OverflowError out of range
    return moment


def parse_datetime(value: object, field: str, tz: tzinfo) -> datetime:
    if not isinstance(value, str):
        raise InvalidField(field, "must be an ISO 8601 date-time string")
    try:
        return to_datetime(value, tz, field)
    except ValueError:
        raise InvalidField(field, f"{value!r} is not an ISO 8601 date-time") from None
    except OverflowError:  # 9999-12-31T23:59 localised to a zone east of UTC
        raise InvalidField(field, f"{value!r} is out of range in time zone {tz}") from None


def _number(body: JSON, field: str, *, integer: bool = False, minimum: float = 0,
            maximum: float | None = None) -> Any:
    value = body.get(field, 0)
    allowed = (int,) if integer else (int, float)
    if (isinstance(value, bool) or not isinstance(value, allowed) or value < minimum
            or (maximum is not None and value > maximum)):
        kind = "an integer" if integer else "a number"
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise InvalidField(field, f"must be {kind} {bound}")
    return value


def _optional_jitter(body: JSON) -> int | None:
    jitter = body.get("jitter")
    return None if jitter is None else _number(body, "jitter", integer=True,
                                               maximum=MAX_SECONDS)


def _check_fields(body: JSON, kind: str, allowed: frozenset[str]) -> None:
    for field in body:
        if field != "trigger" and field not in allowed:
            raise InvalidField(field, f"is not a field of the {kind!r} trigger")


def _trigger_date(body: JSON, field: str, tz: tzinfo, named_tz: bool) -> datetime:
    # A date-time with an offset, for a trigger with a named zone, is the same instant in
    # that zone: what GET shows (offset and zone) posts back to the same trigger.
    value = parse_datetime(body[field], field, tz)
    try:
        return value.astimezone(tz) if named_tz else value
    except (OverflowError, ValueError):  # 9999-12-31T23:00Z is in the year 10000 at +14:00
        raise InvalidField(field, f"{body[field]!r} is out of range in time zone "
                           f"{body['timezone']!r}") from None


def schedule_from_json(body: JSON, default_timezone: tzinfo,
                       min_interval: float = DEFAULT_MIN_INTERVAL
                       ) -> tuple[BaseTrigger, datetime | None]:
    """Build a trigger from ``body["trigger"]`` and its fields; no trigger means run once now.

    Returns the trigger and its first fire time from now (None: it never fires). See
    :func:`check_trigger` for what is refused besides bad fields.
    """
    if _count_leaves(body, depth=0) > MAX_TRIGGER_LEAVES:
        raise InvalidField("triggers", f"at most {MAX_TRIGGER_LEAVES} triggers in all, "
                           "counted across every nested 'and' and 'or'")
    trigger = _trigger(body, default_timezone, depth=0)
    return trigger, check_trigger(trigger, default_timezone, min_interval)


def check_trigger(trigger: BaseTrigger, default_timezone: tzinfo,
                  min_interval: float = DEFAULT_MIN_INTERVAL) -> datetime | None:
    """Refuse a trigger that would make the scheduler do unbounded work; its first fire time.

    Refused: more than :data:`MAX_TRIGGER_LEAVES` leaves or 'and'/'or' nested deeper than 3;
    an interval shorter than ``min_interval``; a trigger whose next two fire times cannot be
    computed within :class:`engine.Budget` (a cron that does not fire within 400 years, or
    a tree taking more than 0.25 s), or at all: past the year 9999 (a calendarinterval of
    9000 years, say) datetime overflows, and in APScheduler's scheduling thread that error
    kills the thread right after the first run.
    """
    cheap = type(trigger) in _CHEAP_TRIGGERS  # computed in constant time; the common case
    if not cheap:
        leaves, depth = _tree_size(trigger)
        if leaves > MAX_TRIGGER_LEAVES or depth > _MAX_NESTING:
            raise InvalidField("triggers", f"at most {MAX_TRIGGER_LEAVES} triggers in all, "
                               f"nested {_MAX_NESTING} deep")
    _check_intervals(trigger, min_interval)
    with _fire_time_errors(trigger):
        now = datetime.now(default_timezone)
        if cheap:
            first = trigger.get_next_fire_time(None, now)
            if first is not None:
                trigger.get_next_fire_time(first, first)
            return first  # type: ignore[no-any-return]
        budget = engine.Budget()
        first = engine.next_fire_time(trigger, None, now, budget)
        if first is not None:
            engine.next_fire_time(trigger, first, first, budget)
    return first


@contextmanager
def _fire_time_errors(trigger: BaseTrigger) -> Iterator[None]:
    """Fire times that cannot be computed (in the budget, or at all), as a 400 naming the
    trigger."""
    try:
        yield
    except engine.Unschedulable as exc:
        raise InvalidField(exc.field or trigger_kind(exc.trigger), exc.problem) from None
    except (OverflowError, ValueError, IndexError) as exc:  # IndexError: cron past 9999
        problem = exc if isinstance(exc, ValueError) else "they pass the year 9999"
        raise InvalidField(trigger_kind(trigger),
                           f"its fire times cannot be computed: {problem}") from None


#: Triggers whose fire times take constant time (the API's calendarinterval is bounded, and
#: goes through the budget).
_CHEAP_TRIGGERS = frozenset({IntervalTrigger, DateTrigger})


def trigger_kind(trigger: BaseTrigger) -> str:
    """The name of a trigger's type, as in the JSON's ``trigger`` field."""
    for kind, cls in (("date", DateTrigger), ("interval", IntervalTrigger), ("cron", CronTrigger),
                      ("calendarinterval", CalendarIntervalTrigger), ("and", AndTrigger),
                      ("or", OrTrigger)):
        if isinstance(trigger, cls):
            return kind
    return type(trigger).__name__


def _count_leaves(body: object, depth: int) -> int:
    """Leaves of a trigger body, before anything is built (deeper than allowed counts 1)."""
    if (not isinstance(body, dict) or body.get("trigger") not in ("and", "or")
            or not isinstance(body.get("triggers"), list) or depth > _MAX_NESTING):
        return 1
    return sum(_count_leaves(item, depth + 1) for item in body["triggers"])


def _tree_size(trigger: BaseTrigger) -> tuple[int, int]:
    """(leaves, depth of 'and'/'or' nesting) of a trigger."""
    if not isinstance(trigger, (AndTrigger, OrTrigger)):
        return 1, 0
    sizes = [_tree_size(child) for child in trigger.triggers]
    return sum(leaves for leaves, _ in sizes), 1 + max((depth for _, depth in sizes), default=0)


def _check_intervals(trigger: BaseTrigger, min_interval: float) -> None:
    if isinstance(trigger, (AndTrigger, OrTrigger)):
        for child in trigger.triggers:
            _check_intervals(child, min_interval)
    elif isinstance(trigger, IntervalTrigger) and trigger.interval_length < min_interval:
        raise InvalidField("interval", f"must be at least {min_interval:g} s "
                           f"(SCHEDULER_MIN_INTERVAL), not {trigger.interval_length:g} s")


def next_fire_time(trigger: BaseTrigger, default_timezone: tzinfo) -> datetime | None:
    """The trigger's next fire time from now, within :class:`engine.Budget`; a 400 naming
    the trigger when it cannot be computed in time (a trigger stored long ago, say)."""
    with _fire_time_errors(trigger):
        return engine.next_fire_time(trigger, None, datetime.now(default_timezone),
                                     engine.Budget())


def check_next_run_time(value: datetime | None, now: datetime) -> datetime | None:
    """Refuse a next_run_time more than MAX_PAST_RUN_TIME seconds ago.

    APScheduler would list every fire time from then until now in one scheduling step.
    """
    if value is not None and value < now - timedelta(seconds=MAX_PAST_RUN_TIME):
        raise InvalidField("next_run_time", f"{value.isoformat()} is more than "
                           f"{MAX_PAST_RUN_TIME} s (a day) in the past")
    return value


def _trigger(body: JSON, default_timezone: tzinfo, depth: int) -> BaseTrigger:
    kind = body.get("trigger", "date")
    if kind not in TRIGGER_FIELDS:
        names = ", ".join(TRIGGER_FIELDS)
        raise InvalidField("trigger", f"unknown trigger {kind!r} (one of: {names})")
    _check_fields(body, kind, TRIGGER_FIELDS[kind])
    named_tz = body.get("timezone") is not None
    tz = parse_timezone(body["timezone"]) if named_tz else default_timezone
    dates = {field: _trigger_date(body, field, tz, named_tz) for field in _DATES
             if body.get(field) is not None}
    if len(dates) == 2 and dates["end_date"] < dates["start_date"]:
        raise InvalidField("end_date", "is before start_date")
    try:
        if kind == "date":
            run_date = (None if body.get("run_date") is None
                        else _trigger_date(body, "run_date", tz, named_tz))
            return DateTrigger(run_date, timezone=tz)
        if kind == "interval":
            units = {unit: _number(body, unit) for unit in _INTERVAL_UNITS}
            if not any(units.values()):
                raise InvalidField("seconds", "an interval needs one of weeks, days, hours, "
                                   "minutes or seconds above 0")
            interval = IntervalTrigger(**units, **dates, timezone=tz,
                                       jitter=_optional_jitter(body))
            if interval.end_date is not None and interval.end_date < interval.start_date:
                # Without start_date it is now + the interval: shown, it would not post back.
                raise InvalidField("end_date", "is before the first fire time (start_date, or "
                                   "now + the interval): the job would never run")
            return interval
        if kind == "cron":
            fields = {}
            for name in _CRON_FIELDS:
                value = body.get(name)
                if value is not None:
                    if isinstance(value, bool) or not isinstance(value, (str, int)):
                        raise InvalidField(name, "must be a cron expression string or integer")
                    fields[name] = value
            for name, value in fields.items():  # one at a time, to name the bad field
                text = str(value)
                if len(text) > MAX_CRON_FIELD_LENGTH or text.count(",") >= MAX_CRON_EXPRESSIONS:
                    raise InvalidField(name, f"at most {MAX_CRON_EXPRESSIONS} comma-separated "
                                       f"expressions and {MAX_CRON_FIELD_LENGTH} characters")
                try:
                    CronTrigger(**{name: value}, timezone=tz)
                except ValueError as exc:
                    raise InvalidField(name, str(exc)) from None
            return BoundedCronTrigger(**fields, **dates, timezone=tz,
                                      jitter=_optional_jitter(body))
        if kind == "calendarinterval":
            units = {unit: _number(body, unit, integer=True) for unit in _CALENDAR_UNITS}
            clock = {unit: _number(body, unit, integer=True) for unit in _TIME_OF_DAY}
            calendar_dates = {field: value.date() for field, value in dates.items()}
            jitter = _optional_jitter(body)
            try:
                return BoundedCalendarIntervalTrigger(**units, **clock, **calendar_dates,
                                                      timezone=tz, jitter=jitter)
            except ValueError as exc:
                raise InvalidField("calendarinterval", str(exc)) from None
        return _combined_from_json(kind, body, default_timezone, depth)
    except InvalidField:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidField(kind, str(exc)) from None


def _combined_from_json(kind: str, body: JSON, default_timezone: tzinfo,
                        depth: int) -> BaseTrigger:
    triggers = body.get("triggers")
    if not isinstance(triggers, list) or not triggers or not all(
        isinstance(item, dict) for item in triggers
    ):
        raise InvalidField("triggers", "must be a non-empty list of trigger objects")
    if depth >= _MAX_NESTING or len(triggers) > _MAX_NESTED_TRIGGERS:
        raise InvalidField("triggers", f"at most {_MAX_NESTED_TRIGGERS} triggers, nested "
                           f"{_MAX_NESTING} deep")
    children = [_trigger(item, default_timezone, depth + 1) for item in triggers]
    if kind == "or":
        return OrTrigger(children, jitter=_optional_jitter(body))
    # Whether its triggers ever fire together is checked with the fire times, in budget.
    return BoundedAndTrigger(children, jitter=_optional_jitter(body))


def parse_job_id(value: object) -> str:
    if (not isinstance(value, str) or not _ID_RE.fullmatch(value)
            or len(value) > _MAX_ID_LENGTH or value in (".", "..")):
        raise InvalidField("id", f"must be 1 to {_MAX_ID_LENGTH} characters, without '/' or "
                           "control characters, and not '.' or '..' (no URL could name it)")
    return value


def job_options_from_json(body: JSON) -> JSON:
    """Validate the non-trigger options of a job body; return APScheduler keyword arguments."""
    options: JSON = {}
    if "name" in body:
        if not isinstance(body["name"], str) or not body["name"]:
            raise InvalidField("name", "must be a non-empty string")
        options["name"] = body["name"]
    if "args" in body:
        if not isinstance(body["args"], list):
            raise InvalidField("args", "must be a list")
        options["args"] = body["args"]
    if "kwargs" in body:
        if not isinstance(body["kwargs"], dict):
            raise InvalidField("kwargs", "must be an object")
        options["kwargs"] = body["kwargs"]
    if "misfire_grace_time" in body:
        options["misfire_grace_time"] = (
            None if body["misfire_grace_time"] is None
            else _number(body, "misfire_grace_time", integer=True, minimum=1,
                         maximum=MAX_SECONDS)
        )
    if "max_instances" in body:
        options["max_instances"] = _number(body, "max_instances", integer=True, minimum=1)
    if "coalesce" in body:
        if not isinstance(body["coalesce"], bool):
            raise InvalidField("coalesce", "must be true or false")
        options["coalesce"] = body["coalesce"]
    return options


#: Fields a job's JSON shows that are not the job's to set: taken back as sent, and ignored,
#: so that what GET answers can be posted back.
READ_ONLY_FIELDS = frozenset({"last_run"})


def check_known_fields(body: JSON) -> None:
    for field in body:
        if field in READ_ONLY_FIELDS:
            if body[field] is not None and not isinstance(body[field], dict):
                raise InvalidField(field, "is read-only: send it back as answered, or not at all")
        elif field not in JOB_FIELDS and field not in ALL_TRIGGER_FIELDS and field != "trigger":
            raise InvalidField(field, "is not a known job or trigger field")


def trigger_part(body: JSON) -> JSON:
    """The trigger type and trigger fields of a job body."""
    return {field: value for field, value in body.items()
            if field == "trigger" or field in ALL_TRIGGER_FIELDS}
