"""The Celery workers' side: one generic task that runs a scheduler_api job, on any host.

The leader sends each run (:class:`scheduler_api.celery_executor.CeleryExecutor`), signed
with the key it shares with the workers; a worker takes only what that key signed, for its
own store, and, before anything else, checks the func against the allow-list again (the
message, or the store it came from, may have been edited by hand: ``os:system`` is refused
without importing ``os``); then takes one of the job's ``max_instances`` slots in the store
(:mod:`scheduler_api.run_slots`: the limit holds across every worker and host; a run over it
is recorded ``skipped``); then runs it as the leader's thread pool would, recording start,
end, outcome, error, host and pid in the same run history (a run that waited in the queue
past its ``misfire_grace_time`` is recorded ``missed``, not run late)::

    SCHEDULER_CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:5672// \\
    SCHEDULER_CELERY_SIGNING_KEY=...the-scheduler's... \\
    SCHEDULER_JOBSTORE_URL=postgresql+psycopg://scheduler@db/scheduler \\
    SCHEDULER_API_ALLOWED_FUNCS="tasks:*" celery -A scheduler_api.celery_worker worker

In a Celery app of your own, ``register(celery_app, settings)`` with the scheduler's settings
(the same mapping its ``init_app`` gets), and start its workers with ``-Q scheduler_api``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from apscheduler.job import Job
from apscheduler.util import ref_to_obj
from sqlalchemy import exists, select

from .celery_executor import TASK, TASK_ACKS_LATE, check_signing_key, configure, unseal
from .config import DEFAULT_CELERY_QUEUE, read_settings
from .engine import ManualRun
from .funcs import ForbiddenFunc, FuncPolicy
from .history import RunHistory, storable
from .process import retrying_while_busy
from .recorder import LOST_AFTER_SECONDS, RunRecorder, describe_error
from .run_slots import RunSlots

logger = logging.getLogger("scheduler_api")

#: The logger of a run's own lines ("Running job ...", "... executed successfully").
RUN_LOGGER = "apscheduler.executors.celery"
#: Run times one message may carry (a coalesced backlog is one run time).
MAX_RUN_TIMES = 1000
#: The largest message taken (its JSON text): a job's args travel in it.
MAX_MESSAGE_BYTES = 1 << 20
#: The longest job id: the job store's, the run history's and the slots' job_id column.
MAX_JOB_ID_LENGTH = 191


class BadMessage(ValueError):
    """A message that is not a run the leader sent (its field named)."""


class QueuedJob:
    """The job of one run message: what :meth:`RunRecorder.run_job` reads of a Job."""

    def __init__(self, message: Mapping[str, Any]) -> None:
        def field(name: str, kinds: type | tuple[type, ...]) -> Any:
            value = message.get(name)
            if isinstance(value, bool) or not isinstance(value, kinds):  # True is no number
                raise BadMessage(f"run message: {name!r} is missing or of the wrong type")
            return value

        if not isinstance(message, Mapping):
            raise BadMessage("run message: not a JSON object")
        self.id: str = field("job_id", str)
        self.name: str = field("name", str)
        self.func_ref: str = field("func", str)
        self.args: list[Any] = field("args", list)
        self.kwargs: dict[str, Any] = field("kwargs", dict)
        self.reason: str = field("reason", str)
        grace = message.get("misfire_grace_time")
        self.misfire_grace_time: float | None = None if grace is None else field(
            "misfire_grace_time", (int, float))
        self.max_instances: int = field("max_instances", int)
        texts = field("run_times", list)
        # What the store cannot take (an id too long, NUL, a lone surrogate) would fail the
        # slot's INSERT: the task would raise and the run be recorded nowhere.
        if self.reason not in ("schedule", "run") or self.max_instances < 1 or not (
                1 <= len(texts) <= MAX_RUN_TIMES) or not all(
                isinstance(key, str) for key in self.kwargs) or not (
                1 <= len(self.id) <= MAX_JOB_ID_LENGTH) or storable(self.id) != self.id:
            raise BadMessage("run message: a field is out of range")
        try:  # run_job makes a timedelta of it: NaN, infinity or 1e300 would raise there
            if grace is not None:
                timedelta(seconds=grace)
        except (OverflowError, ValueError):
            raise BadMessage("run message: 'misfire_grace_time' is out of range") from None
        try:
            times = [datetime.fromisoformat(text) for text in texts]
            # A time whose UTC is past year 9999 (or before year 1) cannot be read back from
            # the history: its run would run and its record be dropped.
            for moment in times:
                moment.astimezone(timezone.utc)
        except (TypeError, ValueError, OverflowError):
            raise BadMessage("run message: 'run_times' must be ISO 8601 times") from None
        if any(moment.tzinfo is None for moment in times):
            raise BadMessage("run message: 'run_times' need their UTC offset")
        self.run_times: list[datetime] = ManualRun(times) if self.reason == "run" else times
        self.func: Any = None  # resolved once the allow-list let it through

    def __str__(self) -> str:
        return f"{self.name:.200} (sent by the scheduler's leader)"  # a log line stays short


class WorkerRuns:
    """What one worker process needs to run jobs: the allow-list, the run history and the
    ``max_instances`` slots of the store the scheduler uses."""

    def __init__(self, policy: FuncPolicy, history: RunHistory, signing_key: bytes) -> None:
        self.policy = policy
        self.history = history
        self.signing_key = signing_key
        self.store_id: str | None = None  # read as it starts
        self.recorder = RunRecorder(history, leading=lambda: False)
        self.slots = RunSlots(history.engine, history.tablename, self.recorder.node,
                              stale_after=LOST_AFTER_SECONDS,
                              running_elsewhere=self._running_elsewhere)

    def start(self) -> None:
        """Tables, the recorder's thread, and the runs of this node's dead processes marked
        lost (a worker killed mid-run is replaced by one that starts here)."""
        retrying_while_busy(self.history.create_schema)
        retrying_while_busy(self.slots.create_schema)
        self.store_id = self.history.store_id()
        self.recorder.start()
        try:
            self.recorder.mark_lost()
        except Exception:
            logger.warning("cannot look for lost runs at the worker's start", exc_info=True)

    def stop(self) -> None:
        self.recorder.stop()

    def run_sealed(self, sealed: object) -> str:
        """Run the job of a message as it came from the broker: only if the leader signed
        it with this worker's key, for this worker's store."""
        try:
            message = unseal(sealed, self.signing_key, MAX_MESSAGE_BYTES)
        except ValueError as error:
            raise BadMessage(str(error)) from None
        if not isinstance(message, Mapping) or message.get("store") != self.store_id:
            raise BadMessage("run message: sent by the scheduler of another job store (this "
                             "worker's SCHEDULER_JOBSTORE_URL is not the scheduler's)")
        return self.run(message)

    def run(self, message: Mapping[str, Any]) -> str:
        """Run one message's job (a message already unsealed); the outcome in a word (for
        Celery's log)."""
        job = QueuedJob(message)
        try:
            self.policy.check(job.func_ref)
            job.func = ref_to_obj(job.func_ref)
        except (ForbiddenFunc, LookupError, ImportError) as error:
            logger.error("job %.100r not run: %s", job.id, error)
            self._record_all(job, "error", describe_error(error))
            return "refused"
        if not self.slots.claim(job.id, job.max_instances):
            logger.warning('job "%s" not run: max_instances (%d) runs are running',
                           job, job.max_instances)
            self._record_all(job, "skipped")
            return "skipped"
        try:
            # A QueuedJob holds every attribute run_job reads of an APScheduler Job.
            self.recorder.run_job(cast(Job, job), "default", job.run_times, RUN_LOGGER)
        finally:
            self.slots.release(job.id)
        return "ran"

    def _record_all(self, job: QueuedJob, outcome: str,
                    error: tuple[str, str, str] | None = None) -> None:
        for run_time in job.run_times:
            self.recorder.record(job.id, job.reason, run_time, outcome, error=error)

    def _running_elsewhere(self, job_id: str, node: str, pid: int, since: float) -> bool:
        runs = self.history.runs
        with self.history.engine.connect() as connection:
            return bool(connection.execute(select(exists().where(
                runs.c.job_id == job_id, runs.c.node == node, runs.c.pid == pid,
                runs.c.outcome == "running", runs.c.heartbeat_at >= since))).scalar())


def worker_runs(settings: object) -> WorkerRuns:
    """The worker's side of a scheduler configured by ``settings`` (as its ``init_app``):
    the same store, table and allow-list."""
    from .scheduler import APScheduler  # the scheduler imports this package's executors

    checked = read_settings(settings)
    key = check_signing_key(checked.get("SCHEDULER_CELERY_SIGNING_KEY"))
    scheduler = APScheduler()
    # The store and the allow-list; where the scheduler sends runs is not the worker's.
    scheduler.check_config({name: value for name, value in checked.items()
                            if not name.startswith(("SCHEDULER_CELERY_", "SCHEDULER_EXECUTOR"))})
    if scheduler.shared_store is None or scheduler.history is None:
        raise ValueError("a Celery worker needs the scheduler's job store (SCHEDULER_JOBSTORE_URL:"
                         " a SQLite file or PostgreSQL), where it records runs")
    return WorkerRuns(scheduler.func_policy, scheduler.history, key)


def register(celery_app: Any, settings: object) -> None:
    """Give ``celery_app`` the generic run tasks, for a scheduler configured by
    ``settings``; each worker process opens the store when it starts (or at its first run)."""
    from celery import signals

    state: dict[int, WorkerRuns] = {}
    lock = threading.Lock()

    def runs_here() -> WorkerRuns:
        with lock:
            runs = state.get(os.getpid())
            if runs is None:  # a new process (a forked pool process): its own connections
                state.clear()
                runs = state[os.getpid()] = worker_runs(settings)
                runs.start()
            return runs

    def run(message: dict[str, Any]) -> str:
        try:
            return runs_here().run_sealed(message)
        except BadMessage as error:
            logger.error("%s: not run", error)
            return "malformed"

    celery_app.task(name=TASK, ignore_result=True)(run)
    celery_app.task(name=TASK_ACKS_LATE, ignore_result=True, acks_late=True,
                    reject_on_worker_lost=True)(run)

    def open_store(**_: Any) -> None:
        runs_here()

    def close_store(**_: Any) -> None:
        with lock:
            runs = state.pop(os.getpid(), None)
        if runs is not None:
            runs.stop()  # what is recorded but not written yet

    signals.worker_process_init.connect(open_store, weak=False)
    signals.worker_process_shutdown.connect(close_store, weak=False)
    signals.worker_shutdown.connect(close_store, weak=False)


def create_worker_app(environ: Mapping[str, str] | None = None) -> Any:
    """The Celery app of ``celery -A scheduler_api.celery_worker worker``, from the
    environment as the demo server reads it: ``SCHEDULER_CELERY_BROKER_URL``,
    ``SCHEDULER_CELERY_SIGNING_KEY``, ``SCHEDULER_CELERY_QUEUE``, ``SCHEDULER_JOBSTORE_URL``,
    ``SCHEDULER_JOBSTORE_TABLE`` and ``SCHEDULER_API_ALLOWED_FUNCS`` (space-separated)."""
    from celery import Celery

    from .server import EXAMPLE_TASKS

    environ = os.environ if environ is None else environ
    broker = environ.get("SCHEDULER_CELERY_BROKER_URL")
    if not broker:
        raise ValueError("SCHEDULER_CELERY_BROKER_URL must be set (the broker the scheduler "
                         "sends runs to)")
    app = Celery("scheduler_api", broker=broker)
    configure(app, environ.get("SCHEDULER_CELERY_QUEUE") or DEFAULT_CELERY_QUEUE)
    settings: dict[str, Any] = {
        "SCHEDULER_JOBSTORE_URL": environ.get("SCHEDULER_JOBSTORE_URL") or None,
        "SCHEDULER_JOBSTORE_TABLE": environ.get("SCHEDULER_JOBSTORE_TABLE") or None,
        "SCHEDULER_API_ALLOWED_FUNCS": (environ.get("SCHEDULER_API_ALLOWED_FUNCS")
                                        or EXAMPLE_TASKS).split(),
        "SCHEDULER_CELERY_SIGNING_KEY": environ.get("SCHEDULER_CELERY_SIGNING_KEY"),
    }
    check_signing_key(settings["SCHEDULER_CELERY_SIGNING_KEY"])  # named at start, not per run
    register(app, settings)
    return app


def __getattr__(name: str) -> Any:
    """``app``, made when Celery asks for it (importing this module needs no broker)."""
    if name == "app":
        app = globals()["app"] = create_worker_app()
        return app
    raise AttributeError(name)
