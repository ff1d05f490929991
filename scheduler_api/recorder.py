"""Recording runs and events without slowing the scheduler: one writer thread per process.

The executor runs each job through :meth:`RunRecorder.run_job` (APScheduler's ``run_job``,
with the same log lines and events, recording each run as it starts and ends). Nothing on
the way to a job's start waits for the database: the recorder queues what happened and its
thread writes it in batches, one transaction each (a run that starts and ends between two
writes is one insert). A run is in the database within a write's time of its start, and its
row's heartbeat is renewed while it runs, so that the next leader can tell a run whose
process died (``lost``) from a long one. The leader's recorder also prunes the history::

    recorder = RunRecorder(RunHistory(engine), leading=lambda: coordinator.is_leader)
    recorder.start()
    executor.run_job = recorder.run_job     # scheduler_api.engine.StoreFirstThreadPoolExecutor
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import reprlib
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Collection
from datetime import datetime, timedelta, timezone
from itertools import chain, count
from types import SimpleNamespace
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.job import Job
from sqlalchemy.exc import InterfaceError, OperationalError

from . import engine
from .history import MAX_MESSAGE, MAX_RESULT, MAX_TRACEBACK, RunHistory, clip, storable

logger = logging.getLogger("scheduler_api")

#: Events and run changes waiting to be written, at most (the database away for a while):
#: beyond, the oldest are dropped (and counted in a warning).
MAX_PENDING = 100_000
#: Rows written in one transaction, at most.
MAX_BATCH = 2000
#: How long a record waits for the writer, at most (it writes what came meanwhile at once).
WRITE_DELAY = 0.05
#: How long the writer waits, at most, while the scheduler dispatches a backlog.
GATHER_SECONDS = 2.0
#: How often a running run's heartbeat is renewed, and how old one is when the leader takes
#: its run for lost (another host's process; on this host a dead pid is seen at once).
HEARTBEAT_SECONDS = 10.0
LOST_AFTER_SECONDS = 60.0
#: How often the leader marks lost runs and prunes.
HOUSEKEEPING_SECONDS = 60.0
#: Defaults of SCHEDULER_HISTORY_KEEP_RUNS and SCHEDULER_HISTORY_KEEP_DAYS; events are kept
#: for a day (a client that reconnects later starts from now).
KEEP_RUNS = 100
KEEP_DAYS = 7.0
KEEP_EVENTS_SECONDS = 86_400.0

#: The scheduler events :meth:`RunRecorder.listen` takes.
RECORDED_EVENTS = EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES

_repr = reprlib.Repr()
_repr.maxstring = MAX_RESULT
_repr.maxother = MAX_RESULT
_repr.maxlevel = 3


def _text(value: object) -> str:
    """A plain str of ``value``, a str or a str subclass (whose methods may raise)."""
    return str.__str__(value) if isinstance(value, str) else "<not a str>"


def _class_name(value: object) -> str:
    # type's own descriptor: a metaclass's __qualname__ cannot make reading it raise.
    return _text(type.__dict__["__qualname__"].__get__(type(value)))


def describe_result(value: object) -> str | None:
    """A return value's repr, bounded (None stays None)."""
    if value is None:
        return None
    try:
        return clip(_text(_repr.repr(value)), MAX_RESULT)
    except BaseException:  # noqa: BLE001 - a broken __repr__ (even SystemExit) must not lose the run
        return clip(f"<{_class_name(value)} object: repr() failed>", MAX_RESULT)


def describe_error(error: BaseException) -> tuple[str, str, str]:
    """(type, message, traceback) of an exception, each bounded; never raises, whatever the
    exception's methods do (a run whose end cannot be described would stay running)."""
    try:
        message = _text(str(error))
    except BaseException:  # noqa: BLE001 - as describe_result
        message = "<str() failed>"
    try:
        text = "".join(traceback.format_exception(error))
    except BaseException:  # noqa: BLE001
        text = "<the traceback could not be formatted>"
    return (clip(_class_name(error), 255), clip(message, MAX_MESSAGE),
            clip(text, MAX_TRACEBACK))


class _RecordedEvent(JobExecutionEvent):  # type: ignore[misc]
    """An execution event whose run the recorder wrote already (its listener skips it)."""


#: Hex digits of a run id that tell its process apart (80 random bits, drawn again in a
#: forked child), followed by RUN_ID_SERIAL_DIGITS of a per-process serial number: ids are
#: unique across processes and hosts (String(32), as uuid4().hex was) at a fraction of
#: uuid4's cost on the way to every job (0.2 us, not 1.6).
RUN_ID_PROCESS_DIGITS = 20
RUN_ID_SERIAL_DIGITS = 12
_run_ids = SimpleNamespace(prefix="", serials=count())


def _new_process() -> None:
    _run_ids.prefix = os.urandom(RUN_ID_PROCESS_DIGITS // 2).hex()
    _run_ids.serials = count()


_new_process()
os.register_at_fork(after_in_child=_new_process)


def new_run_id() -> str:
    """A run id unique across processes and hosts (next() of a count is atomic)."""
    return f"{_run_ids.prefix}{next(_run_ids.serials):0{RUN_ID_SERIAL_DIGITS}x}"


#: The records a job's thread queues: flat tuples of strings, numbers, a datetime and None,
#: which the garbage collector stops tracking at its first collection (objects or dicts per
#: run, kept until the writer looks, made every young collection traverse thousands).
#: A run's start: ("run", id, job_id, reason, scheduled_at, started_at).
RunStart = tuple[str, str, str, str, datetime, float]
#: Its end: ("end", start, ended_at, outcome, error, result); error: (type, message,
#: traceback) or None. The writer joins a start and an end it takes together into one insert.
#: A whole run, as the writer writes it, and as queued for a run that did not start
#: (started_at None) or that another executor ran:
#: ("whole", id, job_id, reason, scheduled_at, started_at, outcome, ended_at, error, result).
RunRecord = tuple[str, str, str, str, datetime, float | None, str, float | None,
                  tuple[str, str, str] | None, str | None]


class RunRecorder:
    """Records runs and events in a :class:`RunHistory` from a thread of its own."""

    def __init__(self, history: RunHistory, leading: Callable[[], bool] = lambda: True,
                 keep_runs: int = KEEP_RUNS, keep_days: float = KEEP_DAYS,
                 live_jobs: Callable[[], Collection[str]] = list) -> None:
        self.history = history
        #: Whether this process leads (it marks lost runs and prunes), and the ids of the
        #: jobs there are (a removed job's runs are kept for their age only).
        self.leading = leading
        self.live_jobs = live_jobs
        self.keep_runs = keep_runs
        self.keep_days = keep_days
        self.host = storable(socket.gethostname().lower())
        #: Where a pid means one process: the host and its pid namespace (containers that
        #: share a host name, with --network host, do not share pids).
        self.node = f"{self.host}/{pid_namespace()}"
        #: Records for the writer: (kind, payload). Appended without a lock (deque.append
        #: is atomic) by the threads that run jobs; taken by the writer under ``_wake``.
        self._pending: deque[tuple[Any, ...]] = deque()
        #: Ids of this process's runs whose end is not written yet (running, or ended with
        #: the end queued): their heartbeat is renewed, and the leader must not take them for
        #: lost. Added to by the job's thread (set.add is atomic); removed from by the writer
        #: as it writes the end, or where an end is dropped.
        self._unfinished: set[str] = set()
        #: Ids of the runs the writer wrote as running and whose end it has not written: an
        #: end of one of them is an update, of any other run an insert. The writer's alone.
        self._running_rows: set[str] = set()
        self._wake = threading.Condition()
        self._stopped = threading.Event()
        self._stopping = False
        self._idle = True
        self._thread: threading.Thread | None = None
        self._dropped = 0
        self._housekeeping_due = 0.0

    # -- what happened ---------------------------------------------------------------------

    def emit(self, kind: str, **data: Any) -> None:
        """An event for the live stream (``kind``: job_added, run_finished, ...); its JSON is
        made by the writer thread (a job's removal is announced by the scheduling thread)."""
        # One flat tuple, names and values in turn: the collector untracks it at once (a
        # dict, or a tuple of pairs, in it kept it tracked).
        self._push(("event", kind, time.time(), *chain.from_iterable(data.items())))

    def job_event(self, kind: str, job_id: str | None) -> None:
        """:meth:`emit` of a job's change (job_added, job_changed, job_removed): the same
        event without building keyword arguments, for the scheduling thread announces each
        job it removes (a burst of date jobs: thousands in a step)."""
        self._push(("event", kind, time.time(), "job_id", job_id))

    def record(self, job_id: str, reason: str, scheduled_at: datetime, outcome: str,
               error: tuple[str, str, str] | None = None, result: str | None = None) -> None:
        """A run that did not start (``missed``, ``skipped``), or one an executor that
        records nothing itself ran (both ends at once)."""
        self._push(("whole", new_run_id(), job_id, reason, scheduled_at, None, outcome,
                    time.time(), error, result))

    def run_job(self, job: Job, jobstore_alias: str, run_times: list[datetime],
                logger_name: str) -> list[JobExecutionEvent]:
        """APScheduler's ``run_job``, recording each run: the executor's run function."""
        reason = "run" if isinstance(run_times, engine.ManualRun) else "schedule"
        events = []
        job_logger = logging.getLogger(logger_name)
        for run_time in run_times:
            if job.misfire_grace_time is not None:
                late = datetime.now(timezone.utc) - run_time
                if late > timedelta(seconds=job.misfire_grace_time):
                    events.append(_RecordedEvent(EVENT_JOB_MISSED, job.id, jobstore_alias,
                                                 run_time))
                    job_logger.warning('Run time of job "%s" was missed by %s', job, late)
                    self.record(job.id, reason, run_time, "missed")
                    continue
            job_logger.info('Running job "%s" (scheduled at %s)', job, run_time)
            # The start and the end are queued as they happen, and nothing else is done on
            # the way to the job: each costs its thread about half a microsecond.
            run: RunStart = ("run", new_run_id(), job.id, reason, run_time, time.time())
            self._unfinished.add(run[1])
            self._push(run)
            try:
                result = job.func(*job.args, **job.kwargs)
            except BaseException as error:  # as APScheduler: a job's SystemExit is its error
                # The end first: logging an exception whose methods raise may fail.
                self._push(("end", run, time.time(), "error", describe_error(error), None))
                events.append(_RecordedEvent(
                    EVENT_JOB_ERROR, job.id, jobstore_alias, run_time, exception=error,
                    traceback="".join(traceback.format_tb(error.__traceback__))))
                # Logging's own report of a failed record can raise, even SystemExit (a
                # class whose name raises it): the pool's thread must not die of it.
                with contextlib.suppress(BaseException):
                    job_logger.exception('Job "%s" raised an exception', job)
                traceback.clear_frames(error.__traceback__)
                del error
            else:
                self._push(("end", run, time.time(), "success", None, describe_result(result)))
                events.append(_RecordedEvent(EVENT_JOB_EXECUTED, job.id, jobstore_alias,
                                             run_time, retval=result))
                job_logger.info('Job "%s" executed successfully', job)
        return events

    def listen(self, event: Any) -> None:
        """The scheduler's listener: runs that :meth:`run_job` did not record (an executor
        of another kind, ``max_instances`` reached)."""
        if isinstance(event, _RecordedEvent):
            return
        if isinstance(event, JobSubmissionEvent) and event.code == EVENT_JOB_MAX_INSTANCES:
            for run_time in event.scheduled_run_times:
                self.record(event.job_id, "schedule", run_time, "skipped")
        elif isinstance(event, JobExecutionEvent):
            if event.code == EVENT_JOB_MISSED:
                self.record(event.job_id, "schedule", event.scheduled_run_time, "missed")
            elif event.code == EVENT_JOB_ERROR:
                self.record(event.job_id, "schedule", event.scheduled_run_time, "error",
                            error=describe_error(event.exception))
            elif event.code == EVENT_JOB_EXECUTED:
                self.record(event.job_id, "schedule", event.scheduled_run_time, "success",
                            result=describe_result(event.retval))

    # -- the writer thread -----------------------------------------------------------------

    def forget_last_run(self, job_id: str | None, *, at_once: bool = False) -> None:
        """Runs of ``job_id`` (None: of every job) noted so far are not the last run of a
        job that has its id from now on (a job removed, or one added anew): its last run is
        forgotten, and none of them becomes it.

        ``at_once``: forgotten before this returns (a job removed: one added under its id
        right after is read with no last run by any process), not only once the writer has
        written the record (which still keeps the runs noted before it from becoming the
        last run as they are written)."""
        at = time.time()
        if at_once:
            try:
                self.history.forget_last_run_now(job_id, at)
            except (InterfaceError, OperationalError):
                logger.warning("could not forget the last run of job %r at once; the writer "
                               "will", "*" if job_id is None else job_id, exc_info=True)
        self._push(("forget", job_id, at))

    def _push(self, record: tuple[Any, ...]) -> None:
        pending = self._pending
        pending.append(record)
        size = len(pending)
        # The writer looks every WRITE_DELAY seconds: it is woken early only when a whole
        # batch waits (a wake-up per record took the interpreter from the jobs).
        if size % MAX_BATCH == 0 or size > MAX_PENDING:
            self._crowded()

    def _crowded(self) -> None:
        """Wake the writer; beyond MAX_PENDING records, drop the oldest."""
        with self._wake:
            while len(self._pending) > MAX_PENDING:
                dropped = self._pending.popleft()
                if dropped[0] == "end":
                    # Its end will not be written: no longer this process's to vouch for.
                    # (A start dropped: its end, when written, inserts the whole run.)
                    self._unfinished.discard(dropped[1][1])
                self._dropped += 1
            self._wake.notify()

    def start(self) -> None:
        with self._wake:
            self._stopping = False
            self._stopped.clear()
            if self._thread is not None and self._thread.is_alive():
                # A writer still finishing after a stop() that timed out (a write slower
                # than its wait) goes on as the writer: a second one would take batches in
                # turn with it, splitting runs' starts from their ends.
                self._wake.notify()
                return
            # The first once the scheduler has started (its tables exist): housekeeping_now().
            self._housekeeping_due = time.monotonic() + HOUSEKEEPING_SECONDS
            self._thread = threading.Thread(target=self._run, name="scheduler_api-recorder",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is pending (for at most ``timeout`` seconds), then stop. The writer
        forgets itself (``_thread``) as it ends, under ``_wake``: see :meth:`start`."""
        with self._wake:
            self._stopping = True
            self._stopped.set()
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _ends_if_stopping(self, unwritten: list[tuple[Any, ...]]) -> bool:
        """Whether the writer ends now: decided under ``_wake``, with start() (which then
        starts a new writer). Records it could not write go back to the queue's front."""
        with self._wake:
            if not self._stopping:
                return False
            self._pending.extendleft(reversed(unwritten))
            self._thread = None
            self._idle = True
            self._wake.notify_all()
            return True

    def housekeeping_now(self) -> None:
        """Look for lost runs and prune at the next chance (a new leader calls it)."""
        with self._wake:
            self._housekeeping_due = 0.0
            self._wake.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written; False if it was not in time."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while (self._pending or not self._idle) and time.monotonic() < deadline:
                self._wake.notify()
                self._wake.wait(0.01)
            return not self._pending and self._idle

    def _run(self) -> None:
        next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
        failures = 0
        batch: list[tuple[Any, ...]] = []
        while True:
            with self._wake:
                if not batch:  # the last batch is written: take the next
                    self._idle = not self._pending
                    self._wake.notify_all()
                    wait = min(next_heartbeat, self._housekeeping_due,
                               time.monotonic() + WRITE_DELAY) - time.monotonic()
                    if not self._pending and not self._stopping and wait > 0:
                        self._wake.wait(wait)
                    # While the scheduler works through a backlog of due jobs, the writes wait
                    # (up to GATHER_SECONDS): the store's write lock and the interpreter go to
                    # starting the jobs, and the records are written in fewer, larger batches.
                    gather_until = time.monotonic() + GATHER_SECONDS
                    while (engine.dispatching() and len(self._pending) < MAX_PENDING // 4
                           and not self._stopping and time.monotonic() < gather_until):
                        self._wake.wait(0.05)
                    while self._pending and len(batch) < MAX_BATCH:
                        batch.append(self._pending.popleft())
                    self._idle = not batch
                stopping, dropped, self._dropped = self._stopping, self._dropped, 0
            if dropped:
                logger.warning("run history: %d records dropped, the database was away too "
                               "long", dropped)
            if stopping and not batch and self._ends_if_stopping([]):
                return
            try:
                if batch and failures:
                    # After a failure, one record at a time: one the database refuses is
                    # dropped instead of holding back every record after it.
                    batch = self._write_each(batch)
                elif batch:
                    self._write(batch)
                    batch = []
                now = time.monotonic()
                if now >= next_heartbeat:
                    next_heartbeat = now + HEARTBEAT_SECONDS
                    self._heartbeat()
                    # A run whose end was dropped stays running in the table (until the
                    # leader takes it for lost): no longer one to finish by an update.
                    self._running_rows.intersection_update(self._unfinished)
                if now >= self._housekeeping_due and not stopping:
                    self._housekeeping_due = now + HOUSEKEEPING_SECONDS
                    if self.leading():
                        self._housekeeping()
                failures = 0 if not batch else failures + 1
            except Exception as error:  # noqa: BLE001 - the database away: keep the batch, retry
                failures += 1
                logger.warning("run history: cannot write to the job store (try %d): %s",
                               failures, describe_database_error(error))
            if failures:
                if stopping and failures >= 3 and self._ends_if_stopping(batch):
                    return
                # Not woken by new records (they come all the time): by stop() only.
                self._stopped.wait(min(5.0, 0.1 * 2 ** min(failures, 6)))

    def _write_each(self, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Write records one at a time; drop those the database refuses; return the rest
        when it cannot be reached."""
        for index, item in enumerate(batch):
            try:
                self._write([item])
            except (OperationalError, InterfaceError):
                return batch[index:]
            except Exception as error:  # noqa: BLE001 - a value it refuses: drop that one
                kind = item[0]
                logger.warning("run history: the job store refused a %s record of job %r; it "
                               "is dropped: %s", kind,
                               item[1][2] if kind == "end" else
                               item[2] if kind in ("run", "whole") else None,
                               describe_database_error(error))
                if kind == "end":
                    self._unfinished.discard(item[1][1])
        return []

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        inserts: dict[str, dict[str, Any]] = {}
        finishes: dict[str, dict[str, Any]] = {}
        events: list[dict[str, Any]] = []
        ended: list[str] = []
        forgotten: list[tuple[str | None, float]] = []
        not_last: set[str] = set()
        for record in batch:
            kind = record[0]
            if kind == "event":
                data = dict(zip(record[3::2], record[4::2], strict=True))
                events.append({"kind": record[1], "data": json.dumps(data, default=str),
                               "at": record[2]})
            elif kind == "lost":
                events.append(self._run_event("run_finished", record[1], time.time()))
            elif kind == "forget":
                job_id = record[1]
                forgotten.append((job_id, record[2]))
                # Runs noted before the forgetting are not the last run of the job now
                # holding the id (they are written in this transaction, after the forgetting).
                not_last.update(run_id for run_id, row in (*inserts.items(), *finishes.items())
                                if job_id is None or row["job_id"] == storable(job_id))
            elif kind == "run":
                row = inserts[record[1]] = self._row((*record, "running", None, None, None))
                events.append(self._run_event("run_started", row, record[5]))
            elif kind == "whole":
                row = inserts[record[1]] = self._row(record)
                events.append(self._run_event("run_finished", row, record[7]))
            else:  # "end"
                _, start, ended_at, outcome, error, result = record
                run_id = start[1]
                ended.append(run_id)
                row = self._row(("whole", *start[1:], outcome, ended_at, error, result))
                # Started and ended within one batch, or its start dropped: one insert.
                (finishes if run_id in self._running_rows and run_id not in inserts
                 else inserts)[run_id] = row
                events.append(self._run_event("run_finished", row, ended_at))
        with self.history.engine.begin() as connection:
            self.history.write(connection, list(inserts.values()), list(finishes.values()),
                               events, forgotten, not_last)
        self._running_rows.update(run_id for run_id, row in inserts.items()
                                  if row["outcome"] == "running")
        # Written as ended: no longer this process's to vouch for when the leader looks for
        # lost runs.
        self._running_rows.difference_update(ended)
        self._unfinished.difference_update(ended)
        if events:
            try:
                self.history.notify()
            except Exception:  # written already: a failed wake-up must not write them twice
                logger.warning("run history: cannot notify the event streams (they see the "
                               "events at their next poll)", exc_info=True)

    def _row(self, record: RunRecord) -> dict[str, Any]:
        """A run record's row in the runs table."""
        _, run_id, job_id, reason, scheduled_at, started, outcome, ended_at, error, result = \
            record
        finished = ended_at if started is not None else None
        error_type, message, text = error or (None, None, None)
        return {"id": run_id, "job_id": storable(job_id), "reason": reason, "outcome": outcome,
                "scheduled_at": scheduled_at.timestamp(), "started_at": started,
                "finished_at": finished,
                "duration": None if finished is None or started is None else finished - started,
                "heartbeat_at": started, "error_type": error_type, "error_message": message,
                "traceback": text, "result": result,
                "host": self.host, "node": self.node, "pid": os.getpid()}

    def _run_event(self, kind: str, row: dict[str, Any], at: float | None) -> dict[str, Any]:
        """A row of the events table: ``kind`` (run_started, run_finished) of the run
        ``row`` (a runs table row) at ``at`` (None: now)."""
        run = self.history.run_from_row(SimpleNamespace(**row)).to_json()
        return {"kind": kind, "at": time.time() if at is None else at,
                "data": json.dumps({"run": run}, default=str)}

    def _heartbeat(self) -> None:
        ids = list(self._unfinished)
        if ids:
            self.history.heartbeat(ids, time.time())

    def mark_lost(self) -> None:
        """Mark lost the runs whose process is gone (see :meth:`RunHistory.mark_lost`): the
        leader's housekeeping, and a Celery worker process as it starts."""
        mine = set(self._unfinished)
        for row in self.history.mark_lost(self.node, os.getpid(), mine,
                                          time.time() - LOST_AFTER_SECONDS):
            logger.warning("run %s of job %s was lost: %s", row["id"], row["job_id"],
                           row["error_message"])
            self._push(("lost", row))

    def _housekeeping(self) -> None:
        self.mark_lost()
        self.history.prune(self.keep_runs, self.keep_days * 86_400, KEEP_EVENTS_SECONDS,
                           self.live_jobs())


def pid_namespace() -> str:
    """This process's pid namespace (Linux), or "" where there is none to tell."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def describe_database_error(error: BaseException) -> str:
    """A database error without the statement's parameters (a run's result, traceback)."""
    original = getattr(error, "orig", None) or error
    return clip(f"{type(original).__name__}: {original}", 300)
