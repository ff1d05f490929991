"""The OpenAPI 3.1 document of the job API (:mod:`scheduler_api.api`), served at ``/openapi.json``.

Paths are relative to the prefix the API is mounted under; :func:`openapi_document` puts that
prefix in ``servers``. Schemas are JSON Schema 2020-12, as OpenAPI 3.1 allows. Every status an
operation can answer is listed; ``tests/test_openapi.py`` validates real responses against it::

    openapi_document("/scheduler")["servers"]  # [{"url": "/scheduler"}]
"""

from __future__ import annotations

import copy
from typing import Any

from .history import MAX_RESULT, OUTCOMES, REASONS
from .jobs import MAX_SECONDS, TRIGGER_FIELDS

JSON = dict[str, Any]


def _ref(name: str, section: str = "schemas") -> JSON:
    return {"$ref": f"#/components/{section}/{name}"}


def _json(schema: JSON) -> JSON:
    return {"application/json": {"schema": schema}}


def _header(description: str) -> JSON:
    return {"description": description, "required": True, "schema": {"type": "string"}}


def _error(description: str, headers: JSON | None = None) -> JSON:
    """A response whose body is the Error object."""
    response: JSON = {"description": description, "content": _json(_ref("Error"))}
    if headers:
        response["headers"] = headers
    return response


def _object(properties: JSON, *, required: tuple[str, ...] = (), **keywords: Any) -> JSON:
    schema: JSON = {"type": "object", "properties": properties, **keywords}
    if required:
        schema["required"] = list(required)
    return schema


_INTERVAL_UNITS = ("weeks", "days", "hours", "minutes", "seconds")
_CRON_FIELDS = ("year", "month", "day", "week", "day_of_week", "hour", "minute", "second")

_SCHEMAS: JSON = {
    "Error": _object({"error_message": {"type": "string"}}, required=("error_message",),
                     additionalProperties=False,
                     description="Every error the API itself answers (4xx, 500, 503)."),
    "SchedulerInfo": _object({
        "current_host": {"type": "string"},
        "current_pid": {"type": "integer", "description": "the process that answered"},
        "allowed_hosts": {"type": "array", "items": {"type": "string"}},
        "running": {"type": "boolean", "description": "false only when stopped"},
        "state": {"enum": ["running", "paused", "stopped"],
                  "description": "shared by every process on the job store"},
        "leader": {**_object({"host": {"type": "string"}, "pid": {"type": "integer"},
                              "since": {"type": "string", "format": "date-time"}},
                             required=("host", "pid", "since"), additionalProperties=False),
                   "type": ["object", "null"],
                   "description": "the process that runs the jobs; null without a SQL store "
                                  "to elect one on"},
    }, required=("current_host", "current_pid", "allowed_hosts", "running", "state", "leader"),
        additionalProperties=False),
    "JobId": {"type": "string", "minLength": 1, "maxLength": 191,
              "pattern": r"^[^/\x00-\x1f\x7f]+$",
              "description": "1 to 191 characters, no '/' and no control characters"},
    "FuncRef": {"type": "string", "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
                "description": "'module:callable'; only those in SCHEDULER_API_ALLOWED_FUNCS "
                               "(else 403)",
                "examples": ["scheduler_api.example_tasks:say_hello"]},
    "DateTime": {"type": ["string", "null"], "format": "date-time",
                 "description": "ISO 8601 date-time (responses: with UTC offset)"},
    "DateOrDateTime": {"anyOf": [_ref("DateTime"), {"type": "string", "format": "date"}],
                       "description": "a date-time; a calendarinterval trigger answers a date"},
    "Amount": {"type": "number", "minimum": 0,
               "description": "interval: a number; calendarinterval: an integer"},
    "CronValue": {"type": ["string", "integer"],
                  "description": "cron: an expression such as '*/5' or 'mon-fri' (answered as "
                                 "a string); calendarinterval hour/minute/second: an integer"},
    "TriggerType": {"enum": list(TRIGGER_FIELDS), "default": "date",
                    "description": "absent: 'date', which without run_date runs once now"},
    "TriggerFields": _object({
        "trigger": {"type": "string",
                    "description": "the trigger type (see TriggerType) and its flat fields"},
        "run_date": _ref("DateTime"),
        "timezone": {"type": ["string", "null"], "examples": ["Europe/Berlin", "UTC", "+02:00"]},
        "jitter": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_SECONDS},
        "start_date": _ref("DateOrDateTime"),
        "end_date": _ref("DateOrDateTime"),
        **{unit: _ref("Amount") for unit in _INTERVAL_UNITS},
        "years": {"type": "integer", "minimum": 0},
        "months": {"type": "integer", "minimum": 0},
        **{field: _ref("CronValue") for field in _CRON_FIELDS},
        "triggers": {"type": "array", "minItems": 1, "maxItems": 16, "items": _ref("Trigger"),
                     "description": "and/or: the combined triggers, nested at most 3 deep"},
    }, description="Each type takes its own fields: date: run_date, timezone; interval: "
                   "weeks..seconds, start_date, end_date, timezone, jitter; cron: year..second, "
                   "start_date, end_date, timezone, jitter; calendarinterval: years, months, "
                   "weeks, days, hour, minute, second, start_date, end_date, timezone, jitter; "
                   "and/or: triggers, jitter. Another type's field is a 400."),
    "Trigger": {**_ref("TriggerFields"), "unevaluatedProperties": False},
    "JobOptions": _object({
        "name": {"type": "string", "minLength": 1, "description": "default: the id"},
        "args": {"type": "array"},
        "kwargs": {"type": "object"},
        "misfire_grace_time": {"type": ["integer", "null"], "minimum": 1,
                               "maximum": MAX_SECONDS},
        "max_instances": {"type": "integer", "minimum": 1},
        "coalesce": {"type": "boolean"},
        "next_run_time": {**_ref("DateTime"), "description": "null: the job is paused"},
    }),
    "Job": {
        "allOf": [_ref("JobOptions"), _ref("TriggerFields")],
        **_object({"id": {"type": "string"}, "func": {"type": ["string", "null"]},
                   "last_run": _ref("LastRun")},
                  required=("id", "name", "func", "args", "kwargs", "trigger")),
        "description": "The trigger's fields appear flat, by trigger type. misfire_grace_time, "
                       "max_instances, coalesce and next_run_time are absent while the job is "
                       "pending (added while the scheduler is shut down, which /shutdown does "
                       "only without a SQL job store).",
    },
    "BrokenJob": {
        **_object({"id": {"type": "string"}, "last_run": _ref("LastRun"),
                   "error": {"type": "string",
                             "examples": ["cannot be restored: LookupError: Error resolving "
                                          "reference tasks:gone: could not import module "
                                          "(ModuleNotFoundError: No module named 'tasks')"]}},
                  required=("id", "error")),
        "description": "A stored job that cannot be restored (its func's module or name is "
                       "gone): the fields its stored state holds (a Job's, when it can be "
                       "read; else none) and error. It can be read and deleted; PATCH, pause, "
                       "resume and run answer 409.",
    },
    "JobChange": {
        "allOf": [_ref("JobOptions"), _ref("TriggerFields")],
        **_object({"func": _ref("FuncRef"), "trigger": _ref("TriggerType"),
                   "executor": {"type": "string", "description": "a configured executor"},
                   "last_run": {**_ref("LastRun"), "readOnly": True,
                                "description": "ignored: a job's JSON can be sent back"}}),
    },
    "JobInput": {
        "allOf": [_ref("JobChange")],
        **_object({"id": _ref("JobId"), "replace_existing": {"type": "boolean"},
                   "jobstore": {"type": "string", "description": "a configured job store"}},
                  required=("id", "func"), unevaluatedProperties=False),
        "description": "A new job; what a Job answers can be posted back as is.",
    },
    "JobPatch": {
        "allOf": [_ref("JobChange")],
        **_object({"id": {**_ref("JobId"), "description": "may only repeat the job's id"}},
                  unevaluatedProperties=False),
        "description": "Fields to change. Trigger fields without 'trigger' are merged into the "
                       "current trigger; with 'trigger' they replace it. A paused job stays "
                       "paused.",
    },
    "ListedJob": {"anyOf": [_ref("Job"), _ref("BrokenJob")]},
    "Outcome": {"enum": list(OUTCOMES), "description": "running until it ends; skipped: "
                "max_instances were running; missed: later than misfire_grace_time; lost: "
                "the process running it died (marked by the next leader)"},
    "Moment": {"type": ["string", "null"], "format": "date-time",
               "description": "ISO 8601 with offset, in the scheduler's time zone"},
    "LastRun": {
        **_object({"id": {"type": "string"}, "outcome": _ref("Outcome"),
                   "scheduled_at": _ref("Moment"), "started_at": _ref("Moment"),
                   "duration": {"type": ["number", "null"], "minimum": 0},
                   "error_message": {"type": ["string", "null"]}},
                  required=("id", "outcome", "scheduled_at", "started_at", "duration",
                            "error_message"), additionalProperties=False),
        "type": ["object", "null"],
        "description": "The job's last run (the one started last); null if it never ran",
    },
    "Run": _object({
        "id": {"type": "string"}, "job_id": {"type": "string"},
        "reason": {"enum": list(REASONS),
                   "description": "schedule: its trigger fired; run: POST /jobs/{id}/run"},
        "scheduled_at": _ref("Moment"), "started_at": _ref("Moment"),
        "finished_at": {**_ref("Moment"), "description": "null while it runs"},
        "duration": {"type": ["number", "null"], "minimum": 0, "description": "seconds"},
        "outcome": _ref("Outcome"),
        "error": {**_object({"type": {"type": "string"}, "message": {"type": "string"},
                             "traceback": {"type": ["string", "null"]}},
                            required=("type", "message", "traceback"),
                            additionalProperties=False),
                  "type": ["object", "null"]},
        "result": {"type": ["string", "null"], "description": "the return value's repr, cut "
                   f"to {MAX_RESULT} characters"},
        "host": {"type": "string"}, "pid": {"type": "integer"},
    }, required=("id", "job_id", "reason", "scheduled_at", "started_at", "finished_at",
                 "duration", "outcome", "error", "result", "host", "pid"),
        additionalProperties=False),
    "ShutdownOptions": _object({"wait": {"type": "boolean", "default": True}},
                               additionalProperties=False),
}

_RESPONSES: JSON = {
    "NoContent": {"description": "Done."},
    "SchedulerInfo": {"description": "The scheduler's state.",
                      "content": _json(_ref("SchedulerInfo"))},
    "Job": {"description": "The job.", "content": _json(_ref("Job"))},
    "StoredJob": {"description": "The job, or what can be read of one that cannot be restored.",
                  "content": _json({"anyOf": [_ref("Job"), _ref("BrokenJob")]})},
    "Jobs": {"description": "All jobs (while shut down: the pending ones), in the order they "
                            "run next (paused jobs last); with limit or offset, one page of "
                            "them in that order and the total count.",
             "content": _json({"oneOf": [
                 {"type": "array", "items": _ref("ListedJob")},
                 _object({"jobs": {"type": "array", "items": _ref("ListedJob")},
                          "total": {"type": "integer", "minimum": 0},
                          "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                          "offset": {"type": "integer", "minimum": 0}},
                         required=("jobs", "total", "limit", "offset"),
                         additionalProperties=False)]})},
    "Runs": {"description": "Runs, newest first, and how many match in all.",
             "content": _json(_object({
                 "runs": {"type": "array", "items": _ref("Run")},
                 "total": {"type": "integer", "minimum": 0},
                 "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                 "offset": {"type": "integer", "minimum": 0}},
                 required=("runs", "total", "limit", "offset"), additionalProperties=False))},
    "OpenAPI": {"description": "This document.", "content": _json(_object(
        {"openapi": {"type": "string", "pattern": r"^3\.1\.\d+$"}},
        required=("openapi", "info", "paths")))},
    "BadRequest": _error("Invalid body or field: not JSON, not an object, an unknown field or a "
                         "bad value; the message names the field."),
    "Unauthorized": {
        "description": "Missing or invalid credentials (answered by the authentication "
                       "middleware before the API runs, as plain text).",
        "headers": {"WWW-Authenticate": _header("the Basic challenge")},
        "content": {"text/plain": {"schema": {"type": "string", "examples": ["Access Denied"]}}},
    },
    "Forbidden": _error("func is not an allowed 'module:callable' (SCHEDULER_API_ALLOWED_FUNCS), "
                        "a PATCH of a job whose own func is not allowed, or the request came "
                        "from a page on another site (Origin, Sec-Fetch-Site: cross-site)."),
    "NotFound": _error("No job with this id."),
    "MethodNotAllowed": _error("The path exists, not with this method.",
                               {"Allow": _header("the methods the path takes")}),
    "Conflict": _error("Conflicts with the current state: the job id exists, the scheduler is "
                       "(not) running or its host is not allowed, the job already runs "
                       "max_instances times, or the stored job cannot be restored (it can "
                       "only be read and deleted)."),
    "PayloadTooLarge": _error("The body is over 1 MiB."),
    "UnsupportedMediaType": _error("A body or Content-Type that is not application/json (an "
                                   "HTML form or text/plain, as a cross-site page sends)."),
    "InternalError": {
        "description": "Unexpected error: JSON from the API, plain text from the authentication "
                       "middleware when its handler fails.",
        "content": {**_json(_ref("Error")), "text/plain": {"schema": {"type": "string"}}},
    },
    "Health": {"description": "This process is alive.", "content": _json(_object(
        {"status": {"const": "ok"}}, required=("status",), additionalProperties=False))},
    "Ready": {"description": "The job store answers a query and a leader runs the jobs.",
              "content": _json(_object({"status": {"const": "ready"}}, required=("status",),
                                       additionalProperties=False))},
    "NotReady": _error("Not ready; error_message says why: 'not ready: the job store does not "
                       "answer' or 'not ready: no leader: ...'."),
    "Unavailable": _error("The job store is unavailable; try again later."),
    "TooManyRequests": {
        "description": "Too many failed logins from this address or for this username "
                       "(SCHEDULER_THROTTLE); answered by the authentication middleware, as "
                       "plain text.",
        "headers": {"Retry-After": _header("seconds to wait")},
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
}

_STATUS_RESPONSES = {"204": "NoContent", "400": "BadRequest", "401": "Unauthorized",
                     "403": "Forbidden", "404": "NotFound", "405": "MethodNotAllowed",
                     "409": "Conflict", "413": "PayloadTooLarge", "415": "UnsupportedMediaType",
                     "429": "TooManyRequests",
                     "500": "InternalError", "503": "Unavailable"}
#: Statuses any operation can answer: credentials, other methods on its path, the unexpected.
_EVERY_OPERATION = ("401", "405", "429", "500")
#: Statuses of an operation that reads a JSON body.
_BODY_ERRORS = ("400", "413", "415")


def _operation(operation_id: str, summary: str, ok: str, *statuses: str,
               body: JSON | None = None, description: str | None = None) -> JSON:
    """An operation answering ``ok`` ("200 Name" or "204"), ``statuses`` and the usual ones.

    Operations on ``/jobs...`` are tagged "jobs", the others "scheduler" (see ``_tagged``).
    """
    code, _, name = ok.partition(" ")
    responses = {code: _ref(name or _STATUS_RESPONSES[code], "responses")}
    for status in (*statuses, *_EVERY_OPERATION):
        responses[status] = _ref(_STATUS_RESPONSES[status], "responses")
    operation: JSON = {"operationId": operation_id, "summary": summary,
                       "responses": dict(sorted(responses.items()))}
    if description:
        operation["description"] = description
    if body is not None:
        operation["requestBody"] = body
    return operation


def _public_operation(operation_id: str, summary: str, *answers: str,
                      description: str) -> JSON:
    """An operation served without credentials: no 401 or 429, no security requirement."""
    responses = {code: _ref(name, "responses")
                 for code, _, name in (answer.partition(" ") for answer in answers)}
    responses.update({"405": _ref("MethodNotAllowed", "responses"),
                      "500": _ref("InternalError", "responses")})
    return {"operationId": operation_id, "summary": summary, "description": description,
            "security": [], "responses": dict(sorted(responses.items()))}


def _body(schema: str, required: bool = True) -> JSON:
    return {"required": required, "content": _json(_ref(schema))}


_NOT_RUNNING = "409 if the scheduler is stopped."
_RUN_FILTERS = [
    _ref("Limit", "parameters"), _ref("Offset", "parameters"),
    {"name": "outcome", "in": "query", "required": False, "style": "form", "explode": False,
     "description": "only runs with these outcomes (comma-separated, or repeated)",
     "schema": {"type": "array", "items": _ref("Outcome")}},
    {"name": "since", "in": "query", "required": False,
     "description": "only runs scheduled at or after this date-time",
     "schema": {"type": "string", "format": "date-time"}},
    {"name": "until", "in": "query", "required": False,
     "description": "only runs scheduled before this date-time",
     "schema": {"type": "string", "format": "date-time"}},
]
_JOB_PATH = {"parameters": [_ref("JobId", "parameters")]}


def _tagged(paths: JSON) -> JSON:
    """Tag each operation; give the ones that change something their cross-site refusals."""
    for path, item in paths.items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                operation["tags"] = ["jobs" if path.startswith("/jobs") else "scheduler"]
                if method in ("post", "patch", "delete"):
                    for status in ("403", "415"):
                        operation["responses"][status] = _ref(_STATUS_RESPONSES[status],
                                                              "responses")
                    operation["responses"] = dict(sorted(operation["responses"].items()))
    return paths


_DOCUMENT: JSON = {
    "openapi": "3.1.0",
    "info": {
        "title": "scheduler_api job API",
        "version": "1.0.0",
        "description": "Flask-APScheduler's job API over APScheduler 3, behind HTTP Basic "
                       "authentication. Processes sharing a SQL job store share its jobs and "
                       "the scheduler's state; one of them, the leader, runs the jobs. Errors "
                       "are JSON {\"error_message\": ...}, except the 401 (plain text). "
                       "Bodies are JSON sent as application/json, at most 1 MiB.",
    },
    "servers": [],  # set per call: the prefix the API is mounted under
    "security": [{"basicAuth": []}],
    "tags": [{"name": "scheduler"}, {"name": "jobs"}],
    "paths": _tagged({
        "/": {"get": _operation("getSchedulerInfo", "The scheduler's state and leader",
                                "200 SchedulerInfo", "503")},
        "/pause": {"post": _operation("pauseScheduler", "Pause running jobs", "204", "409",
                                      "503", description=_NOT_RUNNING)},
        "/resume": {"post": _operation("resumeScheduler", "Resume running jobs", "204", "409",
                                       "503", description=_NOT_RUNNING)},
        "/start": {"post": _operation("startScheduler", "Run jobs again after /shutdown",
                                      "204", "409", "503", description="409 if it is not "
                                      "stopped or this host is not in SCHEDULER_ALLOWED_HOSTS.")},
        "/shutdown": {"post": _operation(
            "shutdownScheduler", "Stop running jobs (state: stopped)", "204", *_BODY_ERRORS,
            "409", "503", body=_body("ShutdownOptions", required=False),
            description="In every process sharing a SQL job store, whose jobs can still be "
            "listed and changed; without one, this process's scheduler shuts down. The body "
            "is optional. " + _NOT_RUNNING)},
        "/jobs": {
            "get": {**_operation("getJobs", "List the jobs", "200 Jobs", "400", "503"),
                    "parameters": [_ref("Limit", "parameters"), _ref("Offset", "parameters")]},
            "post": _operation("addJob", "Add a job", "200 Job", *_BODY_ERRORS, "403", "409",
                               "503", body=_body("JobInput"),
                               description="Answers 200 (not 201), as Flask-APScheduler. 409 "
                               "if the id exists and replace_existing is not true."),
        },
        "/jobs/{job_id}": {
            **_JOB_PATH,
            "get": _operation("getJob", "One job", "200 StoredJob", "404", "503"),
            "patch": _operation("updateJob", "Change a job", "200 Job", *_BODY_ERRORS, "403",
                                "404", "409", "503", body=_body("JobPatch"),
                                description="403 if the job's own func is not allowed; 409 if "
                                "it cannot be restored."),
            "delete": _operation("deleteJob", "Remove a job", "204", "404", "503"),
        },
        "/jobs/{job_id}/pause": {**_JOB_PATH, "post": _operation(
            "pauseJob", "Pause a job (next_run_time: null)", "200 Job", "404", "409", "503",
            description="409 if the stored job cannot be restored.")},
        "/jobs/{job_id}/resume": {**_JOB_PATH, "post": _operation(
            "resumeJob", "Resume a paused job", "200 Job", "400", "404", "409", "503",
            description="400 if its next fire time cannot be computed within the work "
                        "budget; 409 if the stored job cannot be restored, or has no fire "
                        "time left (it stays paused).")},
        "/jobs/{job_id}/run": {**_JOB_PATH, "post": _operation(
            "runJob", "Run a job now, without changing its schedule", "200 Job", "404", "409",
            "503", description="Another process than the leader asks the leader to run it. "
            + _NOT_RUNNING + " Also 409 if it already runs max_instances times (leader), or "
            "if the stored job cannot be restored.")},
        "/jobs/{job_id}/runs": {**_JOB_PATH, "get": {
            **_operation("getJobRuns", "A job's runs, newest first", "200 Runs", "400", "404",
                         "503", description="Also of a job deleted since, while its runs are "
                         "kept. 404 if there is no such job and no run of it."),
            "parameters": _RUN_FILTERS}},
        "/runs": {"get": {
            **_operation("getRuns", "Every job's runs, newest first", "200 Runs", "400",
                         "503"),
            "parameters": _RUN_FILTERS}},
        "/openapi.json": {"get": _operation("getOpenAPI", "This document", "200 OpenAPI")},
        "/health": {"get": _public_operation(
            "getHealth", "Alive: this process answers", "200 Health",
            description="No credentials, no detail, never asks the job store (for a load "
                        "balancer's liveness check). Public on this exact path only.")},
        "/ready": {"get": _public_operation(
            "getReady", "Ready: the job store answers and a leader exists", "200 Ready",
            "503 NotReady", description="No credentials (for a load balancer's readiness "
                                        "check). Public on this exact path only.")},
    }),
    "components": {
        "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}},
        "parameters": {
            "JobId": {"name": "job_id", "in": "path", "required": True, "schema": _ref("JobId")},
            "Limit": {"name": "limit", "in": "query", "required": False,
                      "description": "Page size (default 100 when offset is given)",
                      "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            "Offset": {"name": "offset", "in": "query", "required": False,
                       "description": "Jobs to skip (default 0 when limit is given)",
                       "schema": {"type": "integer", "minimum": 0}},
        },
        "schemas": _SCHEMAS,
        "responses": _RESPONSES,
    },
}


def openapi_document(server_url: str) -> dict[str, Any]:
    """The document with ``servers`` set to ``server_url``: a fresh copy the caller may change."""
    document = copy.deepcopy(_DOCUMENT)
    document["servers"] = [{"url": server_url}]
    return document
