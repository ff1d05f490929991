"""``scheduler-api check``: a configuration's settings checked as the server checks them, and
what it would serve, without connecting to the store or starting anything::

    report = check_configuration(None, os.environ)      # or "myproject.settings", a module
    report["job store"]     # 'sqlite:///scheduler.sqlite (table apscheduler_jobs)'

A wrong setting is a :class:`ConfigError` that names it (``check`` exits 1); passwords
(the API's, the store URL's) are never part of the report or of an error.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.util import ref_to_obj
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from authmw import HTTPAuth, Throttle, normalize_prefix

from .config import (
    DEFAULT_CELERY_QUEUE,
    DEFAULT_JOBSTORE_TABLE,
    DEFAULT_JOBSTORE_URL,
    LEADER_EXECUTOR,
    printable_url,
)
from .metrics import metrics_enabled
from .scheduler import APScheduler
from .server import ENVIRONMENT, demo_settings

#: The variables ``scheduler-api jobs`` reads (known to ``check`` as well as the server's).
CLIENT_ENVIRONMENT = ("SCHEDULER_API_URL", "SCHEDULER_API_USERNAME", "SCHEDULER_API_PASSWORD")


class ConfigError(Exception):
    """A setting that is wrong, named in the message (no password in it)."""


def _load_module(name: str) -> ModuleType:
    """A module by dotted name, or a ``.py`` file by path."""
    try:
        if name.endswith(".py") or os.sep in name:
            spec = importlib.util.spec_from_file_location("scheduler_api_config", name)
            if spec is None or spec.loader is None:
                raise ImportError(f"not a Python file: {name}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - any error of the user's module is the answer
        raise ConfigError(f"--config {name}: cannot load it: {type(error).__name__}: "
                          f"{error}") from None


def _environment_config(environ: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """The demo server's settings from the environment, and who the API's user is."""
    known = {*ENVIRONMENT, *CLIENT_ENVIRONMENT}
    unknown = sorted(name for name in environ if name.startswith("SCHEDULER_")
                     and not name.startswith("SCHEDULER_TEST_") and name not in known)
    if unknown:
        raise ConfigError(f"unknown environment variable {unknown[0]} (known: "
                       f"{', '.join(sorted(known))})")
    settings, username, _ = demo_settings(environ)
    return settings, f"user {username!r}, password set (hidden)"


def _store(settings: Mapping[str, Any]) -> str:
    stores = settings.get("SCHEDULER_JOBSTORES")
    if stores:
        return ", ".join(f"{alias}: {_describe_store(store)}" for alias, store in stores.items())
    url = settings.get("SCHEDULER_JOBSTORE_URL", DEFAULT_JOBSTORE_URL)
    table = settings.get("SCHEDULER_JOBSTORE_TABLE", DEFAULT_JOBSTORE_TABLE)
    return f"{_hidden(url)} (table {table})"


def _describe_store(store: object) -> str:
    if isinstance(store, SQLAlchemyJobStore):
        return f"SQLAlchemyJobStore {printable_url(store.engine.url)} (table {store.jobs_t.name})"
    return type(store).__name__


def _hidden(url: str) -> str:
    try:
        make_url(url)
    except ArgumentError:  # its message quotes the URL, password and all
        raise ConfigError("SCHEDULER_JOBSTORE_URL is not a database URL "
                          "(dialect+driver://user:password@host/database)") from None
    return printable_url(url)


def _runs(settings: Mapping[str, Any]) -> str:
    """Where runs go: the leader's threads, Celery workers (through which broker), or the
    executors given."""
    executors = settings.get("SCHEDULER_EXECUTORS")
    if executors:
        return ", ".join(f"{alias}: {type(executor).__name__}"
                         for alias, executor in executors.items())
    if settings.get("SCHEDULER_EXECUTOR") != "celery":
        return "the leader's thread pool"
    broker = settings.get("SCHEDULER_CELERY_BROKER_URL")
    via = printable_url(broker) if broker else f"the app {settings['SCHEDULER_CELERY_APP']!r:.80}"
    late = ", acknowledged when they end" if settings.get("SCHEDULER_CELERY_ACKS_LATE") else ""
    return (f"Celery workers through {via}, queue "
            f"{settings.get('SCHEDULER_CELERY_QUEUE', DEFAULT_CELERY_QUEUE)}{late}; "
            f"jobs with executor '{LEADER_EXECUTOR}' in the leader's threads")


def _auth(settings: Mapping[str, Any], user: str) -> str:
    auth = settings.get("SCHEDULER_AUTH")
    if not isinstance(auth, HTTPAuth):
        return "NONE: the API is served without authentication"
    challenges = "; ".join(auth.get_authenticate_headers())
    return f"{type(auth).__name__} ({challenges})" + (f", {user}" if user else "")


def _throttle(settings: Mapping[str, Any]) -> str:
    throttle = settings.get("SCHEDULER_THROTTLE")
    if not isinstance(throttle, Throttle):
        return "off"
    return (f"{throttle.max_failures} failed logins per {throttle.window:g} s, per address "
            "and per username")


def _jobs(settings: Mapping[str, Any]) -> list[str]:
    jobs = []
    for job in settings.get("SCHEDULER_JOBS") or settings.get("JOBS") or ():
        func = job.get("func")
        if isinstance(func, str):
            try:
                ref_to_obj(func)
            except (LookupError, ValueError, TypeError) as error:
                raise ConfigError(f"SCHEDULER_JOBS: job {job.get('id')!r}: func {func!r} "
                                  f"cannot be imported: {error}") from None
        jobs.append(f"{job.get('id')} ({func}, "
                    f"{job.get('trigger') or 'date'})")
    return jobs


def check_configuration(module_name: str | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """What a configuration would serve (a dict of short texts); CLIError naming a bad
    setting."""
    secrets: list[str] = []
    try:
        if module_name is None:
            source = "environment (scheduler-api serve, examples/gunicorn_app.py)"
            if environ.get("SCHEDULER_API_PASSWORD"):
                secrets.append(environ["SCHEDULER_API_PASSWORD"])
            config, user = _environment_config(environ)
        else:
            source = f"module {module_name}"
            module = _load_module(module_name)
            config, user = {name: getattr(module, name) for name in dir(module)}, ""
        url = config.get("SCHEDULER_JOBSTORE_URL")
        if isinstance(url, str):
            _hidden(url)  # refused here, before anything else could quote it
            if make_url(url).password:
                secrets.append(str(make_url(url).password))
        if isinstance(config.get("SCHEDULER_CELERY_SIGNING_KEY"), str):
            secrets.append(config["SCHEDULER_CELERY_SIGNING_KEY"])
        broker = config.get("SCHEDULER_CELERY_BROKER_URL")
        if isinstance(broker, str) and urlsplit(broker).password:
            secrets.append(urlsplit(broker).password)  # type: ignore[arg-type]
        settings = APScheduler().check_config(config)
        prefix = normalize_prefix(settings.get("SCHEDULER_API_PREFIX", "/scheduler"))
        funcs = ("ANY importable callable (SCHEDULER_API_ALLOW_ANY_FUNC): dangerous"
                 if settings.get("SCHEDULER_API_ALLOW_ANY_FUNC")
                 else list(settings.get("SCHEDULER_API_ALLOWED_FUNCS", [])))
        return {
            "source": source,
            "api": (f"served at {prefix}" if settings.get("SCHEDULER_API_ENABLED")
                    else "not served (SCHEDULER_API_ENABLED is not True)"),
            "job store": _store(settings),
            "auth": _auth(settings, user),
            "throttle": _throttle(settings),
            "allowed funcs": funcs,
            "jobs defined": _jobs(settings),
            "runs": _runs(settings),
            "metrics": (f"{prefix}/metrics" if metrics_enabled(settings) else
                        "off (SCHEDULER_METRICS_ENABLED, or prometheus-client not installed)"),
        }
    except ConfigError as error:
        raise ConfigError(_redact(str(error), secrets)) from None
    except (ValueError, TypeError, ImportError, ArgumentError) as error:
        raise ConfigError(_redact(f"{error}", secrets)) from None


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
