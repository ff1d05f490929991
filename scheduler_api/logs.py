"""Log records with time, level and logger name, as text or JSON lines, under gunicorn or not.

:func:`logging_config` is a :func:`logging.config.dictConfig` dict that routes the project's
loggers (``scheduler_api``, ``apscheduler``, ``authmw``, ``authmw.audit``) and gunicorn's to
stderr (gunicorn's access log to stdout). ``examples/gunicorn.conf.py`` hands it to gunicorn
as ``logconfig_dict``; the demo server (``scheduler-api``) applies it itself::

    import logging.config
    logging.config.dictConfig(logging_config("json", "INFO"))
    logging.getLogger("scheduler_api").info("hello")
    # {"time": "2026-12-01T12:00:00.123Z", "level": "INFO", "logger": "scheduler_api", ...}

Only the standard library: :class:`JSONFormatter` writes one JSON object per line, so a
message with a newline (or a forged log line in a username) stays inside its record.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

#: The project's loggers; ``authmw.audit`` has one INFO record per refused request.
PROJECT_LOGGERS = ("scheduler_api", "apscheduler", "authmw", "authmw.audit")
#: The text format: time (ISO 8601 with offset), level, logger name, process, message.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
TEXT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class JSONFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ms), ``level``, ``logger``, ``process``,
    ``message``, and ``exception`` / ``stack`` when the record has them::

        handler.setFormatter(JSONFormatter())
    """

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, timezone.utc)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def _formatter(fmt: str) -> dict[str, Any]:
    if fmt == "json":
        return {"()": f"{__name__}.JSONFormatter"}
    return {"format": TEXT_FORMAT, "datefmt": TEXT_DATE_FORMAT}


def logging_config(fmt: str = "text", level: str = "INFO") -> dict[str, Any]:
    """The dictConfig of the project's and gunicorn's loggers, in ``fmt`` ("text" or "json").

    The project's loggers, and the jobs' own (through the root logger), log at ``level``
    and up to stderr; gunicorn's error log keeps its ``--log-level``. ValueError naming
    ``LOG_FORMAT`` or ``LOG_LEVEL`` for an unknown value.
    """
    fmt, level = fmt.strip().lower(), level.strip().upper()
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r:.40}")
    if level not in LEVELS:
        raise ValueError(f"LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r:.40}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": _formatter(fmt)},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default",
                       "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "default",
                       "stream": "ext://sys.stdout"},
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            **{name: {"level": level, "propagate": True} for name in PROJECT_LOGGERS},
            # No level: gunicorn sets it from --log-level before it applies this dict.
            "gunicorn.error": {"handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"handlers": ["access"], "propagate": False},
        },
    }


def logging_config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """:func:`logging_config` with ``LOG_FORMAT`` (default text) and ``LOG_LEVEL`` (default
    INFO) from the environment::

        logconfig_dict = logging_config_from_env()      # in a gunicorn config file
    """
    environ = os.environ if environ is None else environ
    return logging_config(environ.get("LOG_FORMAT") or "text",
                          environ.get("LOG_LEVEL") or "INFO")
