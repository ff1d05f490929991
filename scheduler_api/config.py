"""The ``SCHEDULER_*`` settings: which exist, what each must be, and the default store.

A setting nobody knows (``SCHEDULER_JOBSTORE_URLS``) or of the wrong type
(``SCHEDULER_API_ENABLED = "yes"``) is an error that names it, as APScheduler's own
configuration errors do, instead of being silently ignored::

    settings = read_settings({"SCHEDULER_API_ENABLED": True})
    settings["SCHEDULER_API_ENABLED"]      # True; unset settings are absent
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import tzinfo
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from authmw import HTTPAuth, Throttle

from .deadlines import SQLITE_BUSY_TIMEOUT_MS

DEFAULT_JOBSTORE_URL = "sqlite:///scheduler.sqlite"
DEFAULT_JOBSTORE_TABLE = "apscheduler_jobs"
#: Job defaults that survive a restart or a leader takeover (APScheduler's own grace time is
#: 1 s: every run due while the processes restart was reported missed). A run up to 60 s
#: late still runs, once for all the run times it missed (coalesce). Each key of
#: ``SCHEDULER_JOB_DEFAULTS`` replaces its own here.
JOB_DEFAULTS: Mapping[str, Any] = {"misfire_grace_time": 60, "coalesce": True}
#: What ``SCHEDULER_EXECUTOR`` may be: runs in the leader's thread pool, or on Celery workers.
EXECUTOR_KINDS = frozenset({"threadpool", "celery"})
#: With Celery workers, the executor alias of jobs that still run in the leader's threads.
LEADER_EXECUTOR = "leader"
#: The queue runs go to unless ``SCHEDULER_CELERY_QUEUE`` says: a queue of their own, so
#: that a Celery worker of the same broker that lacks the task never takes (and drops) one.
DEFAULT_CELERY_QUEUE = "scheduler_api"
#: What ``SCHEDULER_AUTH_OPTIONS`` may hold: ``AuthMiddleware``'s keyword arguments that the
#: other settings do not give (``auth``, ``authenticate``, ``throttle``, ``prefixes``).
AUTH_OPTIONS = frozenset({"rules", "public", "cors_preflight", "on_deny"})


def _check(test: Callable[[Any], bool], expected: str) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if not test(value):
            raise TypeError(f"{name} must be {expected}, not {type(value).__name__} "
                            f"{value!r:.60}")
        return value
    return check


def _strings(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset)) and all(
        isinstance(item, str) for item in value)


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value <= 10**9):
        raise ValueError(f"{name} must be a number of seconds from 0 to 1e9, not {value!r:.60}")
    return float(value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
        raise ValueError(f"{name} must be a whole number from 0 to 1e9, not {value!r:.60}")
    return value


def _days(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 36_500:
        raise ValueError(f"{name} must be a number of days from 0 to 36500, not {value!r:.60}")
    return float(value)


def _bounded(kind: type, low: float, high: float, unit: str) -> Callable[[str, Any], Any]:
    """A number of ``kind`` (int: whole numbers only) from ``low`` to ``high``."""
    def check(name: str, value: Any) -> Any:
        types = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, types) or not low <= value <= high:
            raise ValueError(f"{name} must be a {'whole ' if kind is int else ''}number of "
                             f"{unit} from {low:g} to {high:g}, not {value!r:.60}")
        return kind(value)
    return check


def _auth_options(name: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of AuthMiddleware options, not "
                        f"{type(value).__name__}")
    unknown = set(value) - AUTH_OPTIONS
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {', '.join(sorted(map(str, unknown)))} "
                         f"(known: {', '.join(sorted(AUTH_OPTIONS))})")
    return value


_bool = _check(lambda value: isinstance(value, bool), "True or False")
_str = _check(lambda value: isinstance(value, str), "a str")
_list_of_str = _check(_strings, "a list of str")
_mapping = _check(lambda value: isinstance(value, Mapping), "a mapping (dict)")
_jobs = _check(lambda value: isinstance(value, (list, tuple)) and all(
    isinstance(job, Mapping) for job in value), "a list of job dicts")

#: Every setting, and how its value is checked (None, for any of them: not set).
SETTINGS: dict[str, Callable[[str, Any], Any]] = {
    "SCHEDULER_API_ENABLED": _bool,
    "SCHEDULER_API_PREFIX": _str,
    "SCHEDULER_UI_ENABLED": _bool,  # {prefix}/ui, the dashboard (None: on when the API is)
    "SCHEDULER_ENDPOINT_PREFIX": _str,  # Flask-APScheduler's endpoint names: none here
    "SCHEDULER_AUTH": _check(lambda value: isinstance(value, HTTPAuth), "an authmw handler"),
    "SCHEDULER_AUTH_OPTIONS": _auth_options,
    "SCHEDULER_AUTH_MIDDLEWARE": _check(callable, "a callable that builds the middleware"),
    "SCHEDULER_THROTTLE": _check(lambda value: isinstance(value, Throttle),
                                 "an authmw.Throttle"),
    "SCHEDULER_API_ALLOWED_FUNCS": _list_of_str,
    "SCHEDULER_API_ALLOW_ANY_FUNC": _bool,
    "SCHEDULER_ALLOWED_HOSTS": _list_of_str,
    "SCHEDULER_JOBSTORE_URL": _str,
    "SCHEDULER_JOBSTORE_TABLE": _str,
    "SCHEDULER_JOBSTORES": _mapping,
    "SCHEDULER_EXECUTORS": _mapping,
    # Where runs go: "threadpool" (the leader's threads) or "celery" (Celery workers).
    "SCHEDULER_EXECUTOR": _check(lambda value: value in EXECUTOR_KINDS,
                                 f"one of {', '.join(map(repr, sorted(EXECUTOR_KINDS)))}"),
    "SCHEDULER_CELERY_APP": _check(lambda value: not isinstance(value, (bytes, int, float)),
                                   "'module:attr' or a Celery app"),
    "SCHEDULER_CELERY_BROKER_URL": _str,
    "SCHEDULER_CELERY_QUEUE": _str,
    "SCHEDULER_CELERY_ACKS_LATE": _bool,
    "SCHEDULER_CELERY_SIGNING_KEY": _check(lambda value: isinstance(value, (str, bytes)),
                                           "a str"),
    "SCHEDULER_JOB_DEFAULTS": _mapping,
    "SCHEDULER_TIMEZONE": _check(lambda value: isinstance(value, (str, tzinfo)),
                                 "a time zone name or tzinfo"),
    "SCHEDULER_MIN_INTERVAL": _seconds,
    "SCHEDULER_JOBS": _jobs,
    "SCHEDULER_HISTORY_KEEP_RUNS": _count,
    "SCHEDULER_HISTORY_KEEP_DAYS": _days,
    "SCHEDULER_METRICS_ENABLED": _bool,  # {prefix}/metrics (None: if prometheus-client is there)
    "SCHEDULER_METRICS_MAX_JOBS": _count,  # jobs with runs series of their own
    "SCHEDULER_EVENTS_MAX_SECONDS": _bounded(float, 1, 86_400, "seconds"),
    "SCHEDULER_EVENTS_MAX_STREAMS": _bounded(int, 0, 100_000, "streams"),
    "JOBS": _jobs,  # Flask-APScheduler's older name of SCHEDULER_JOBS
}


def _names(config: object) -> list[str]:
    if isinstance(config, Mapping):
        return [name for name in config if isinstance(name, str)]
    return dir(config)


def read_settings(config: object) -> dict[str, Any]:
    """The settings ``config`` (a mapping, a Flask ``app.config``, or an object with
    attributes) holds, checked; ValueError or TypeError naming a setting that is unknown or
    wrong. Other keys (not ``SCHEDULER_*``) are not this package's and are left alone."""
    if config is None:
        return {}
    settings = {}
    for name in _names(config):
        if not name.startswith("SCHEDULER_") and name != "JOBS":
            continue
        if name not in SETTINGS:
            raise ValueError(f"unknown setting {name} (known: "
                             f"{', '.join(sorted(SETTINGS))})")
        value = config[name] if isinstance(config, Mapping) else getattr(config, name)
        if value is not None:
            settings[name] = SETTINGS[name](name, value)
    return settings


def resolve_jobstore_url(url: str) -> URL:
    """``url`` with a relative SQLite file made absolute (from the working directory now), so
    that a later ``chdir`` never moves the store and the start-up log can name its file::

        resolve_jobstore_url("sqlite:///scheduler.sqlite").database   # '/srv/app/scheduler.sqlite'

    In-memory SQLite and other databases are returned as they are.
    """
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or \
            database.startswith("file:") or os.path.isabs(database):
        return parsed
    return parsed.set(database=os.path.abspath(database))


#: Query parameters of a database URL that hold a secret (libpq's, and drivers' alike).
SECRET_URL_PARAMETERS = frozenset({"password", "passfile", "sslpassword", "sslkey",
                                   "passphrase", "secret", "token"})


def printable_url(url: str | URL) -> str:
    """A database URL fit for a log line or a report: its password, and every query parameter
    that holds a secret (``?password=``), shown as ``***``; a URL that cannot be read, or
    whose password holds an unescaped ``@`` (part of it would show as the host), as a
    placeholder."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:  # noqa: BLE001 - whatever is wrong with it, nothing of it is shown
        return "<a database URL that cannot be read>"
    if parsed.host and "@" in parsed.host:
        return f"{parsed.drivername}://<a URL whose password holds '@': escape it as %40>"
    hidden = {key: "***" for key in parsed.query if key.lower() in SECRET_URL_PARAMETERS}
    text: str = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return text


def make_engine(url: str | URL) -> Engine:
    """An engine fit for a job store shared by several processes."""
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        # pre-ping: survive a restart; timeouts: a request never hangs on an unreachable
        # server (no connection in 5 s, or sent data unacknowledged for 10 s, is an error).
        return create_engine(url, pool_pre_ping=True, connect_args={
            "connect_timeout": 5, "tcp_user_timeout": 10_000})
    if backend != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    # Wait up to 5 s for another process's write, then fail (a 503), never hang a request.
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def use_wal(dbapi_connection: Any, _: Any) -> None:
        # Readers never wait for the one writer: every worker can serve the API meanwhile.
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        # Under WAL, NORMAL syncs the log at checkpoints, not at every commit (FULL): a
        # commit costs no fsync, so a job's next run time is stored (store first) without
        # waiting for the disk. A commit survives the process being killed (kill -9, OOM:
        # it is in the OS's cache); only a power cut or an OS crash can undo the commits
        # since the last checkpoint, never corrupt the database. What that can cost: a job
        # whose next run time was undone runs again after the machine comes back.
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    return engine


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see the database as it was at the first: a page and its
    total agree while other processes write. Each statement took its own snapshot before
    (pysqlite begins no transaction for a SELECT; PostgreSQL reads at READ COMMITTED)."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="REPEATABLE READ")
        elif connection.dialect.name == "sqlite":
            driver: Any = connection.connection.driver_connection
            if not driver.in_transaction:
                # Deferred: under WAL no writer waits for it. On the driver's connection: the
                # statement needs none of SQLAlchemy's execution work (a tenth of a page).
                driver.execute("BEGIN")
        yield connection  # leaving connect() rolls the read transaction back
