"""The demo server: the job API on a SQLite store, behind HTTP Basic, in one process.

``create_app()`` is the factory (also for gunicorn, see ``examples/gunicorn_app.py``);
``python -m scheduler_api`` / ``scheduler-api`` serve it on 127.0.0.1::

    scheduler-api --port 5000 --username admin   # password from SCHEDULER_API_PASSWORD
    scheduler-api --password-file /run/secrets/scheduler-api   # or from the file's first line
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import os
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from authmw import HTTPBasicAuth, Throttle, compare_secrets

from .config import DEFAULT_JOBSTORE_URL
from .logs import logging_config_from_env
from .scheduler import APScheduler

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

EXAMPLE_TASKS = "scheduler_api.example_tasks:*"


def not_found_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Everything outside the API: a JSON 404 that says where the API is."""
    body = json.dumps({"error_message": "not found; the job API is under /scheduler"}).encode()
    start_response("404 Not Found", [("Content-Type", "application/json"),
                                     ("Content-Length", str(len(body)))])
    return [body]


def _throttle(max_failures: object) -> Throttle | None:
    """Failed logins allowed a minute, per address and per username ("0": no throttling)."""
    count = int(str(max_failures))
    return Throttle(max_failures=count, window=60) if count > 0 else None


#: Where runs go (docs/celery.md): given as they are to the scheduler's settings.
CELERY_ENVIRONMENT = ("SCHEDULER_EXECUTOR", "SCHEDULER_CELERY_BROKER_URL",
                      "SCHEDULER_CELERY_QUEUE", "SCHEDULER_CELERY_ACKS_LATE",
                      "SCHEDULER_CELERY_SIGNING_KEY")
#: The environment variables the demo app reads (``scheduler-api check`` names any other
#: ``SCHEDULER_*`` variable as unknown).
ENVIRONMENT = ("SCHEDULER_API_USERNAME", "SCHEDULER_API_PASSWORD", "SCHEDULER_JOBSTORE_URL",
               "SCHEDULER_JOBSTORE_TABLE", "SCHEDULER_API_ALLOWED_FUNCS",
               "SCHEDULER_API_MAX_FAILURES", "SCHEDULER_EVENTS_MAX_SECONDS",
               "SCHEDULER_EVENTS_MAX_STREAMS", *CELERY_ENVIRONMENT)


def _env_number(config: Mapping[str, Any], name: str, kind: type[int] | type[float]) -> Any:
    """A number setting that the environment gives as text (None when unset)."""
    value = config.get(name)
    if not isinstance(value, str):
        return value
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{name} must be a {'whole ' if kind is int else ''}number, not "
                         f"{value!r:.60}") from None


def _env_flag(config: Mapping[str, Any], name: str) -> bool | None:
    """A yes/no setting that the environment gives as text: 1/true/yes or 0/false/no."""
    value = config.get(name)
    if not isinstance(value, str):
        return value  # type: ignore[no-any-return]
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("", "0", "false", "no"):
        return None if value == "" else False
    raise ValueError(f"{name} must be 1, true, yes, 0, false or no, not {value!r:.60}")


def demo_settings(config: Mapping[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The demo app's ``init_app`` settings, username and password, from ``config`` (the
    environment); ValueError naming a setting that is missing or wrong."""
    username = config.get("SCHEDULER_API_USERNAME") or "admin"
    password = config.get("SCHEDULER_API_PASSWORD")
    if not password:
        raise ValueError("SCHEDULER_API_PASSWORD must be set")
    allowed = config.get("SCHEDULER_API_ALLOWED_FUNCS") or [EXAMPLE_TASKS]
    if isinstance(allowed, str):
        allowed = allowed.split()
    max_failures = str(config.get("SCHEDULER_API_MAX_FAILURES", "10"))
    if not (max_failures.isascii() and max_failures.isdigit()):
        raise ValueError("SCHEDULER_API_MAX_FAILURES must be a whole number (0: no throttling), "
                         f"not {max_failures!r:.60}")
    settings = {
        **{name: config.get(name) or None for name in CELERY_ENVIRONMENT},
        "SCHEDULER_CELERY_ACKS_LATE": _env_flag(config, "SCHEDULER_CELERY_ACKS_LATE"),
        "SCHEDULER_API_ENABLED": True,
        "SCHEDULER_AUTH": HTTPBasicAuth(realm="Scheduler API"),
        "SCHEDULER_THROTTLE": _throttle(max_failures),
        "SCHEDULER_JOBSTORE_URL": config.get("SCHEDULER_JOBSTORE_URL") or DEFAULT_JOBSTORE_URL,
        "SCHEDULER_JOBSTORE_TABLE": config.get("SCHEDULER_JOBSTORE_TABLE"),
        "SCHEDULER_API_ALLOWED_FUNCS": allowed,
        "SCHEDULER_EVENTS_MAX_SECONDS": _env_number(config, "SCHEDULER_EVENTS_MAX_SECONDS",
                                                    float),
        "SCHEDULER_EVENTS_MAX_STREAMS": _env_number(config, "SCHEDULER_EVENTS_MAX_STREAMS",
                                                    int),
    }
    return settings, username, password


def create_app(config: Mapping[str, Any] | None = None,
               scheduler: APScheduler | None = None) -> WSGIApplication:
    """Build the demo app: API enabled, Basic auth from ``SCHEDULER_API_USERNAME``/``PASSWORD``.

    ``config`` defaults to the environment; the scheduler is started (and so runs jobs).
    """
    settings, username, password = demo_settings(
        dict(os.environ if config is None else config))
    scheduler = scheduler or APScheduler()
    app = scheduler.init_app(not_found_app, config=settings)

    @scheduler.authenticate
    def authenticate(auth: Mapping[str, str]) -> bool:
        # Both compared, always: the time taken does not say whether the username exists.
        user_ok = compare_secrets(auth["username"], username)
        password_ok = compare_secrets(auth["password"], password)
        return user_ok and password_ok

    scheduler.start()
    return app  # type: ignore[no-any-return]


def read_password_file(path: str) -> str:
    """The first line of ``path``, without its line end; ValueError saying what is wrong."""
    try:
        with open(path, encoding="utf-8", newline="") as file:
            line = file.readline()
    except UnicodeDecodeError:
        raise ValueError(f"the password file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"cannot read the password file {path}: "
                         f"{exc.strerror or exc}") from None
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ValueError(f"the password file {path} is empty (its first line is the password)")
    return password


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scheduler-api", description=__doc__.splitlines()[0],
                                     epilog="Also: scheduler-api serve [options] (the same), "
                                     "scheduler-api jobs ..., scheduler-api check "
                                     "(see scheduler-api jobs --help)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--jobstore-url", default=os.environ.get("SCHEDULER_JOBSTORE_URL"),
                        help=f"database URL of the job store (default {DEFAULT_JOBSTORE_URL}, "
                             "in the directory the command starts in)")
    parser.add_argument("--username", default=os.environ.get("SCHEDULER_API_USERNAME", "admin"))
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--password-file", metavar="PATH",
                        help="read the password from the first line of PATH (default: "
                             "$SCHEDULER_API_PASSWORD, else generated and printed once)")
    secret.add_argument("--password",
                        help="discouraged: every local user sees it in ps; use "
                             "--password-file or $SCHEDULER_API_PASSWORD")
    parser.add_argument("--allow-func", action="append", metavar="MODULE:NAME",
                        help=f"a callable the API may schedule (default {EXAMPLE_TASKS})")
    args = parser.parse_args(argv)
    try:
        logging.config.dictConfig(logging_config_from_env())
    except ValueError as exc:
        parser.error(str(exc))  # an unknown LOG_FORMAT or LOG_LEVEL, named
    if args.password_file is not None:
        try:
            password = read_password_file(args.password_file)
        except ValueError as exc:
            parser.error(str(exc))  # exits with status 2
    elif args.password is not None:
        print("warning: --password is visible to every local user (ps, /proc); use "
              "--password-file PATH or SCHEDULER_API_PASSWORD instead", file=sys.stderr)
        password = args.password
    else:
        password = os.environ.get("SCHEDULER_API_PASSWORD", "")
    if not password:
        password = secrets.token_urlsafe(18)
        print(f"Generated password for {args.username!r}: {password}", file=sys.stderr)
    try:
        app = create_app({  # the environment, as gunicorn's app reads it; the flags win
            **os.environ,
            "SCHEDULER_API_USERNAME": args.username,
            "SCHEDULER_API_PASSWORD": password,
            "SCHEDULER_JOBSTORE_URL": args.jobstore_url,
            "SCHEDULER_API_ALLOWED_FUNCS": args.allow_func or os.environ.get(
                "SCHEDULER_API_ALLOWED_FUNCS"),
        })
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))  # a setting of the environment, named
    from werkzeug.serving import run_simple

    print(f"Job API on http://{args.host}:{args.port}/scheduler "
          f"(try: curl -u {args.username}:... http://{args.host}:{args.port}/scheduler/jobs)",
          file=sys.stderr)
    run_simple(args.host, args.port, app, threaded=True)
