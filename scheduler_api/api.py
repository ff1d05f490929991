"""The job API: a werkzeug ``Map`` of ``Rule``s with ``on_<endpoint>`` handlers.

Routes, bodies and status codes are Flask-APScheduler's; every error is JSON
``{"error_message": ...}`` with a 4xx status for bad input (never a 500, never internal
exception text). It is written against :class:`~scheduler_api.protocol.JobScheduler`, which
:class:`~scheduler_api.APScheduler` implements; the HTTP plumbing is in
:mod:`scheduler_api.web`. Mounted by :meth:`scheduler_api.APScheduler.init_app` under its
prefix, behind authentication::

    api = SchedulerAPI(scheduler)       # a WSGI app; paths relative to the prefix
    DispatcherMiddleware(app, {"/scheduler": api})
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from apscheduler.executors.base import MaxInstancesReachedError
from apscheduler.job import Job
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request

from .deadlines import STORE_WAIT_SECONDS, deadline
from .errors import JobKeptChanging
from .events import EventStreams
from .funcs import ForbiddenFunc
from .history import OUTCOMES
from .jobs import (
    JSON,
    InvalidField,
    check_known_fields,
    check_next_run_time,
    job_options_from_json,
    job_to_json,
    next_fire_time,
    parse_datetime,
    parse_job_id,
    schedule_from_json,
    trigger_part,
    trigger_to_json,
)
from .listing import broken_job_json, restore_error, with_last_run
from .openapi import openapi_document
from .protocol import JobScheduler
from .web import (
    NO_CONTENT,
    APIError,
    JSONResponse,
    Response,
    TextResponse,
    check_query,
    error_response,
    json_response,
    query_int,
    read_json_body,
    refuse_cross_site,
    store_problem,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger("scheduler_api")

MAX_PAGE = 1000


class UnrestorableJob(Exception):
    """A stored job that cannot be restored (its func's module is gone, say)."""

    def __init__(self, job_id: str, error: Exception) -> None:
        super().__init__(job_id)
        self.job_id = job_id
        self.error = error


@contextmanager
def _apscheduler_errors(job_id: str, func: object) -> Iterator[None]:
    """APScheduler's refusals of a new or changed job, as the API's errors."""
    try:
        yield
    except ConflictingIdError:
        raise APIError(409, f"Job {job_id} already exists.") from None
    except JobLookupError:
        raise APIError(404, f"Job {job_id} not found") from None
    except (LookupError, ImportError):
        raise InvalidField("func", f"{func!r} cannot be imported") from None
    except InvalidField:  # ours (a trigger validated again on the job as written over)
        raise
    except ValueError as exc:  # APScheduler checks args and kwargs against the signature
        raise InvalidField("args", str(exc)) from None


class SchedulerAPI:
    """The WSGI app of the job API over a :class:`~scheduler_api.protocol.JobScheduler`."""

    def __init__(self, scheduler: JobScheduler,
                 metrics: Callable[[], tuple[bytes, str]] | None = None) -> None:
        self.scheduler = scheduler
        #: The metrics' body and content type (:mod:`scheduler_api.metrics`); None: a 404.
        self.metrics = metrics
        self.url_map = Map(
            [
                Rule("/", endpoint="scheduler_info", methods=["GET"]),
                Rule("/pause", endpoint="pause_scheduler", methods=["POST"]),
                Rule("/resume", endpoint="resume_scheduler", methods=["POST"]),
                Rule("/start", endpoint="start_scheduler", methods=["POST"]),
                Rule("/shutdown", endpoint="shutdown_scheduler", methods=["POST"]),
                Rule("/jobs", endpoint="get_jobs", methods=["GET"]),
                Rule("/jobs", endpoint="add_job", methods=["POST"]),
                Rule("/jobs/<job_id>", endpoint="get_job", methods=["GET"]),
                Rule("/jobs/<job_id>", endpoint="update_job", methods=["PATCH"]),
                Rule("/jobs/<job_id>", endpoint="delete_job", methods=["DELETE"]),
                Rule("/jobs/<job_id>/pause", endpoint="pause_job", methods=["POST"]),
                Rule("/jobs/<job_id>/resume", endpoint="resume_job", methods=["POST"]),
                Rule("/jobs/<job_id>/run", endpoint="run_job", methods=["POST"]),
                Rule("/jobs/<job_id>/runs", endpoint="get_job_runs", methods=["GET"]),
                Rule("/runs", endpoint="get_runs", methods=["GET"]),
                Rule("/events", endpoint="events", methods=["GET"]),
                Rule("/openapi.json", endpoint="openapi", methods=["GET"]),
                Rule("/health", endpoint="health", methods=["GET"]),
                Rule("/ready", endpoint="ready", methods=["GET"]),
                Rule("/metrics", endpoint="metrics", methods=["GET"]),
            ],
            strict_slashes=False,
            merge_slashes=False,
        )
        # Routes depend on the path and method only (no host matching, no redirects), so one
        # adapter serves every request: binding one per request costs an IDNA-encoded host.
        self._adapter = self.url_map.bind("localhost")
        # (path, method) -> endpoint of the routes without a variable part: a few dozen at
        # most, and matching one costs more than parsing a job's body.
        self._static_routes: dict[tuple[str, str], str] = {}
        self.event_streams = EventStreams()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # No environ["werkzeug.request"]: that back-reference made every request a reference
        # cycle, left for the garbage collector to find.
        request = Request(environ, populate_request=False)
        with deadline(STORE_WAIT_SECONDS):  # every wait of this request, from one budget
            response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        values: Mapping[str, Any] = {}
        try:
            route = (request.path, request.method)
            endpoint = self._static_routes.get(route)
            if endpoint is None:
                endpoint, values = self._adapter.match(*route)
                if not values:
                    self._static_routes[route] = endpoint
            refuse_cross_site(request)
            if "\x00" in values.get("job_id", ""):
                # No store holds one (PostgreSQL refuses NUL in text, a DataError); the API
                # never made one: not found, on every store alike, without asking it.
                raise APIError(404, f"Job {values['job_id']} not found")
            handler: Callable[..., Response] = getattr(self, f"on_{endpoint}")
            return handler(request, **values)
        except APIError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except InvalidField as exc:
            return error_response(400, str(exc))
        except ForbiddenFunc as exc:
            return error_response(403, str(exc))
        except UnrestorableJob as exc:
            return error_response(409, f"Job {exc.job_id} {restore_error(exc.error)}: it can "
                                  "only be read and deleted")
        except JobKeptChanging as exc:  # (another process wrote it at each attempt)
            return error_response(409, f"{exc}; this change was not made: try again")
        except JobLookupError:  # removed by someone else between lookup and change
            return error_response(404, f"Job {values.get('job_id')} not found")
        except MethodNotAllowed as exc:
            allow = ", ".join(sorted(exc.valid_methods or ()))
            return error_response(405, f"method {request.method} not allowed here",
                                  [("Allow", allow)])
        except NotFound:
            return error_response(404, f"no route {request.path}")
        except HTTPException as exc:
            return error_response(exc.code or 500, exc.name)
        except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
            logger.exception("the job store is unavailable")
            return error_response(503, store_problem(exc))
        except DataError:  # a value the database refuses; nothing was stored
            logger.info("the job store refused a value in %s %s", request.method, request.path,
                        exc_info=True)
            return error_response(400, "the job store's database refused a value of the "
                                  "request; nothing was changed")
        except Exception:
            logger.exception("unexpected error in %s %s", request.method, request.path)
            return error_response(500, "internal error")

    # -- request helpers -------------------------------------------------------------------

    def _job(self, job_id: str) -> Job:
        try:
            job = self.scheduler.get_job(job_id)
        except SQLAlchemyError:
            raise
        except Exception as exc:  # unpickling it failed: its module or func is gone
            logger.warning("job %s %s", job_id, restore_error(exc))
            raise UnrestorableJob(job_id, exc) from exc
        if job is None:
            raise APIError(404, f"Job {job_id} not found")
        return job

    def _check_current_func(self, job: Job) -> None:
        """Refuse to change a job whose func the API could not have created (403).

        Its args, trigger or anything else changed, ``/run`` would run what the caller chose
        through a callable nobody allowed (an operator's ``subprocess:run`` job, say).
        """
        try:
            self.scheduler.func_policy.check(job.func_ref)
        except ForbiddenFunc:
            raise ForbiddenFunc(
                f"func {job.func_ref!r} of job {job.id} is not allowed "
                "(see SCHEDULER_API_ALLOWED_FUNCS): the job can be read, paused, resumed, run "
                "and deleted through the API, not changed") from None

    def _job_json(self, job: Job, ran: bool = True) -> JSON:
        """A job's JSON with its ``last_run`` (``ran=False``: a job just added, none)."""
        summary = self.scheduler.last_runs([job.id]).get(job.id) if ran else None
        return with_last_run(job_to_json(job), summary)

    def _runs(self, request: Request, job_id: str | None) -> tuple[JSON, int]:
        """A page of runs, as the query string asks, and how many match."""
        check_query(request, {"limit", "offset", "outcome", "since", "until"})
        limit = query_int(request, "limit", 100, 1, MAX_PAGE)
        offset = query_int(request, "offset", 0, 0, None)
        outcomes = [outcome for value in request.args.getlist("outcome")
                    for outcome in value.split(",")]
        unknown = sorted(set(outcomes) - set(OUTCOMES))
        if unknown:
            raise InvalidField("outcome", f"unknown outcome {unknown[0]!r:.60} (known: "
                               f"{', '.join(OUTCOMES)})")
        moments = {name: parse_datetime(request.args[name], name, self.scheduler.timezone)
                   for name in ("since", "until") if name in request.args}
        page = self.scheduler.get_runs(job_id, outcomes, limit=limit, offset=offset, **moments)
        return {"runs": [run.to_json() for run in page.runs], "total": page.total,
                "limit": limit, "offset": offset}, page.total

    def _require_started(self) -> None:
        if not self.scheduler.running:
            raise APIError(409, "the scheduler is not running")

    def _next_run_time(self, value: object) -> datetime | None:
        timezone = self.scheduler.timezone
        return None if value is None else check_next_run_time(
            parse_datetime(value, "next_run_time", timezone), datetime.now(timezone))

    def _check_alias(self, body: JSON, field: str, known: Iterable[str]) -> None:
        if field in body and (not isinstance(body[field], str) or body[field] not in set(known)):
            raise InvalidField(field, f"no {field} named {body[field]!r} is configured")

    # -- scheduler -------------------------------------------------------------------------

    def on_scheduler_info(self, request: Request) -> JSONResponse:
        return json_response({
            "current_host": self.scheduler.host_name,
            "current_pid": os.getpid(),
            "allowed_hosts": self.scheduler.allowed_hosts,
            "running": self.scheduler.running,
            "state": self.scheduler.state_name,
            "leader": self.scheduler.leader(),
        })

    def on_pause_scheduler(self, request: Request) -> JSONResponse:
        self._require_started()
        self.scheduler.pause()
        return NO_CONTENT

    def on_resume_scheduler(self, request: Request) -> JSONResponse:
        self._require_started()
        self.scheduler.resume()
        return NO_CONTENT

    def on_start_scheduler(self, request: Request) -> JSONResponse:
        if self.scheduler.running:
            raise APIError(409, "the scheduler is already running")
        if not self.scheduler.host_allowed:
            raise APIError(409, f"host {self.scheduler.host_name} is not allowed to run the "
                           "scheduler (SCHEDULER_ALLOWED_HOSTS)")
        self.scheduler.start_all()
        return NO_CONTENT

    def on_shutdown_scheduler(self, request: Request) -> JSONResponse:
        body = read_json_body(request, required=False)
        if set(body) - {"wait"} or not isinstance(body.get("wait", True), bool):
            raise InvalidField("wait", "the body may only hold 'wait': true or false")
        self._require_started()
        self.scheduler.stop_all(wait=body.get("wait", True))
        return NO_CONTENT

    def on_get_runs(self, request: Request) -> JSONResponse:
        """Every job's runs, newest first."""
        return json_response(self._runs(request, None)[0])

    def on_get_job_runs(self, request: Request, job_id: str) -> JSONResponse:
        """One job's runs, newest first (also of a job deleted since, while any are kept)."""
        body, total = self._runs(request, job_id)
        # Not found: no such job, and no run of one (a filter matching none of the runs of a
        # deleted job is an empty page, as it is for a job that exists).
        if not total and self.scheduler.stored_job_state(job_id) is None and \
                self.scheduler.get_job(job_id) is None and \
                not self.scheduler.get_runs(job_id, limit=1).total:
            raise APIError(404, f"Job {job_id} not found")
        return json_response(body)

    def on_health(self, request: Request) -> JSONResponse:
        """Alive: this process answers (public, no detail, never asks the store)."""
        return json_response({"status": "ok"})

    def on_ready(self, request: Request) -> JSONResponse:
        """Ready for traffic: the store answers a query and a leader exists (public)."""
        problem = self.scheduler.ready_problem()
        if problem is not None:
            return error_response(503, f"not ready: {problem}")
        return json_response({"status": "ready"})

    def on_metrics(self, request: Request) -> JSONResponse:
        if self.metrics is None:
            raise APIError(404, f"no route {request.path}: metrics are off "
                           "(SCHEDULER_METRICS_ENABLED, pip install 'authmw[metrics]')")
        return TextResponse(*self.metrics())

    def on_events(self, request: Request) -> Response:
        """Live events as Server-Sent Events (:mod:`scheduler_api.events`)."""
        return self.event_streams.open(self.scheduler.history, request,
                                       self.scheduler.event_limits)

    def on_openapi(self, request: Request) -> JSONResponse:
        return json_response(openapi_document(request.script_root or "/"))

    # -- jobs ------------------------------------------------------------------------------

    def on_get_jobs(self, request: Request) -> JSONResponse:
        """All jobs (Flask-APScheduler's list), or with ``limit``: one page and the total."""
        if "limit" not in request.args and "offset" not in request.args:
            body, _ = self.scheduler.list_jobs()
            return JSONResponse(body)
        limit = query_int(request, "limit", 100, 1, MAX_PAGE)
        offset = query_int(request, "offset", 0, 0, None)
        body, total = self.scheduler.list_jobs(limit, offset)
        return JSONResponse(b'{"jobs":' + body + b',"total":%d,"limit":%d,"offset":%d}'
                            % (total, limit, offset))

    def on_add_job(self, request: Request) -> JSONResponse:
        body = read_json_body(request)
        check_known_fields(body)
        job_id = parse_job_id(body.get("id"))
        if "func" not in body:
            raise InvalidField("func", "is required")
        func = self.scheduler.func_policy.check(body["func"])
        options = job_options_from_json(body)
        options.setdefault("name", job_id)
        # The first fire time is APScheduler's to compute, as it stores the job (or, while
        # the scheduler is stopped, as it starts): one computed here could be stale by then.
        trigger, _ = schedule_from_json(trigger_part(body), self.scheduler.timezone,
                                        self.scheduler.min_interval)
        if "next_run_time" in body:
            options["next_run_time"] = self._next_run_time(body["next_run_time"])
        if not isinstance(body.get("replace_existing", False), bool):
            raise InvalidField("replace_existing", "must be true or false")
        self._check_alias(body, "jobstore", self.scheduler.jobstore_names())
        self._check_alias(body, "executor", self.scheduler.executor_names())
        with _apscheduler_errors(job_id, func):
            job = self.scheduler.add_job(
                job_id, func, trigger=trigger,
                jobstore=body.get("jobstore", "default"), executor=body.get("executor", "default"),
                replace_existing=body.get("replace_existing", False), **options,
            )
        return json_response(self._job_json(job, ran=False))

    def on_get_job(self, request: Request, job_id: str) -> JSONResponse:
        try:
            return json_response(self._job_json(self._job(job_id)))
        except UnrestorableJob as exc:  # shown, so that it can be seen and deleted
            data = broken_job_json(job_id, self.scheduler.stored_job_state(job_id), exc.error)
            return json_response(with_last_run(
                data, self.scheduler.last_runs([job_id]).get(job_id)))

    def on_update_job(self, request: Request, job_id: str) -> JSONResponse:
        body = read_json_body(request)
        job = self._job(job_id)
        self._check_current_func(job)
        check_known_fields(body)
        if body.get("id", job_id) != job_id:
            raise InvalidField("id", "a job's id cannot be changed")
        for field in ("jobstore", "replace_existing"):
            if field in body:
                raise InvalidField(field, "cannot be changed by PATCH")
        self._check_alias(body, "executor", self.scheduler.executor_names())
        changes = job_options_from_json(body)
        if "func" in body:
            changes["func"] = self.scheduler.func_policy.check(body["func"])
        if "executor" in body:
            changes["executor"] = body["executor"]
        if "next_run_time" in body:
            changes["next_run_time"] = self._next_run_time(body["next_run_time"])
        trigger_fields = trigger_part(body)
        if not trigger_fields:
            with _apscheduler_errors(job_id, body.get("func")):
                job = self.scheduler.modify_job(job_id, **changes)  # validated, then one write
            return json_response(self._job_json(job))
        # Validated before any write, then decided again on the job the change is written
        # over (another process may have paused it, or changed its trigger, meanwhile).
        scheduled = self._schedule(body, trigger_fields, job)

        def change(current: Job) -> dict[str, Any]:
            trigger, first_fire_time = scheduled if trigger_to_json(current.trigger) == \
                trigger_to_json(job.trigger) else self._schedule(body, trigger_fields, current)
            paused = current.pending or current.next_run_time is None  # paused stays paused
            return {"trigger": trigger, **({} if paused else {"next_run_time": first_fire_time}),
                    **changes}

        with _apscheduler_errors(job_id, body.get("func")):
            job = self.scheduler.change_job(job_id, change)
        return json_response(self._job_json(job))

    def _schedule(self, body: JSON, trigger_fields: JSON, job: Job) -> tuple[Any, Any]:
        """The trigger a PATCH gives ``job``, and its first fire time: new fields of the same
        trigger type are merged into the current ones; a "trigger" key replaces the trigger
        as a whole."""
        spec = trigger_fields if "trigger" in body else {
            **trigger_to_json(job.trigger), **trigger_fields}
        return schedule_from_json(spec, self.scheduler.timezone, self.scheduler.min_interval)

    def on_delete_job(self, request: Request, job_id: str) -> JSONResponse:
        try:
            self.scheduler.remove_job(job_id)
        except JobLookupError:
            raise APIError(404, f"Job {job_id} not found") from None
        return NO_CONTENT

    def on_pause_job(self, request: Request, job_id: str) -> JSONResponse:
        self._job(job_id)
        return json_response(self._job_json(self.scheduler.pause_job(job_id)))

    def on_resume_job(self, request: Request, job_id: str) -> JSONResponse:
        self._job(job_id)

        def resume(current: Job) -> dict[str, Any]:
            # Decided on the job as it is written over: one not paused keeps its schedule
            # (a next run time computed from now could be one the leader has just run, on a
            # host whose clock is ahead); a paused one runs next from now, within the work
            # budget (APScheduler's resume_job computes it however long that takes).
            if getattr(current, "next_run_time", None) is not None:  # (a pending job may
                return {}  # have none yet)
            next_run_time = next_fire_time(current.trigger, self.scheduler.timezone)
            if next_run_time is None:
                raise APIError(409, f"Job {job_id} has no fire time left, so it stays paused")
            return {"next_run_time": next_run_time}

        return json_response(self._job_json(self.scheduler.change_job(job_id, resume)))

    def on_run_job(self, request: Request, job_id: str) -> JSONResponse:
        job = self._job(job_id)
        self._require_started()
        try:
            self.scheduler.run_job(job_id)
        except MaxInstancesReachedError:
            raise APIError(409, f"Job {job_id} is already running its maximum number of "
                           "instances") from None
        return json_response(self._job_json(job))
