"""``APScheduler``: Flask-APScheduler's Python API, for Flask or any WSGI app.

It owns an APScheduler 3 ``BackgroundScheduler``, reads the same ``SCHEDULER_*`` settings,
and mounts the job API (behind :class:`authmw.AuthMiddleware`) under its prefix::

    scheduler = APScheduler()
    app = scheduler.init_app(app, config={"SCHEDULER_API_ENABLED": True})

Differences from Flask-APScheduler, all on the safe side: the default job store is a SQLite
file, the API schedules only allowed callables, ``run_job`` goes through the executor, and a
scheduler shut down and started again runs jobs again.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from apscheduler.events import EVENT_ALL, EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING, BaseScheduler
from apscheduler.util import obj_to_ref
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from authmw import AuthMiddleware, HTTPAuth
from authmw.middleware import AuthenticateCallback
from authmw.paths import normalize_prefix

from .funcs import FuncPolicy

logger = logging.getLogger("scheduler_api")

DEFAULT_JOBSTORE_URL = "sqlite:///scheduler.sqlite"
STATE_NAMES = {STATE_RUNNING: "running", STATE_PAUSED: "paused"}

F = TypeVar("F", bound=Callable[..., Any])


def _config_reader(config: object) -> Callable[[str, Any], Any]:
    if config is None:
        return lambda key, default: default
    if isinstance(config, Mapping):
        return config.get
    return lambda key, default: getattr(config, key, default)


class APScheduler:
    """The scheduler, its settings, and (when enabled) its API. Mirrors Flask-APScheduler."""

    def __init__(self, scheduler: BaseScheduler | None = None, app: Any = None) -> None:
        self._scheduler = scheduler or BackgroundScheduler()
        self.host_name = socket.gethostname().lower()
        self.allowed_hosts: list[str] = ["*"]
        self.api_enabled = False
        self.api_prefix = "/scheduler"
        self.func_policy = FuncPolicy()
        self.middleware: AuthMiddleware | None = None
        self.app: Any = None
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
        """
        is_flask = hasattr(app, "config") and hasattr(app, "wsgi_app")
        read = _config_reader(app.config if is_flask and config is None else config)
        self.app = app
        self._load_config(read)
        self._load_jobs(read)
        if is_flask:
            app.apscheduler = self
        if not self.api_enabled:
            return app
        if is_flask:
            app.wsgi_app = self._mount(app.wsgi_app)
            return app
        return self._mount(app)

    def _load_config(self, read: Callable[[str, Any], Any]) -> None:
        jobstores = read("SCHEDULER_JOBSTORES", None) or {
            "default": SQLAlchemyJobStore(
                url=read("SCHEDULER_JOBSTORE_URL", None) or DEFAULT_JOBSTORE_URL
            )
        }
        options: dict[str, Any] = {"jobstores": jobstores}
        for key, option in (("SCHEDULER_EXECUTORS", "executors"),
                            ("SCHEDULER_JOB_DEFAULTS", "job_defaults"),
                            ("SCHEDULER_TIMEZONE", "timezone")):
            value = read(key, None)
            if value:
                options[option] = value
        self._scheduler.configure(**options)

        self.auth = read("SCHEDULER_AUTH", self._auth)
        self.api_enabled = bool(read("SCHEDULER_API_ENABLED", self.api_enabled))
        self.api_prefix = normalize_prefix(read("SCHEDULER_API_PREFIX", self.api_prefix))
        if self.api_prefix == "/":
            raise ValueError("SCHEDULER_API_PREFIX cannot be '/': the API needs its own prefix")
        self.allowed_hosts = list(read("SCHEDULER_ALLOWED_HOSTS", self.allowed_hosts))
        for rule in read("SCHEDULER_API_ALLOWED_FUNCS", ()):
            self.func_policy.allow(rule)
        if read("SCHEDULER_API_ALLOW_ANY_FUNC", False):
            self.func_policy = FuncPolicy(allow_any=True)

    def _load_jobs(self, read: Callable[[str, Any], Any]) -> None:
        for job in read("SCHEDULER_JOBS", None) or read("JOBS", None) or ():
            job = dict(job)
            job.setdefault("replace_existing", True)  # a persistent store keeps them across runs
            self.add_job(**job)
            self._allow(job["func"])

    def _allow(self, func: object) -> None:
        try:
            self.func_policy.allow(func if isinstance(func, str) else obj_to_ref(func))
        except ValueError:
            pass  # not importable by reference (a lambda, a nested function): nothing to allow

    def _mount(self, wsgi_app: Any) -> AuthMiddleware:
        from .api import SchedulerAPI  # the API imports this module

        dispatcher = DispatcherMiddleware(wsgi_app, {self.api_prefix: SchedulerAPI(self)})
        self.middleware = AuthMiddleware(dispatcher, auth=self._auth, prefixes=[self.api_prefix],
                                         authenticate=self._authentication_callback)
        return self.middleware

    # -- scheduler -------------------------------------------------------------------------

    @property
    def scheduler(self) -> BaseScheduler:
        """The APScheduler scheduler underneath."""
        return self._scheduler

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    @property
    def state(self) -> int:
        """APScheduler's state constant: STATE_STOPPED, STATE_RUNNING or STATE_PAUSED."""
        return int(self._scheduler.state)

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "stopped")

    @property
    def host_allowed(self) -> bool:
        return "*" in self.allowed_hosts or self.host_name in self.allowed_hosts

    def start(self, paused: bool = False) -> bool:
        """Start the scheduler; False (and a warning) if this host is not allowed to."""
        if not self.host_allowed:
            logger.warning("host %s is not in SCHEDULER_ALLOWED_HOSTS: scheduler not started",
                           self.host_name)
            return False
        self._revive_executors()
        self._scheduler.start(paused=paused)
        return True

    def _revive_executors(self) -> None:
        # APScheduler's shutdown() kills the executors' pools and start() does not renew them,
        # so jobs would never run again after a shutdown/start cycle.
        for executor in self._scheduler._executors.values():
            if isinstance(executor, BasePoolExecutor):
                pool = executor._pool
                if getattr(pool, "_shutdown", False) or getattr(pool, "_shutdown_thread", False):
                    executor._pool = type(pool)(max_workers=pool._max_workers)

    def shutdown(self, wait: bool = True) -> None:
        self._scheduler.shutdown(wait)

    def pause(self) -> None:
        self._scheduler.pause()

    def resume(self) -> None:
        self._scheduler.resume()

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
        return self._scheduler.add_job(func, id=id, **kwargs)

    def remove_job(self, id: str, jobstore: str | None = None) -> None:
        self._scheduler.remove_job(id, jobstore)

    def remove_all_jobs(self, jobstore: str | None = None) -> None:
        self._scheduler.remove_all_jobs(jobstore)

    def get_job(self, id: str, jobstore: str | None = None) -> Job | None:
        return self._scheduler.get_job(id, jobstore)

    def get_jobs(self, jobstore: str | None = None) -> list[Job]:
        return self._scheduler.get_jobs(jobstore)  # type: ignore[no-any-return]

    def modify_job(self, id: str, jobstore: str | None = None, **changes: Any) -> Job:
        return self._scheduler.modify_job(id, jobstore, **changes)

    def pause_job(self, id: str, jobstore: str | None = None) -> Job:
        return self._scheduler.pause_job(id, jobstore)

    def resume_job(self, id: str, jobstore: str | None = None) -> Job | None:
        return self._scheduler.resume_job(id, jobstore)

    def run_job(self, id: str, jobstore: str | None = None) -> Job:
        """Run a job now through its executor, without changing its schedule.

        Events fire and ``max_instances`` holds (MaxInstancesReachedError), as for a scheduled
        run; the call returns without waiting for the job to finish.
        """
        job = self._scheduler.get_job(id, jobstore)
        if job is None:
            raise JobLookupError(id)
        executor = self._scheduler._lookup_executor(job.executor)
        run_time = datetime.now(self._scheduler.timezone)
        executor.submit_job(job, [run_time])
        self._scheduler._dispatch_event(
            JobSubmissionEvent(EVENT_JOB_SUBMITTED, job.id, jobstore, [run_time])
        )
        return job
