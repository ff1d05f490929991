"""The dashboard at ``{prefix}/ui``: server-rendered HTML over the scheduler, its jobs and runs.

Pages read the scheduler in process; every change (pause, run, add, delete...) is sent by
the page's script to the JSON API with ``fetch()``, so the API's validation and cross-site
protection apply to it unchanged. It is its own WSGI app, mounted beside the API under the
same prefix, so :class:`authmw.AuthMiddleware` guards it like the API::

    ui = SchedulerUI(scheduler)                   # scheduler: an APScheduler
    DispatcherMiddleware(app, {"/scheduler": api, "/scheduler/ui": ui})

Every value written into a page goes through :func:`html.escape`; the pages load one
stylesheet and one script, both shipped in the package, under a strict
``Content-Security-Policy`` (no inline script or style). A user whose authmw rules refuse a
method is shown no control that would use it (:func:`allowed_actions`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from html import escape
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import Forbidden, HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request

from authmw import AuthMiddleware

from .codec import json_default
from .jobs import ALL_TRIGGER_FIELDS, JSON, TRIGGER_FIELDS, job_to_json
from .listing import JobListing, broken_job_json, with_last_run
from .protocol import JobScheduler
from .web import store_problem

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class DashboardScheduler(JobScheduler, Protocol):
    """What the dashboard reads besides the API's :class:`JobScheduler`: where the API is,
    the middleware guarding it (None: not mounted yet), and the listing's job ids
    (:class:`~scheduler_api.APScheduler` is one)."""

    api_prefix: str
    middleware: AuthMiddleware | None
    listing: JobListing

logger = logging.getLogger("scheduler_api")

#: Where the dashboard is, under the API's prefix.
UI_PATH = "/ui"
#: Jobs on one page of the list.
PAGE_SIZE = 50
#: Runs shown on a job's page (newest first).
RUNS_SHOWN = 50
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
       "frame-ancestors 'none'")
_SECURITY_HEADERS = (("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                     ("Referrer-Policy", "same-origin"))
_ASSETS = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}
_INTERVAL_UNITS = ("weeks", "days", "hours", "minutes", "seconds")
_CALENDAR_UNITS = ("years", "months", "weeks", "days")
_TIME_OF_DAY = ("hour", "minute", "second")
_CRON_FIELDS = ("year", "month", "day", "week", "day_of_week", "hour", "minute", "second")
_DATES = {"start_date": "text", "end_date": "text"}
_ZONE = {"timezone": "text"}
_JITTER = {"jitter": "number"}
#: The trigger types the form edits, each one's fields (the API's names: every field of
#: jobs.TRIGGER_FIELDS, so that saving a job unchanged keeps its whole trigger) and how the
#: script sends a field: "number" as a JSON number (what the API requires there), "json"
#: parsed (the children of and/or), "text" as typed.
FORM_TRIGGERS: dict[str, dict[str, str]] = {
    "interval": {**dict.fromkeys(_INTERVAL_UNITS, "number"), **_DATES, **_ZONE, **_JITTER},
    "cron": {**dict.fromkeys(_CRON_FIELDS, "text"), **_DATES, **_ZONE, **_JITTER},
    "date": {"run_date": "text", **_ZONE},
    "calendarinterval": {**dict.fromkeys((*_CALENDAR_UNITS, *_TIME_OF_DAY), "number"),
                         **_DATES, **_ZONE, **_JITTER},
    "and": {"triggers": "json", **_JITTER},
    "or": {"triggers": "json", **_JITTER},
}
#: Hints under a trigger's fields, by (trigger type, field); ("", field): any type's.
_HINTS: dict[tuple[str, str], str] = {
    ("", "timezone"): "e.g. UTC; empty: the scheduler's",
    ("", "jitter"): "seconds (an integer): each run starts up to this much later, at random; "
                    "empty: none",
    ("", "end_date"): "a date-time; empty: no end",
    ("interval", "start_date"): "the date-time its runs are counted from, e.g. "
                                "2027-01-31T09:00:00+01:00; empty: one interval after the save",
    ("cron", "start_date"): "the date-time before which it does not run, e.g. "
                            "2027-01-31T09:00:00+01:00; empty: now",
    ("calendarinterval", "hour"): "the time of day it runs: hour, minute, second",
    ("calendarinterval", "start_date"): "a date, e.g. 2027-01-31; empty: today",
    ("calendarinterval", "end_date"): "a date; empty: no end",
    ("and", "triggers"): 'a JSON array of triggers as the API takes them; runs when all '
                         'agree, e.g. weekdays among the first 7 of a month, at 9: '
                         '[{"trigger": "cron", "day_of_week": "mon-fri", "hour": "9"}, '
                         '{"trigger": "cron", "day": "1-7", "hour": "9"}]',
    ("or", "triggers"): 'a JSON array of triggers as the API takes them; runs when any '
                        'fires, e.g. [{"trigger": "cron", "hour": "9"}, {"trigger": '
                        '"interval", "hours": 6}]',
}
#: Fields an API message may name inside an and/or trigger's children: shown at them.
_CHILD_FIELDS = " ".join(sorted({*ALL_TRIGGER_FIELDS, *TRIGGER_FIELDS}))


def e(value: object) -> str:
    """``value`` as text safe in HTML content and in quoted attributes (None: empty)."""
    return "" if value is None else escape(str(value), quote=True)


def when(moment: object) -> str:
    """An ISO 8601 time as the pages show it: to the second, ``UTC`` for ``+00:00``.

    >>> when("2026-12-01T14:47:07.698006+00:00")
    '2026-12-01 14:47:07 UTC'
    """
    if not isinstance(moment, str) or len(moment) < 19:
        return "—" if moment is None else str(moment)
    zone = moment[19:].lstrip(".0123456789")
    return f"{moment[:10]} {moment[11:19]} {'UTC' if zone in ('+00:00', 'Z') else zone}".strip()


def trigger_words(job: Mapping[str, Any]) -> str:
    """A job's trigger in words: ``every 1 hours 30 minutes``, ``cron hour=3``, ``once at ..``.

    >>> trigger_words({"trigger": "interval", "minutes": 5})
    'every 5 minutes'
    """
    kind = job.get("trigger")
    if kind == "interval":
        parts = [f"{job[unit]:g} {unit}" for unit in _INTERVAL_UNITS if job.get(unit)]
        return "every " + (" ".join(parts) or "0 seconds")
    if kind == "cron":
        return "cron " + " ".join(f"{name}={job[name]}" for name in _CRON_FIELDS if name in job)
    if kind == "date":
        return f"once at {job.get('run_date')}"
    if kind == "calendarinterval":
        parts = [f"{job[unit]} {unit}" for unit in ("years", "months", "weeks", "days")
                 if job.get(unit)]
        clock = ":".join(f"{job.get(unit, 0):02}" for unit in _TIME_OF_DAY)
        return "every " + " ".join(parts) + f" at {clock}"
    if kind in ("and", "or"):
        words = "; ".join(trigger_words(part) for part in job.get("triggers", ()))
        return f"{'all' if kind == 'and' else 'any'} of ({words})"
    return str(kind)


def user_may(scheduler: DashboardScheduler, environ: WSGIEnvironment, path: str,
             method: str) -> bool:
    """Whether authmw's rules let this request's user send ``method path`` to the API (the
    page shows what the API would answer, and no control the API would refuse): every rule
    that a reading of ``path`` selects must allow it, for the user the middleware
    authenticated on this request (``environ["authmw.user"]``)."""
    middleware = scheduler.middleware
    if middleware is None:
        return True
    selected = middleware.matcher.select(path)
    if selected is None:  # too many readings: the API answers 400
        return False
    user = environ.get("authmw.user", True)
    return all(middleware.allows(middleware.rules[prefix], method, user) for prefix in selected)


def allowed_funcs(scheduler: DashboardScheduler) -> list[str]:
    """The funcs the allow-list names: its exact references, and the functions defined in
    its ``module:*`` modules (importing a module the list allows, as scheduling one would)."""
    policy = scheduler.func_policy
    found = set(policy.exact)
    for module_name in policy.modules:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - a module that fails to import offers nothing
            logger.warning("allowed module %s cannot be imported", module_name)
            continue
        found.update(f"{module_name}:{name}" for name, value in vars(module).items()
                     if inspect.isfunction(value) and value.__module__ == module_name
                     and not name.startswith("_"))
    return sorted(found)


class HTMLResponse:
    """A finished page (or asset) with the dashboard's security headers."""

    def __init__(self, body: str | bytes, status: str = "200 OK",
                 content_type: str = "text/html; charset=utf-8",
                 cache: str = "no-store") -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.status = status
        self.headers = [("Content-Type", content_type), ("Content-Length", str(len(self.body))),
                        ("Cache-Control", cache), *_SECURITY_HEADERS]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        start_response(self.status, self.headers)
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [self.body]


class _Page:
    """One request's view: where the UI and the API are, and what the user may change."""

    def __init__(self, request: Request, scheduler: DashboardScheduler) -> None:
        self.ui = request.script_root
        self.api = self.ui[:-len(UI_PATH)]
        self._environ = request.environ
        self._scheduler = scheduler
        self._answers: dict[tuple[str, str], bool] = {}

    def may(self, path: str, method: str) -> bool:
        """Whether the user may send ``method path`` (an API path) to the API."""
        key = (path, method)
        if key not in self._answers:
            self._answers[key] = user_may(self._scheduler, self._environ, path, method)
        return self._answers[key]

    def refuse_unless(self, path: str, method: str = "GET") -> None:
        """A 403 page unless the API would answer ``method path`` for this user."""
        if not self.may(path, method):
            raise Forbidden()

    def job_url(self, job_id: str, suffix: str = "") -> str:
        return f"{self.ui}/jobs/{quote(job_id, safe='')}{suffix}"

    def api_job(self, job_id: str, suffix: str = "") -> str:
        return f"{self.api}/jobs/{quote(job_id, safe='')}{suffix}"

    def button(self, label: str, url: str, method: str = "POST",
               confirm: str | None = None, after: str | None = None) -> str:
        """A control that sends ``method url`` to the API; none when the user may not."""
        if not self.may(url, method):
            return ""
        extra = f' data-confirm="{e(confirm)}"' if confirm else ""
        extra += f' data-after="{e(after)}"' if after else ""
        return (f'<button type="button" class="action" data-url="{e(url)}" '
                f'data-method="{method}"{extra}>{e(label)}</button>')

    def layout(self, title: str, body: str, watch: str = "") -> str:
        nav = [f'<a href="{e(self.ui)}/">Scheduler</a>', f'<a href="{e(self.ui)}/jobs">Jobs</a>']
        if self.may(f"{self.api}/jobs", "POST"):
            nav.append(f'<a href="{e(self.ui)}/new">Add a job</a>')
        live = f' data-watch="{e(watch)}"' if watch else ""
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{e(title)} · scheduler</title>'
            f'<link rel="stylesheet" href="{e(self.ui)}/static/ui.css">'
            f'<script src="{e(self.ui)}/static/ui.js" defer></script></head>'
            f'<body data-api="{e(self.api)}" data-ui="{e(self.ui)}">'
            f'<header><nav aria-label="main">{" ".join(nav)}</nav></header>'
            f'<main><h1>{e(title)}</h1>'
            '<p id="flash" role="status" aria-live="polite"></p>'
            f'<div id="live"{live}>{body}</div></main></body></html>')


def _shown(value: object) -> object:
    """A field's value as a page shows it: lists and objects as JSON (what a broken job's
    state holds too: dates, bytes, sets, as the API shows them)."""
    return json.dumps(value, default=json_default) if isinstance(value, (list, dict)) else value


def _job_link(page: _Page, job_id: str) -> str:
    """A link to a job's page; its id as text when no URL can name it (the API refuses such
    ids: '/', '.' and '..' come from Python or SCHEDULER_JOBS, and a server reads %2F as /)."""
    if "/" in job_id or job_id in (".", ".."):
        return f'{e(job_id)} <small class="muted">(no page: the id cannot be a URL)</small>'
    return f'<a href="{e(page.job_url(job_id))}">{e(job_id)}</a>'


def _outcome(last_run: Mapping[str, Any] | None) -> str:
    if not last_run:
        return '<span class="muted">never ran</span>'
    outcome = str(last_run.get("outcome", ""))
    return f'<span class="outcome {e(outcome)}">{e(outcome)}</span>'


class SchedulerUI:
    """The dashboard's WSGI app (paths relative to ``{prefix}/ui``)."""

    def __init__(self, scheduler: DashboardScheduler) -> None:
        self.scheduler = scheduler
        self.url_map = Map([
            Rule("/", endpoint="scheduler", methods=["GET"]),
            Rule("/jobs", endpoint="jobs", methods=["GET"]),
            Rule("/new", endpoint="new_job", methods=["GET"]),
            Rule("/jobs/<job_id>", endpoint="job", methods=["GET"]),
            Rule("/jobs/<job_id>/edit", endpoint="edit_job", methods=["GET"]),
            Rule("/static/<name>", endpoint="asset", methods=["GET"]),
        ], strict_slashes=False, merge_slashes=False)
        self._assets = {name: (resources.files(__package__) / "static" / name).read_bytes()
                        for name in _ASSETS}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        request = Request(environ, populate_request=False)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> HTMLResponse:
        try:
            endpoint, values = self.url_map.bind_to_environ(request.environ).match()
            if endpoint == "asset":
                return self.asset(values["name"])
            page = _Page(request, self.scheduler)
            handler: Callable[..., HTMLResponse] = getattr(self, f"on_{endpoint}")
            return handler(request, page, **values)
        except NotFound:
            return HTMLResponse("<!doctype html><title>Not found</title><p>Not found.",
                                "404 Not Found")
        except HTTPException as exc:
            return HTMLResponse(f"<!doctype html><title>{e(exc.name)}</title>",
                                f"{exc.code} {exc.name}")
        except (OperationalError, InterfaceError) as exc:
            logger.exception("the job store is unavailable")
            return HTMLResponse(f"<!doctype html><title>Unavailable</title><p>"
                                f"{e(store_problem(exc))}", "503 Service Unavailable")
        except Exception:
            logger.exception("unexpected error in the UI at %s", request.path)
            return HTMLResponse("<!doctype html><title>Error</title><p>Internal error.",
                                "500 Internal Server Error")

    def asset(self, name: str) -> HTMLResponse:
        if name not in _ASSETS:
            raise NotFound()
        return HTMLResponse(self._assets[name], content_type=_ASSETS[name],
                            cache="max-age=300")

    # -- pages -----------------------------------------------------------------------------

    def on_scheduler(self, request: Request, page: _Page) -> HTMLResponse:
        page.refuse_unless(f"{page.api}/")
        scheduler = self.scheduler
        leader = scheduler.leader() or {}
        rows = [("State", f'<span class="state">{e(scheduler.state_name)}</span>'),
                ("Leader", e(f"{leader['host']} pid {leader['pid']}") if leader else "none"),
                ("Leader since", e(leader.get("since", "—"))),
                ("This process", e(f"{scheduler.host_name} pid {os.getpid()}"))]
        controls = "".join(page.button(label, f"{page.api}/{action}", confirm=confirm)
                           for label, action, confirm in (
                               ("Pause", "pause", None), ("Resume", "resume", None),
                               ("Start", "start", None),
                               ("Shut down", "shutdown", "Shut the scheduler down?")))
        body = _table(rows) + (f'<div class="controls">{controls}</div>' if controls else "")
        return HTMLResponse(page.layout("Scheduler", body, watch="scheduler"))

    def on_jobs(self, request: Request, page: _Page) -> HTMLResponse:
        page.refuse_unless(f"{page.api}/jobs")
        query = request.args.get("q", "").strip()[:200]
        number = request.args.get("page", "1")
        number_int = (int(number) if number.isascii() and number.isdigit() and len(number) <= 7
                      else 1)
        number_int = max(1, min(number_int, 10**6))
        offset = (number_int - 1) * PAGE_SIZE
        listed, total = self.scheduler.listing.page(PAGE_SIZE, offset, query)
        jobs = json.loads(listed)
        rows = "".join(
            f'<tr><td>{_job_link(page, job["id"])}</td>'
            f'<td>{e(job.get("name"))}</td>'
            f'<td>{e(when(job.get("next_run_time")))}</td>'
            f'<td>{e(trigger_words(job)) if "error" not in job else e(job["error"])}</td>'
            f'<td>{_outcome(job.get("last_run"))}</td>'
            f'<td>{"yes" if job.get("next_run_time") is None else "no"}</td></tr>'
            for job in jobs)
        search = (f'<form class="search" method="get" action="{e(page.ui)}/jobs" role="search">'
                  '<label for="q">Search by id or name</label>'
                  f'<input id="q" name="q" type="search" value="{e(query)}">'
                  '<button type="submit">Search</button></form>')
        last = max(1, -(-total // PAGE_SIZE))
        links = []
        for label, target in (("Previous", number_int - 1), ("Next", number_int + 1)):
            if 1 <= target <= last:
                params = urlencode({"page": target, **({"q": query} if query else {})})
                links.append(f'<a rel="{label[:4].lower()}" href="{e(page.ui)}/jobs?'
                             f'{e(params)}">{label}</a>')
        body = (f'{search}<p class="count">{total} job{"s" * (total != 1)}; page {number_int} '
                f'of {last}</p><div class="scroll"><table class="jobs"><thead><tr><th>Id</th>'
                '<th>Name</th><th>Next run</th><th>Trigger</th><th>Last outcome</th>'
                f'<th>Paused</th></tr></thead><tbody>{rows}</tbody></table></div>'
                f'<nav class="pages" aria-label="pages">{" ".join(links)}</nav>')
        return HTMLResponse(page.layout("Jobs", body, watch="jobs"))

    def _job_json(self, job_id: str) -> JSON | None:
        """A job's JSON with its ``last_run``; one that cannot be restored with its error."""
        try:
            job = self.scheduler.get_job(job_id)
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:  # noqa: BLE001 - shown with its error, as the API does
            data = broken_job_json(job_id, self.scheduler.stored_job_state(job_id), exc)
        else:
            if job is None:
                return None
            data = job_to_json(job)
        return with_last_run(data, self.scheduler.last_runs([job_id]).get(job_id))

    def on_job(self, request: Request, page: _Page, job_id: str) -> HTMLResponse:
        page.refuse_unless(page.api_job(job_id))
        job = self._job_json(job_id)
        if job is None:
            raise NotFound()
        paused = job.get("next_run_time") is None
        fields: list[tuple[str, str]] = [
            (name, e(_shown(job[name])))
                  for name in ("name", "func", "args", "kwargs", "next_run_time",
                               "misfire_grace_time", "max_instances", "coalesce", "error")
                  if name in job]
        fields.insert(1, ("trigger", e(trigger_words(job))))
        if "next_run_time" in job:
            fields[fields.index(("next_run_time", e(job["next_run_time"])))] = (
                "next_run_time", e(when(job["next_run_time"])))
        fields.append(("paused", "yes" if paused else "no"))
        controls = [
            page.button("Resume" if paused else "Pause",
                        page.api_job(job_id, "/resume" if paused else "/pause")),
            page.button("Run now", page.api_job(job_id, "/run")),
            page.button("Delete", page.api_job(job_id), "DELETE",
                        confirm=f"Delete job {job_id}?", after=f"{page.ui}/jobs"),
        ]
        if page.may(page.api_job(job_id), "PATCH"):
            controls.insert(2, f'<a class="button" href="{e(page.job_url(job_id, "/edit"))}">'
                               'Edit</a>')
        body = _table(fields) + f'<div class="controls">{"".join(controls)}</div>'
        if page.may(page.api_job(job_id, "/runs"), "GET"):
            runs = self.scheduler.get_runs(job_id, limit=RUNS_SHOWN)
            run_rows = "".join(_run_row(run.to_json()) for run in runs.runs)
            body += (f'<h2>Runs <span class="muted">({runs.total})</span></h2>'
                     '<div class="scroll"><table class="runs"><thead><tr><th>Scheduled</th>'
                     '<th>Reason</th><th>Outcome</th><th>Duration</th><th>Where</th>'
                     f'<th>Error</th></tr></thead><tbody>{run_rows}</tbody></table></div>')
        return HTMLResponse(page.layout(f"Job {job_id}", body, watch=f"job:{job_id}"))

    def on_new_job(self, request: Request, page: _Page) -> HTMLResponse:
        if not page.may(f"{page.api}/jobs", "POST"):
            return HTMLResponse(page.layout("Add a job", "<p>You may not add jobs.</p>"),
                                "403 Forbidden")
        return HTMLResponse(page.layout("Add a job", self._form(page, None)))

    def on_edit_job(self, request: Request, page: _Page, job_id: str) -> HTMLResponse:
        page.refuse_unless(page.api_job(job_id))
        job = self._job_json(job_id)
        if job is None:
            raise NotFound()
        if not page.may(page.api_job(job_id), "PATCH"):
            return HTMLResponse(page.layout("Edit", "<p>You may not change jobs.</p>"),
                                "403 Forbidden")
        if "error" in job:  # its module is gone: the API can only read and delete it
            return HTMLResponse(page.layout(f"Edit job {job_id}", f"<p>Job {e(job_id)} "
                                            f"{e(job['error'])}: it can only be read and "
                                            "deleted.</p>"), "409 Conflict")
        return HTMLResponse(page.layout(f"Edit job {job_id}", self._form(page, job)))

    def _form(self, page: _Page, job: JSON | None) -> str:
        """The add (``job`` None) or edit form; the script sends it to the API as JSON."""
        job = job or {}
        editing = bool(job)
        kind = job.get("trigger", "interval")
        funcs = "".join(f'<option value="{e(func)}">' for func in allowed_funcs(self.scheduler))
        options = "".join(f'<option value="{name}"{" selected" * (name == kind)}>{name}</option>'
                          for name in FORM_TRIGGERS)
        if editing:
            keep = " selected" * (kind not in FORM_TRIGGERS)
            options = f'<option value=""{keep}>unchanged ({e(kind)})</option>' + options
        fieldsets = "".join(_trigger_fieldset(name, job if name == kind else {})
                            for name in FORM_TRIGGERS)
        own = "".join((
            _field("id", "id", "Id", job.get("id"),
                   attrs="required readonly " if editing else "required "),
            _field("name", "name", "Name", job.get("name")),
            _field("func", "func", "Func (module:callable)", job.get("func"),
                   "from the allow-list", 'list="funcs" required autocomplete="off" '),
            f'<datalist id="funcs">{funcs}</datalist>',
            _field("args", "args", "Args (JSON array)", job.get("args"), send="json"),
            _field("kwargs", "kwargs", "Kwargs (JSON object)", job.get("kwargs"), send="json"),
            '<div class="field"><label for="f-trigger">Trigger</label>'
            f'<select id="f-trigger" name="trigger" aria-describedby="err-trigger">{options}'
            '</select><span class="field-error" id="err-trigger" data-error-for="trigger">'
            '</span></div>'))
        return (
            f'<form id="job-form" novalidate data-mode="{"edit" if editing else "add"}">'
            f'<div class="job-fields">{own}</div>{fieldsets}'
            '<p class="field-error" id="form-error" role="alert"></p>'
            f'<button type="submit">{"Save" if editing else "Add the job"}</button></form>')


def _field(name: str, key: str, label: str, value: object = None, hint: str = "",
           attrs: str = "", send: str = "text") -> str:
    """A labelled input for the API field ``name``, sent as ``send`` says (FORM_TRIGGERS),
    its element ids made from ``key`` (a trigger's fields are keyed by its type: interval and
    calendarinterval both have weeks), and its slot for the API's message about it. The
    children of and/or are a textarea of JSON; API messages about their fields go there."""
    hint_html = f'<small id="hint-{key}">{e(hint)}</small>' if hint else ""
    common = (f'id="f-{key}" name="{name}" data-send="{send}" '
              f'aria-describedby="err-{key}{f" hint-{key}" if hint else ""}" {attrs}')
    slot = ""
    if name == "triggers":
        shown = "" if value is None else json.dumps(value, indent=2, default=json_default)
        control = f'<textarea {common}rows="8" spellcheck="false">{e(shown)}</textarea>'
        slot = f' data-child-fields="{_CHILD_FIELDS}"'
    else:
        mode = 'inputmode="decimal" ' if send == "number" else ""
        control = f'<input {common}{mode}value="{e(_shown(value))}">'
    return (f'<div class="field"><label for="f-{key}">{e(label)}</label>{control}{hint_html}'
            f'<span class="field-error" id="err-{key}" data-error-for="{name}"{slot}>'
            '</span></div>')


def _trigger_fieldset(kind: str, job: JSON) -> str:
    """The fields of one trigger type, filled from ``job`` (empty: not this job's type), and
    a slot for a message about the trigger as a whole (``calendarinterval: ...``)."""
    fields = "".join(
        _field(name, f"{kind}-{name}", name.replace("_", " "), job.get(name),
               _HINTS.get((kind, name)) or _HINTS.get(("", name), ""), send=send)
        for name, send in FORM_TRIGGERS[kind].items())
    return (f'<fieldset class="trigger" data-trigger="{kind}"><legend>{kind} fields</legend>'
            f'<p class="field-error" id="err-{kind}" data-error-for="{kind}" role="alert"></p>'
            f'{fields}</fieldset>')


def _table(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table of label and (already escaped) value."""
    cells = "".join(f'<tr><th scope="row">{e(label)}</th><td>{value}</td></tr>'
                    for label, value in rows)
    return f'<table class="fields">{cells}</table>'


def _run_row(run: Mapping[str, Any]) -> str:
    error = run.get("error")
    detail = ""
    if error:
        detail = (f'<details id="tb-{e(run["id"])}"><summary>{e(error.get("type"))}: '
                  f'{e(error.get("message"))}</summary><pre>{e(error.get("traceback"))}</pre>'
                  '</details>')
    duration = run.get("duration")
    return (f'<tr data-run="{e(run["id"])}"><td>{e(when(run.get("scheduled_at")))}</td>'
            f'<td>{e(run.get("reason"))}</td><td>{_outcome(run)}</td>'
            f'<td>{"—" if duration is None else e(f"{duration:.3f} s")}</td>'
            f'<td>{e(run.get("host"))} pid {e(run.get("pid"))}</td><td>{detail}</td></tr>')
