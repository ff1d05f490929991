"""``APScheduler``: Flask-APScheduler's Python API, for Flask or any WSGI app.

It owns an APScheduler 3 ``BackgroundScheduler``, reads the same ``SCHEDULER_*`` settings
(:mod:`scheduler_api.config`), and mounts the job API (behind
:class:`authmw.AuthMiddleware`) under its prefix::

    scheduler = APScheduler()
    app = scheduler.init_app(app, config={"SCHEDULER_API_ENABLED": True})

It composes the parts: APScheduler's internals through :mod:`scheduler_api.engine`, process
life and the election through :mod:`scheduler_api.process`, listings through
:mod:`scheduler_api.listing`, and it is the :class:`~scheduler_api.protocol.JobScheduler`
the API (:mod:`scheduler_api.api`) serves. Differences from Flask-APScheduler, all on the
safe side: the default job store is a SQLite file, the API schedules only allowed callables,
``run_job`` goes through the executor, and a scheduler shut down and started again runs jobs
again.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, tzinfo
from typing import Any, TypeVar

from apscheduler.events import (
    EVENT_ALL,
    EVENT_ALL_JOBS_REMOVED,
    EVENT_JOB_ADDED,
    EVENT_JOB_MODIFIED,
    EVENT_JOB_REMOVED,
)
from apscheduler.executors.base import MaxInstancesReachedError
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import (
    STATE_PAUSED,
    STATE_RUNNING,
    STATE_STOPPED,
    BaseScheduler,
)
from apscheduler.triggers.base import BaseTrigger
from apscheduler.util import obj_to_ref
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from authmw import AuthenticateCallback, AuthMiddleware, HTTPAuth, Throttle, normalize_prefix

from . import engine
from .api import SchedulerAPI
from .config import (
    DEFAULT_CELERY_QUEUE,
    DEFAULT_JOBSTORE_TABLE,
    DEFAULT_JOBSTORE_URL,
    JOB_DEFAULTS,
    LEADER_EXECUTOR,
    make_engine,
    printable_url,
    read_settings,
    resolve_jobstore_url,
)
from .coordination import Coordinator
from .deadlines import DeadlineLock, bound_store_waits
from .events import EventLimits
from .funcs import FuncPolicy
from .history import RunHistory, RunPage, private_sqlite_engine
from .jobs import (
    DEFAULT_MIN_INTERVAL,
    TRIGGER_DATES,
    check_next_run_time,
    check_trigger,
    read_iso_8601,
    to_datetime,
)
from .listing import JobListing
from .metrics import MAX_JOBS, Metrics, instrument, metrics_enabled
from .process import defer_to_workers, retrying_while_busy, start_scheduler
from .recorder import KEEP_DAYS, KEEP_RUNS, RECORDED_EVENTS, RunRecorder, describe_error
from .ui import UI_PATH, SchedulerUI

logger = logging.getLogger("scheduler_api")

STATE_NAMES = {STATE_RUNNING: "running", STATE_PAUSED: "paused", STATE_STOPPED: "stopped"}
STATE_CODES = {name: code for code, name in STATE_NAMES.items()}
_CHANGE_EVENTS = EVENT_JOB_ADDED | EVENT_JOB_MODIFIED | EVENT_JOB_REMOVED | EVENT_ALL_JOBS_REMOVED
#: The live stream's name of each change to the jobs.
_CHANGE_KINDS = {EVENT_JOB_ADDED: "job_added", EVENT_JOB_MODIFIED: "job_changed",
                 EVENT_JOB_REMOVED: "job_removed", EVENT_ALL_JOBS_REMOVED: "all_jobs_removed"}
#: The keyword arguments of APScheduler's add_job that are not trigger fields.
_ADD_JOB_OPTIONS = frozenset({"id", "func", "trigger", "args", "kwargs", "name",
                              "misfire_grace_time", "coalesce", "max_instances",
                              "next_run_time", "jobstore", "executor", "replace_existing"})

F = TypeVar("F", bound=Callable[..., Any])


def configured_executors(settings: Mapping[str, Any]) -> dict[str, Any]:
    """APScheduler's executors for these settings: ``SCHEDULER_EXECUTORS`` as given, else by
    ``SCHEDULER_EXECUTOR``: the leader's store-first thread pool as ``default``, or Celery
    workers as ``default`` and the thread pool as ``leader`` (for jobs that stay there)."""
    kind = settings.get("SCHEDULER_EXECUTOR", "threadpool")
    celery_settings = sorted(name for name in settings if name.startswith("SCHEDULER_CELERY_"))
    if settings.get("SCHEDULER_EXECUTORS"):
        if "SCHEDULER_EXECUTOR" in settings:
            raise ValueError("SCHEDULER_EXECUTOR and SCHEDULER_EXECUTORS are both set: give "
                             "one (SCHEDULER_EXECUTORS is the whole map of executors)")
        return dict(settings["SCHEDULER_EXECUTORS"])
    if kind == "threadpool":
        if celery_settings:
            raise ValueError(f"{celery_settings[0]} is set but SCHEDULER_EXECUTOR is not "
                             "'celery': runs stay in the leader")
        return {"default": engine.StoreFirstThreadPoolExecutor()}
    from .celery_executor import CeleryExecutor, celery_app_from, check_signing_key

    return {"default": CeleryExecutor(celery_app_from(settings), signing_key=check_signing_key(
                                          settings.get("SCHEDULER_CELERY_SIGNING_KEY")),
                                      queue=settings.get("SCHEDULER_CELERY_QUEUE",
                                                         DEFAULT_CELERY_QUEUE),
                                      acks_late=settings.get("SCHEDULER_CELERY_ACKS_LATE",
                                                             False)),
            LEADER_EXECUTOR: engine.StoreFirstThreadPoolExecutor()}


class APScheduler:
    """The scheduler, its settings, and (when enabled) its API. Mirrors Flask-APScheduler."""

    def __init__(self, scheduler: BaseScheduler | None = None, app: Any = None) -> None:
        self._scheduler = scheduler or BackgroundScheduler()
        engine.bound_catch_up(self._scheduler)  # no scheduling step lists run times unbounded
        # A change never undoes another process's write made since the job was read.
        engine.modify_jobs_by_swap(self._scheduler)
        # A request waits for APScheduler's store lock no longer than its deadline allows.
        engine.wrap_store_lock(self._scheduler, DeadlineLock)
        self.listing = JobListing(self._scheduler)
        self.min_interval = DEFAULT_MIN_INTERVAL
        self.host_name = socket.gethostname().lower()
        self.allowed_hosts: list[str] = ["*"]
        self.api_enabled = False
        self.api_prefix = "/scheduler"
        #: ``{prefix}/ui``, the dashboard (:mod:`scheduler_api.ui`), served with the API.
        self.ui_enabled = True
        self.func_policy = FuncPolicy()
        self.throttle: Throttle | None = None
        self.auth_options: Mapping[str, Any] = {}
        self.auth_middleware: Callable[..., AuthMiddleware] = AuthMiddleware
        self.middleware: AuthMiddleware | None = None
        self.coordinator: Coordinator | None = None
        self.app: Any = None
        self._engine: Engine | None = None
        self._tablename = DEFAULT_JOBSTORE_TABLE
        self.keep_runs = KEEP_RUNS
        self.keep_days = KEEP_DAYS
        self.event_limits = EventLimits()
        #: Every run, in the job store's database (see :meth:`get_runs`); set up by start().
        self.history: RunHistory | None = None
        self.recorder: RunRecorder | None = None
        #: ``{prefix}/metrics`` (None: off; see :mod:`scheduler_api.metrics`).
        self.metrics: Metrics | None = None
        self._auth: HTTPAuth | None = None
        self._authentication_callback: AuthenticateCallback | None = None
        if app is not None:
            self.init_app(app)

    # -- the seed's authentication API -------------------------------------------------------

    @property
    def auth(self) -> HTTPAuth | None:
        """The handler guarding the API; replaceable at any time (None: no authentication)."""
        return self._auth

    @auth.setter
    def auth(self, auth: HTTPAuth | None) -> None:
        if self.middleware is not None:
            self.middleware.auth = auth  # validates the handler
        self._auth = auth

    def authenticate(self, func: F) -> F:
        """Register the callback that validates credentials (a decorator)."""
        self._authentication_callback = func
        if self.middleware is not None:
            self.middleware.authenticate(func)
        return func

    # -- configuration ---------------------------------------------------------------------

    def init_app(self, app: Any, config: object = None) -> Any:
        """Configure from a Flask app's ``config`` (or ``config=``) and mount the API.

        A Flask app gets its ``wsgi_app`` wrapped and is returned; any other WSGI app is
        returned wrapped: authentication first, the API under the prefix, the rest to ``app``.
        An unknown or wrongly typed ``SCHEDULER_*`` setting raises an error naming it.
        """
        is_flask = hasattr(app, "config") and hasattr(app, "wsgi_app")
        settings = read_settings(app.config if is_flask and config is None else config)
        self.app = app
        self._load_config(settings)
        self._load_jobs(settings)
        if is_flask:
            app.apscheduler = self
        if not self.api_enabled:
            return app
        if is_flask:
            app.wsgi_app = self._mount(app.wsgi_app)
            return app
        return self._mount(app)

    def check_config(self, config: object) -> dict[str, Any]:
        """The settings ``config`` holds, checked as :meth:`init_app` checks them (the jobs of
        ``SCHEDULER_JOBS`` too), without mounting, storing or starting anything; ValueError
        or TypeError naming what is wrong (``scheduler-api check``)."""
        settings = read_settings(config)
        try:
            self._load_config(settings)
            for job in settings.get("SCHEDULER_JOBS") or settings.get("JOBS") or ():
                self._checked_config_job(dict(job))
        finally:
            if self._engine is not None:
                self._engine.dispose()
        return settings

    def _load_config(self, settings: Mapping[str, Any]) -> None:
        jobstores = settings.get("SCHEDULER_JOBSTORES")
        if not jobstores:
            url = resolve_jobstore_url(settings.get("SCHEDULER_JOBSTORE_URL",
                                                    DEFAULT_JOBSTORE_URL))
            logger.info("job store: %s", printable_url(url))
            jobstores = {"default": SQLAlchemyJobStore(
                engine=make_engine(url),
                tablename=settings.get("SCHEDULER_JOBSTORE_TABLE", DEFAULT_JOBSTORE_TABLE))}
        for store in jobstores.values():
            if isinstance(store, SQLAlchemyJobStore):
                bound_store_waits(store.engine)
        default_store = jobstores.get("default")
        if isinstance(default_store, SQLAlchemyJobStore):
            self._engine, self._tablename = default_store.engine, default_store.jobs_t.name
        options: dict[str, Any] = {
            "jobstores": jobstores,
            "executors": configured_executors(settings),
            "job_defaults": {**JOB_DEFAULTS, **settings.get("SCHEDULER_JOB_DEFAULTS", {})},
        }
        if settings.get("SCHEDULER_TIMEZONE"):
            options["timezone"] = settings["SCHEDULER_TIMEZONE"]
        self._scheduler.configure(**options)

        self.auth = settings.get("SCHEDULER_AUTH", self._auth)
        self.throttle = settings.get("SCHEDULER_THROTTLE", self.throttle)
        self.auth_options = settings.get("SCHEDULER_AUTH_OPTIONS", self.auth_options)
        self.auth_middleware = settings.get("SCHEDULER_AUTH_MIDDLEWARE", self.auth_middleware)
        self.api_enabled = settings.get("SCHEDULER_API_ENABLED", self.api_enabled)
        self.ui_enabled = settings.get("SCHEDULER_UI_ENABLED", self.ui_enabled)
        self.api_prefix = normalize_prefix(settings.get("SCHEDULER_API_PREFIX", self.api_prefix))
        if self.api_prefix == "/":
            raise ValueError("SCHEDULER_API_PREFIX cannot be '/': the API needs its own prefix")
        self.allowed_hosts = list(settings.get("SCHEDULER_ALLOWED_HOSTS", self.allowed_hosts))
        self.min_interval = settings.get("SCHEDULER_MIN_INTERVAL", self.min_interval)
        self.keep_runs = settings.get("SCHEDULER_HISTORY_KEEP_RUNS", self.keep_runs)
        self.keep_days = settings.get("SCHEDULER_HISTORY_KEEP_DAYS", self.keep_days)
        self._set_up_history()
        if any(hasattr(executor, "celery_app") for executor in options["executors"].values()) \
                and self.shared_store is None:
            raise ValueError("SCHEDULER_EXECUTOR 'celery' needs a job store the workers share "
                             "(SCHEDULER_JOBSTORE_URL: a SQLite file or PostgreSQL), where "
                             "they record their runs and hold max_instances")
        self.metrics = Metrics(self, settings.get("SCHEDULER_METRICS_MAX_JOBS", MAX_JOBS)) \
            if metrics_enabled(settings) else None
        self.event_limits = EventLimits(
            max_seconds=settings.get("SCHEDULER_EVENTS_MAX_SECONDS",
                                     self.event_limits.max_seconds),
            max_streams=settings.get("SCHEDULER_EVENTS_MAX_STREAMS",
                                     self.event_limits.max_streams))
        for rule in settings.get("SCHEDULER_API_ALLOWED_FUNCS", ()):
            self.func_policy.allow(rule)
        if settings.get("SCHEDULER_API_ALLOW_ANY_FUNC", False):
            self.func_policy = FuncPolicy(allow_any=True)
        for job in settings.get("SCHEDULER_JOBS") or settings.get("JOBS") or ():
            self._allow(job.get("func"))  # the operator's own jobs (a Celery worker too)

    def _load_jobs(self, settings: Mapping[str, Any]) -> None:
        for job in settings.get("SCHEDULER_JOBS") or settings.get("JOBS") or ():
            job = dict(job)
            job.setdefault("replace_existing", True)  # a persistent store keeps them across runs
            self.add_job(**self._checked_config_job(job))

    def _checked_config_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """A job of SCHEDULER_JOBS with its trigger built and held to the API's bounds.

        Raises ValueError naming the job when its trigger or next_run_time is refused.
        """
        options = {key: value for key, value in job.items() if key in _ADD_JOB_OPTIONS}
        trigger_args = {key: value for key, value in job.items() if key not in _ADD_JOB_OPTIONS}
        timezone = self._scheduler.timezone
        try:
            trigger = options.get("trigger")
            if not isinstance(trigger, BaseTrigger):
                if trigger != "calendarinterval":  # whose dates are dates, not date-times
                    trigger_args = {key: read_iso_8601(value) if key in TRIGGER_DATES and
                                    isinstance(value, str) else value
                                    for key, value in trigger_args.items()}
                trigger = engine.build_trigger(self._scheduler, trigger, trigger_args)
            engine.bound_trigger(trigger)
            check_trigger(trigger, timezone, self.min_interval)
            if options.get("next_run_time") is not None:
                options["next_run_time"] = check_next_run_time(to_datetime(
                    options["next_run_time"], timezone, "next_run_time"), datetime.now(timezone))
        except (TypeError, ValueError, LookupError, OverflowError) as exc:
            raise ValueError(f"SCHEDULER_JOBS: job {job.get('id')!r}: {exc}") from None
        options["trigger"] = trigger
        return options

    def _allow(self, func: object) -> None:
        try:
            self.func_policy.allow(func if isinstance(func, str) else obj_to_ref(func))
        except (TypeError, ValueError):
            pass  # not importable by reference (a lambda, a nested function): nothing to allow

    def _mount(self, wsgi_app: Any) -> AuthMiddleware:
        api: Any = SchedulerAPI(self)
        # The health checks are public on their exact paths only (authmw's ``public``).
        options = {**self.auth_options,
                   "public": [*self.auth_options.get("public", ()), *self.health_paths]}
        if self.metrics is not None:  # served, and counting the answers
            api.metrics = self.metrics.exposition
            api, options = instrument(api, options)
        mounts = {self.api_prefix: api}
        if self.ui_enabled:  # its own app, not the API's routes: HTML, not JSON
            mounts[self.api_prefix + UI_PATH] = SchedulerUI(self)
        dispatcher = DispatcherMiddleware(wsgi_app, mounts)
        middleware = self.auth_middleware(
            dispatcher, auth=self._auth, prefixes=[self.api_prefix],
            authenticate=self._authentication_callback, throttle=self.throttle, **options)
        if not isinstance(middleware, AuthMiddleware):
            raise TypeError("SCHEDULER_AUTH_MIDDLEWARE must return an authmw.AuthMiddleware, "
                            f"not {type(middleware).__name__}")
        self.middleware = middleware
        return middleware

    @property
    def shared_store(self) -> Engine | None:
        """The default job store's database when other processes can share it (a SQLite
        file, PostgreSQL), else None (a memory store, in-memory SQLite)."""
        engine = self._engine
        in_memory = engine is not None and engine.dialect.name == "sqlite" and \
            engine.url.database in (None, "", ":memory:")
        if engine is None or in_memory:
            return None
        return engine

    @property
    def health_paths(self) -> tuple[str, str]:
        """``{prefix}/health`` and ``{prefix}/ready``: answered without credentials."""
        return f"{self.api_prefix}/health", f"{self.api_prefix}/ready"

    # -- scheduler -------------------------------------------------------------------------

    @property
    def scheduler(self) -> BaseScheduler:
        """The APScheduler scheduler underneath."""
        return self._scheduler

    @property
    def timezone(self) -> tzinfo:
        """The scheduler's time zone (of dates sent without an offset)."""
        return self._scheduler.timezone  # type: ignore[no-any-return]

    @property
    def running(self) -> bool:
        """True unless stopped (here or, when coordinated, for every process)."""
        return bool(self.state != STATE_STOPPED)

    @property
    def state(self) -> int:
        """STATE_STOPPED, STATE_RUNNING or STATE_PAUSED; shared by all processes on one store."""
        return int(STATE_CODES[self.state_name])

    @property
    def state_name(self) -> str:
        if self._scheduler.state == STATE_STOPPED:
            return "stopped"
        if self.coordinator is not None:
            return self.coordinator.shared_state
        return STATE_NAMES[int(self._scheduler.state)]

    @property
    def host_allowed(self) -> bool:
        return "*" in self.allowed_hosts or self.host_name in self.allowed_hosts

    def leader(self) -> dict[str, Any] | None:
        """The process that runs the jobs (host, pid, since), when processes elect one."""
        return self.coordinator.leader() if self.coordinator is not None else None

    def ready_problem(self) -> str | None:
        """Why this process should get no traffic yet (``GET {prefix}/ready``), or None.

        Ready: the job store answers a query and a leader runs the jobs (without an election,
        a store without a lock: this process's scheduler is started). The reason never holds
        the database's own error text (the endpoint is public); the log has its type.
        """
        try:
            if self._engine is not None:
                with self._engine.connect() as connection:
                    connection.execute(select(1))
            if self.coordinator is not None:
                if self.coordinator.leader() is None:
                    return "no leader: no process runs the jobs"
                return None
        except SQLAlchemyError as exc:
            logger.warning("not ready: the job store does not answer (%s)", type(exc).__name__)
            return "the job store does not answer"
        if self._scheduler.state == STATE_STOPPED:
            return "no leader: the scheduler is not started"
        return None

    def start(self, paused: bool = False) -> bool:
        """Start the scheduler; False (and a warning) if this host is not allowed to.

        Call it in every process. With a SQL job store (SQLite file or PostgreSQL), the
        processes elect one leader that runs the jobs; the others serve the API from the
        store. Under ``gunicorn --preload`` the start happens in each worker after the fork.
        """
        if not self.host_allowed:
            logger.warning("host %s is not in SCHEDULER_ALLOWED_HOSTS: scheduler not started",
                           self.host_name)
            return False
        if not defer_to_workers(lambda: self._start_in_worker(paused)):
            self._start_here(paused)
        return True

    def _start_in_worker(self, paused: bool) -> None:
        if self._engine is not None:
            self._engine.dispose(close=False)  # connections belong to the master
        self._start_here(paused)

    def _start_here(self, paused: bool) -> None:
        recorder = self._start_recorder()
        self.coordinator = start_scheduler(self._scheduler, self._engine, self._tablename,
                                           paused, run_job=self._run_job_here,
                                           on_lead=self._now_leading)
        if self.coordinator is not None:
            self._scheduler.add_listener(self._tell_leader, _CHANGE_EVENTS)
        recorder.housekeeping_now()

    def _start_recorder(self) -> RunRecorder:
        """The run history's tables, its recorder, and every run of ours going through it."""
        if self.history is None or self.recorder is None:  # started without init_app
            self._set_up_history()
        assert self.history is not None and self.recorder is not None
        retrying_while_busy(self.history.create_schema)
        for executor in engine.executors(self._scheduler).values():
            if isinstance(executor, engine.StoreFirstThreadPoolExecutor):
                executor.run_job = self.recorder.run_job
            if hasattr(executor, "celery_app"):  # a CeleryExecutor: what it learns as we start
                executor.record_unsent = executor.record_unsent or self._record_unsent
                executor.store_id = self.history.store_id()
        self._scheduler.add_listener(self.recorder.listen, RECORDED_EVENTS)
        self._scheduler.add_listener(self._announce_change, _CHANGE_EVENTS)
        self.listing.last_runs = self.history.last_run_summaries
        self.recorder.start()
        return self.recorder

    def _set_up_history(self) -> None:
        """The history's tables and recorder (no database work: the tables are created by
        start(), in the process that runs, never in gunicorn's master)."""
        self.history = RunHistory(self._engine or private_sqlite_engine(), self._tablename,
                                  self._scheduler.timezone)
        self.recorder = RunRecorder(self.history, leading=self._leads_runs,
                                    keep_runs=self.keep_runs, keep_days=self.keep_days,
                                    live_jobs=self.listing.job_ids)

    def _record_unsent(self, job_id: str, reason: str, run_time: datetime,
                       error: BaseException) -> None:
        if self.recorder is not None:
            self.recorder.record(job_id, reason, run_time, "error", error=describe_error(error))

    def _leads_runs(self) -> bool:
        return self.coordinator is None or self.coordinator.is_leader

    def _now_leading(self, identity: str) -> None:
        if self.recorder is not None:
            host, _, pid = identity.rpartition(":")
            self.recorder.emit("leader_changed", host=host, pid=int(pid))
            self.recorder.housekeeping_now()  # runs the last leader left running are lost

    def _announce_change(self, event: Any) -> None:
        if self.recorder is not None:
            job_id = getattr(event, "job_id", None)
            # A new job with its id has not run (the scheduler's own removals, of jobs with
            # no fire time left, are forgotten as a job with the id is added: add_job). At
            # once: a job added under the id right after shows no last run, in any process.
            if event.code in (EVENT_JOB_REMOVED, EVENT_ALL_JOBS_REMOVED) and \
                    not engine.in_scheduling_step():
                self.recorder.forget_last_run(job_id, at_once=True)
            self.recorder.job_event(_CHANGE_KINDS[event.code], job_id)

    def _announce_state(self) -> None:
        if self.recorder is not None:
            self.recorder.emit("scheduler_state", state=self.state_name)

    def _tell_leader(self, event: object) -> None:
        if self.coordinator is not None:
            self.coordinator.changed()

    def start_all(self) -> None:
        """Let every process run jobs again after :meth:`stop_all` (or start this one)."""
        if self._scheduler.state == STATE_STOPPED:
            self.start()
        if self.coordinator is not None:
            self.coordinator.set_shared_state("running")
        self._announce_state()

    def stop_all(self, wait: bool = True) -> None:
        """Stop running jobs: in every process sharing the store, or in this one alone."""
        if self.coordinator is not None:
            self.coordinator.set_shared_state("stopped")
            self._announce_state()
        else:
            if self.recorder is not None:
                self.recorder.emit("scheduler_state", state="stopped")
            self.shutdown(wait)

    def shutdown(self, wait: bool = True) -> None:
        """Stop this process's scheduler (another process takes over the jobs)."""
        if self.coordinator is not None:
            self._scheduler.remove_listener(self._tell_leader)
            self.coordinator.stop()
            self.coordinator = None
        self._scheduler.shutdown(wait)
        if self.recorder is not None:
            self._scheduler.remove_listener(self.recorder.listen)
            self._scheduler.remove_listener(self._announce_change)
            self.recorder.stop()

    def pause(self) -> None:
        """Pause job processing (in every process sharing the store)."""
        if self.coordinator is not None:
            self.coordinator.set_shared_state("paused")
        else:
            self._scheduler.pause()
        self._announce_state()

    def resume(self) -> None:
        """Resume job processing (in every process sharing the store)."""
        if self.coordinator is not None:
            self.coordinator.set_shared_state("running")
        else:
            self._scheduler.resume()
        self._announce_state()

    def add_listener(self, callback: Callable[..., Any], mask: int = EVENT_ALL) -> None:
        self._scheduler.add_listener(callback, mask)

    def remove_listener(self, callback: Callable[..., Any]) -> None:
        self._scheduler.remove_listener(callback)

    # -- jobs ------------------------------------------------------------------------------

    def task(self, trigger: Any = None, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        """Decorator that schedules a function (``scheduled_job``) and allows it in the API."""
        def decorator(func: F) -> F:
            self._allow(func)
            return self._scheduler.scheduled_job(trigger, *args, **kwargs)(func)  # type: ignore[no-any-return]

        return decorator

    def add_job(self, id: str, func: Any, **kwargs: Any) -> Job:
        kwargs.setdefault("name", id)
        job = self._scheduler.add_job(func, id=id, **kwargs)
        if self.recorder is not None and not kwargs.get("replace_existing", False):
            # A new job (an existing id would have been refused): the last run of a job
            # that had its id before is not its own. (Here, not as the scheduler removes a
            # date job, which is before its run, store first: that forgot nothing, and cost a
            # record per run on the way to every job.) A replacement keeps its last run:
            # SCHEDULER_JOBS are added again at every start.
            self.recorder.forget_last_run(id)
        return job

    def remove_job(self, id: str, jobstore: str | None = None) -> None:
        self._scheduler.remove_job(id, jobstore)

    def remove_all_jobs(self, jobstore: str | None = None) -> None:
        self._scheduler.remove_all_jobs(jobstore)

    def get_job(self, id: str, jobstore: str | None = None) -> Job | None:
        """The job, read from the stores without APScheduler's lock once started.

        APScheduler reads under the lock its writers hold while they wait for the database:
        a read would wait for every write queued before it.
        """
        if self._scheduler.state == STATE_STOPPED:
            return self._scheduler.get_job(id, jobstore)  # pending jobs live under the lock
        for alias, store in engine.jobstores(self._scheduler).items():
            if jobstore in (None, alias):
                job = store.lookup_job(id)
                if job is not None:
                    return job  # type: ignore[no-any-return]
        return None

    def list_jobs(self, limit: int | None = None, offset: int = 0) -> tuple[bytes, int]:
        """The jobs ``[offset, offset + limit)`` in run order as a JSON array, and how many
        there are (see :class:`~scheduler_api.listing.JobListing`)."""
        return self.listing.page(limit, offset)

    def stored_job_state(self, id: str) -> bytes | None:
        """The pickled state of a job in a SQL store, as stored (for jobs that cannot be
        restored); None if there is none."""
        return self.listing.stored_state(id)

    def jobstore_names(self) -> list[str]:
        return list(engine.jobstores(self._scheduler))

    def executor_names(self) -> list[str]:
        return engine.executor_names(self._scheduler)

    def get_jobs(self, jobstore: str | None = None) -> list[Job]:
        return self._scheduler.get_jobs(jobstore)  # type: ignore[no-any-return]

    def modify_job(self, id: str, jobstore: str | None = None, **changes: Any) -> Job:
        return self._scheduler.modify_job(id, jobstore, **changes)

    def change_job(self, id: str, change: engine.JobChange, jobstore: str | None = None) -> Job:
        """:meth:`modify_job` with the changes ``change(job)`` computes from the job as it is
        read: computed again if another process writes the job before the change is written
        (a decision made on the job, such as whether it is paused, is made on the job the
        change is written over)."""
        return engine.change_job(self._scheduler, id, change, jobstore)

    def pause_job(self, id: str, jobstore: str | None = None) -> Job:
        return self._scheduler.pause_job(id, jobstore)

    def resume_job(self, id: str, jobstore: str | None = None) -> Job | None:
        return self._scheduler.resume_job(id, jobstore)

    def run_job(self, id: str, jobstore: str | None = None) -> Job:
        """Run a job now through its executor, without changing its schedule.

        Events fire and ``max_instances`` holds (MaxInstancesReachedError), as for a scheduled
        run; the call returns without waiting for the job to finish. In a process that is not
        the leader, the leader is asked to run it.
        """
        job = self.get_job(id, jobstore)
        if job is None:
            raise JobLookupError(id)
        if self.coordinator is not None and not self.coordinator.is_leader:
            self.coordinator.request_run(job.id)
            return job
        return self._run_job_here(job.id, jobstore)

    def _run_job_here(self, id: str, jobstore: str | None = None) -> Job:
        job = self._scheduler.get_job(id, jobstore)
        if job is None:
            raise JobLookupError(id)
        try:
            engine.run_now(self._scheduler, job, jobstore)
        except MaxInstancesReachedError:
            if self.recorder is not None:
                self.recorder.record(job.id, "run", datetime.now(self.timezone), "skipped")
            raise
        return job

    # -- run history -----------------------------------------------------------------------

    def get_runs(self, job_id: str | None = None, outcome: str | Collection[str] = (),
                 since: datetime | None = None, until: datetime | None = None,
                 limit: int = 100, offset: int = 0) -> RunPage:
        """Recorded runs, newest first: of one job or of all, with these outcomes (any when
        empty), scheduled from ``since`` (included) to ``until`` (excluded); a page of
        ``limit`` from ``offset``, and how many match in all (``.runs``, ``.total``).
        A date without a time zone is in the scheduler's, as everywhere in APScheduler."""
        if self.history is None:
            raise RuntimeError("the run history is set up when the scheduler starts")
        outcomes = [outcome] if isinstance(outcome, str) else list(outcome)
        since, until = (None if moment is None else to_datetime(
            moment, self.timezone, name) for moment, name in ((since, "since"), (until, "until")))
        return self.history.page(job_id, outcomes, since, until, limit, offset)

    def last_runs(self, job_ids: Collection[str]) -> dict[str, str]:
        """Job id -> its last run's summary as JSON text (jobs that never ran are absent)."""
        if self.history is None or not job_ids:
            return {}
        return self.history.last_run_summaries(job_ids)
