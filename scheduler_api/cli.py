"""``scheduler-api``: serve the demo API, drive a running one, or check a configuration.

The server's URL comes from ``SCHEDULER_API_URL`` and the credentials from
``SCHEDULER_API_USERNAME`` / ``SCHEDULER_API_PASSWORD`` or a netrc file, never from the
command line (every local user can read it)::

    SCHEDULER_API_URL=http://127.0.0.1:5000/scheduler scheduler-api jobs list
    scheduler-api check            # the environment's settings, as the server reads them

``scheduler-api [options]`` and ``scheduler-api serve [options]`` start the demo server
(:func:`scheduler_api.server.main`). Exit codes: 0 done, 1 the configuration is wrong
(``check``), 2 bad usage or client settings, 3 the API refused the request (4xx), 4 the
server failed (5xx) or could not be reached.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import netrc
import os
import stat
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

DEFAULT_URL = "http://127.0.0.1:5000/scheduler"
TIMEOUT_SECONDS = 30.0
EXIT_INVALID, EXIT_USAGE, EXIT_REFUSED, EXIT_FAILED = 1, 2, 3, 4
_CREDENTIALS_HINT = ("set SCHEDULER_API_USERNAME and SCHEDULER_API_PASSWORD, or put the "
                     "host in a netrc file ($NETRC or ~/.netrc)")


class CLIError(Exception):
    """A message for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# -- talking to the server -----------------------------------------------------------------

class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would send the Authorization header on to wherever a redirect points."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        raise CLIError(f"the server answered {code} (a redirect); not followed: check "
                       "SCHEDULER_API_URL", EXIT_FAILED)


@dataclass(frozen=True)
class Client:
    """The API at ``base`` (its prefix, no trailing slash), with an Authorization value."""

    base: str
    authorization: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Client:
        base = environ.get("SCHEDULER_API_URL") or DEFAULT_URL
        try:
            parts = urllib.parse.urlsplit(base)
            parts.port  # noqa: B018 - a port that is not a number raises here
            if any(ord(character) < 33 or ord(character) == 127 for character in base):
                raise ValueError("a control character or space")
        except ValueError:
            raise CLIError(f"SCHEDULER_API_URL is not a URL, such as {DEFAULT_URL}",
                           EXIT_USAGE) from None
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise CLIError("SCHEDULER_API_URL must not hold credentials (user:password@); "
                           + _CREDENTIALS_HINT, EXIT_USAGE)  # and the URL is not repeated
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CLIError(f"SCHEDULER_API_URL must be an http:// or https:// URL, such as "
                           f"{DEFAULT_URL}", EXIT_USAGE)
        if parts.query or parts.fragment:
            raise CLIError("SCHEDULER_API_URL must not have a query or a fragment", EXIT_USAGE)
        credentials = _credentials(environ, parts.hostname)
        authorization = None
        if credentials is not None:
            raw = f"{credentials[0]}:{credentials[1]}".encode()
            authorization = "Basic " + base64.b64encode(raw).decode("ascii")
        return cls(base.rstrip("/"), authorization)

    def call(self, method: str, path: str, body: Any = None,
             query: Mapping[str, Any] | None = None) -> tuple[int, bytes]:
        """(status, body) of a 2xx answer; CLIError for anything else."""
        url = self.base + urllib.parse.quote(path, safe="/")
        if query:
            url += "?" + urllib.parse.urlencode(
                {key: value for key, value in query.items() if value is not None}, doseq=True)
        request = urllib.request.Request(url, method=method)  # noqa: S310 - http(s) only
        if self.authorization is not None:
            request.add_unredirected_header("Authorization", self.authorization)
        if body is not None or method in ("POST", "PATCH"):
            request.data = json.dumps({} if body is None else body).encode()
            request.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(_NoRedirects)
        try:
            with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            raise _refusal(error.code, error.read(), self.authorization) from None
        except (ValueError, http.client.InvalidURL):  # a control character in the URL
            raise CLIError("SCHEDULER_API_URL is not a URL the request can be sent to",
                           EXIT_USAGE) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CLIError(f"cannot reach the server at {self.base}: {reason}",
                           EXIT_FAILED) from None

    def json(self, method: str, path: str, body: Any = None,
             query: Mapping[str, Any] | None = None) -> tuple[Any, bytes]:
        """The answer as JSON (None for an empty one) and as sent."""
        _, raw = self.call(method, path, body, query)
        return (json.loads(raw) if raw else None), raw


def _refusal(status: int, raw: bytes, authorization: str | None) -> CLIError:
    """The error of a non-2xx answer: the API's error_message, or what the status says; never
    the credentials sent, should the server echo them."""
    try:
        message = str(json.loads(raw)["error_message"])
    except (ValueError, KeyError, TypeError):
        message = raw.decode("utf-8", "replace").strip()[:200] or "no details"
    if status == 401:
        message = ("no credentials were sent: " if authorization is None else
                   "the server refused the credentials: ") + _CREDENTIALS_HINT
    elif authorization is not None and _holds_credentials(message, authorization):
        message = "the server's answer is not shown: it repeats the credentials sent"
    return CLIError(f"{clean(message)} (HTTP {status})",
                    EXIT_REFUSED if 400 <= status < 500 else EXIT_FAILED)


def _holds_credentials(text: str, authorization: str) -> bool:
    """Whether ``text`` holds the Basic credentials of ``authorization``, in any form sent."""
    token = authorization.partition(" ")[2]
    pair = base64.b64decode(token).decode("utf-8", "replace")
    password = pair.partition(":")[2]
    folded = text.casefold()
    return any(secret and secret.casefold() in folded for secret in (token, pair, password))


def _credentials(environ: Mapping[str, str], host: str) -> tuple[str, str] | None:
    """(username, password): from the environment, else from netrc, else None."""
    password = environ.get("SCHEDULER_API_PASSWORD")
    if password:
        return environ.get("SCHEDULER_API_USERNAME") or "admin", password
    path = environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # no netrc file: no credentials
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CLIError(f"the netrc file {path} can be read by other users: chmod 600 {path}",
                       EXIT_USAGE)
    try:
        entry = netrc.netrc(path).authenticators(host)
    except netrc.NetrcParseError as error:  # its message can quote a token: a password
        raise CLIError(f"cannot read the netrc file {path} (line {error.lineno})",
                       EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError) as error:
        raise CLIError(f"cannot read the netrc file {path}: {error}", EXIT_USAGE) from None
    if entry is None or not entry[2]:
        return None
    return entry[0] or environ.get("SCHEDULER_API_USERNAME") or "admin", entry[2]


# -- output ----------------------------------------------------------------------------------

def clean(value: object) -> str:
    """A cell's text with control characters escaped: a job name cannot drive the terminal."""
    text = "-" if value is None else str(value)
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned plain-text columns (the last one not padded)."""
    cells = [list(headers), *([clean(cell) for cell in row] for row in rows)]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                               ).rstrip() for row in cells)


def moment(value: object) -> str:
    """An ISO date-time without its fraction of a second."""
    if not isinstance(value, str):
        return "-"
    head, dot, tail = value.partition(".")
    if not dot:
        return value
    offset = next((index for index, char in enumerate(tail) if char in "+-Z"), len(tail))
    return head + tail[offset:]


_NOT_SCHEDULE = {"id", "name", "func", "args", "kwargs", "trigger", "misfire_grace_time",
                 "max_instances", "next_run_time", "coalesce", "last_run", "error", "jobstore",
                 "executor", "timezone", "jitter", "start_date", "end_date"}


def schedule(job: Mapping[str, Any]) -> str:
    """A trigger in one short line: ``interval seconds=30``, ``cron hour=3 minute=*/5``."""
    trigger = job.get("trigger") or "?"
    if trigger in ("and", "or"):
        return f"{trigger} of {len(job.get('triggers') or [])}"
    fields = [f"{key}={value}" for key, value in job.items()
              if key not in _NOT_SCHEDULE and key != "triggers" and value not in (None, 0, "*")]
    return " ".join([trigger, *fields])


def last_run(job: Mapping[str, Any]) -> str:
    run = job.get("last_run")
    if not run:
        return "-"
    return f"{run['outcome']} {moment(run.get('started_at') or run.get('scheduled_at'))}"


def job_rows(jobs: Sequence[Mapping[str, Any]]) -> str:
    return table(["ID", "FUNC", "SCHEDULE", "NEXT RUN", "LAST RUN"], [
        [job["id"], job.get("func"), "cannot be restored" if job.get("error") else schedule(job),
         moment(job["next_run_time"]) if job.get("next_run_time") else "paused",
         last_run(job)] for job in jobs])


def job_details(job: Mapping[str, Any]) -> str:
    return table(["FIELD", "VALUE"], [
        [key, value if isinstance(value, str) else json.dumps(value)]
        for key, value in job.items()])


def duration(value: object) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.3f}s"


def error_line(error: Mapping[str, Any] | None) -> str:
    """A run's error in one short line: its type and its message's first line."""
    if not error:
        return ""
    lines = (error.get("message") or "").splitlines()
    return f"{error['type']}: {lines[0][:80] if lines else ''}"


def run_rows(page: Mapping[str, Any]) -> str:
    rows = [[moment(run["scheduled_at"]), run["job_id"], run["outcome"], duration(run["duration"]),
             f"{run['host']}:{run['pid']}", error_line(run["error"])] for run in page["runs"]]
    shown = f"{len(page['runs'])} of {page['total']} runs"
    return table(["SCHEDULED", "JOB", "OUTCOME", "DURATION", "HOST", "ERROR"], rows) + "\n" + shown


# -- jobs --------------------------------------------------------------------------------------

def _field(text: str) -> tuple[str, Any]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise CLIError(f"--set takes KEY=VALUE, not {text!r}", EXIT_USAGE)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a plain string: --set minute=*/5


def job_body(args: argparse.Namespace, stdin: Any) -> dict[str, Any]:
    """The job to add: the JSON in FILE (or on stdin, ``-``), with the flags on top."""
    body: Any = {}
    if args.file is not None:
        try:
            if args.file == "-":
                text = stdin.read()
            else:
                with open(args.file, encoding="utf-8") as file:
                    text = file.read()
            body = json.loads(text)
        except OSError as error:
            raise CLIError(f"cannot read {args.file}: {error.strerror}", EXIT_USAGE) from None
        except ValueError as error:
            raise CLIError(f"{args.file} is not JSON: {error}", EXIT_USAGE) from None
        if not isinstance(body, dict):
            raise CLIError(f"{args.file} must hold one JSON object (a job)", EXIT_USAGE)
    for key in ("id", "func", "name", "trigger"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    for key in ("args", "kwargs"):
        if getattr(args, key) is not None:
            try:
                body[key] = json.loads(getattr(args, key))
            except ValueError:
                raise CLIError(f"--{key} must be JSON", EXIT_USAGE) from None
    body.update(_field(text) for text in args.set or ())
    if args.replace:
        body["replace_existing"] = True
    if not body:
        raise CLIError("give the job as JSON (a FILE, or - for stdin) or with --id and --func",
                       EXIT_USAGE)
    job: dict[str, Any] = body
    return job


def run_jobs(args: argparse.Namespace, client: Client, out: Callable[[str], None],
             stdin: Any) -> None:
    action = args.action
    path = f"/jobs/{args.job_id}" if getattr(args, "job_id", None) else "/jobs"
    if action == "list":
        query = {"limit": args.limit, "offset": args.offset}
        data, raw = client.json("GET", "/jobs", query=query if args.limit or args.offset else None)
        jobs = data["jobs"] if isinstance(data, dict) else data
        text = job_rows(jobs) + (f"\n{len(jobs)} of {data['total']} jobs"
                                 if isinstance(data, dict) else "")
    elif action == "show":
        data, raw = client.json("GET", path)
        text = job_details(data)
    elif action == "add":
        data, raw = client.json("POST", "/jobs", job_body(args, stdin))
        text = job_rows([data])
    elif action in ("pause", "resume", "run"):
        data, raw = client.json("POST", f"{path}/{action}")
        text = job_rows([data])
    elif action == "delete":
        _, raw = client.json("DELETE", path)
        text = f"deleted job {clean(args.job_id)}"
    else:  # runs
        query = {"limit": args.limit, "offset": args.offset, "since": args.since,
                 "until": args.until, "outcome": args.outcome}
        data, raw = client.json("GET", f"{path}/runs" if args.job_id else "/runs", query=query)
        text = run_rows(data)
    if args.json:
        if raw:
            out(raw.decode("utf-8"))
    else:
        out(text)


# -- check -------------------------------------------------------------------------------------

def run_check(args: argparse.Namespace, environ: Mapping[str, str],
              out: Callable[[str], None]) -> None:
    from .config_check import ConfigError, check_configuration  # APScheduler: when asked

    try:
        report = check_configuration(args.config, environ)
    except ConfigError as error:
        raise CLIError(str(error), EXIT_INVALID) from None
    if args.json:
        out(json.dumps(report, indent=1))
    else:
        out(table(["SETTING", "VALUE"], [[key, value if isinstance(value, str) else
                                          ", ".join(map(str, value)) or "none"]
                                         for key, value in report.items()]))


# -- the command line --------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scheduler-api", description=__doc__.splitlines()[0],
        epilog="scheduler-api [serve] [options] starts the demo server (scheduler-api serve "
               "--help). The server's URL: $SCHEDULER_API_URL (default " + DEFAULT_URL + "); "
               "credentials: $SCHEDULER_API_USERNAME and $SCHEDULER_API_PASSWORD, or a netrc "
               "file ($NETRC or ~/.netrc), never an option.")
    commands = parser.add_subparsers(dest="command", required=True)
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="the API's JSON, as it answered")
    commands.add_parser("serve", help="start the demo server (the options of scheduler-api "
                        "serve --help)", add_help=False)
    check = commands.add_parser("check", parents=[output],
                                help="check a configuration; say what it would serve")
    check.add_argument("--config", metavar="MODULE",
                       help="a Python module (dotted name, or a .py file) whose SCHEDULER_* "
                            "attributes are the settings (default: the environment, as the "
                            "demo server and examples/gunicorn_app.py read it)")
    jobs = commands.add_parser("jobs", help="list, show, add, change and run jobs")
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[output], help="the jobs, in run order")
    listing.add_argument("--limit", type=int, help="one page of this many (1 to 1000)")
    listing.add_argument("--offset", type=int, help="jobs to skip")
    for name, text in (("show", "one job, every field"), ("pause", "pause a job"),
                       ("resume", "resume a paused job"), ("delete", "remove a job"),
                       ("run", "run a job now (its schedule is unchanged)")):
        actions.add_parser(name, parents=[output], help=text).add_argument("job_id")
    add = actions.add_parser("add", parents=[output], help="add a job: JSON, or flags")
    add.add_argument("file", nargs="?", metavar="FILE",
                     help="the job as JSON (- for stdin); the flags are set on top of it")
    add.add_argument("--id")
    add.add_argument("--func", metavar="MODULE:NAME")
    add.add_argument("--name")
    add.add_argument("--trigger", help="date, interval, cron, calendarinterval, and, or")
    add.add_argument("--args", metavar="JSON", help="a JSON array")
    add.add_argument("--kwargs", metavar="JSON", help="a JSON object")
    add.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="a field (the value as JSON, else a string): --set seconds=30")
    add.add_argument("--replace", action="store_true", help="replace a job with the same id")
    runs = actions.add_parser("runs", parents=[output],
                              help="runs of a job (or of all), newest first")
    runs.add_argument("job_id", nargs="?")
    runs.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    runs.add_argument("--offset", type=int)
    runs.add_argument("--outcome", help="success, error, missed, skipped, lost, running "
                                        "(comma-separated)")
    runs.add_argument("--since", metavar="DATETIME", help="scheduled at or after (ISO 8601)")
    runs.add_argument("--until", metavar="DATETIME", help="scheduled before (ISO 8601)")
    return parser


def _fail(message: str, code: int) -> NoReturn:
    print(f"scheduler-api: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("serve", "jobs", "check"):
        argv = ["serve", *argv]  # the demo server's options, as before the subcommands
    if argv[0] == "serve":
        from .server import main as serve

        serve(argv[1:])
        return
    if any(arg.startswith(("--password", "--pass", "--user")) for arg in argv):
        _fail("credentials are never taken from the command line (every local user can read "
              "it): " + _CREDENTIALS_HINT, EXIT_USAGE)
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            run_check(args, os.environ, print)
        else:
            _run_jobs_or_fail(args)
    except CLIError as error:
        _fail(str(error), error.code)


def _run_jobs_or_fail(args: argparse.Namespace) -> None:
    try:
        run_jobs(args, Client.from_environment(), print, sys.stdin)
    except (ValueError, KeyError, TypeError, AttributeError):  # a 2xx that is not the API's
        _fail("the server's answer is not what the job API answers (is SCHEDULER_API_URL "
              "the API's prefix, such as http://127.0.0.1:5000/scheduler?)", EXIT_FAILED)
