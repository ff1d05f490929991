"""Logs under a real gunicorn with examples/gunicorn.conf.py: job runs, leader changes and the
audit log appear with time, level and logger name, as text or JSON lines, never a password.

gunicorn starts in a fresh directory, as an operator's would: the default store is then
``scheduler.sqlite`` there, and the start-up log names its absolute path.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from pathlib import Path

import pytest
import requests
from requests.auth import HTTPBasicAuth

from scheduler_api.logs import JSONFormatter, logging_config, logging_config_from_env

from .conftest import ROOT, gunicorn

PASSWORD = "pw-Zq8-never-logged"
WRONG = "wrong-Kx3-never-logged"
CONFIG = str(ROOT / "examples" / "gunicorn.conf.py")
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (?P<level>[A-Z]+) "
                       r"(?P<logger>[\w.]+) \[\d+\] (?P<message>.*)$")


def wait_for(path: Path, text: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = path.read_text(errors="replace")
        if text in output:
            return output
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never logged; the output was:\n{output}")


def records(output: str, log_format: str) -> list[tuple[str, str, str]]:
    """(level, logger, message) of each record line; every line must be one."""
    found = []
    for line in output.splitlines():
        if log_format == "json":
            entry = json.loads(line)  # every line is one JSON object
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
            found.append((entry["level"], entry["logger"], entry["message"]))
        else:
            match = TEXT_LINE.match(line)
            if match:
                found.append((match["level"], match["logger"], match["message"]))
            else:  # a traceback's lines follow their record
                assert found and line.startswith((" ", "Traceback", "  ")), line
    return found


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_job_runs_leader_and_audit_lines_appear_under_gunicorn(tmp_path, log_format):
    workdir = tmp_path / "wd"
    workdir.mkdir()
    output = tmp_path / "gunicorn.log"
    env = {"SCHEDULER_API_PASSWORD": PASSWORD, "SCHEDULER_API_ALLOWED_FUNCS": "tasks:*",
           "LOG_FORMAT": log_format, "SCHEDULER_JOBSTORE_URL": ""}
    with gunicorn("gunicorn_app:app", "-c", CONFIG, "--workers", "2", "--log-level", "info",
                  env=env, output=output, cwd=workdir) as (host, port):
        base = f"http://{host}:{port}/scheduler"
        wait_for(output, "is now the leader")
        denied = requests.get(f"{base}/jobs", auth=HTTPBasicAuth("admin", WRONG), timeout=10)
        assert denied.status_code == 401
        added = requests.post(f"{base}/jobs", json={"id": "now", "func": "tasks:my_task"},
                              auth=HTTPBasicAuth("admin", PASSWORD), timeout=10)
        assert added.status_code == 200, added.text
        wait_for(output, "executed successfully")
        wait_for(output, "credentials refused")
    text = output.read_text()
    found = records(text, log_format)
    loggers = {logger for _, logger, _ in found}
    assert {"scheduler_api", "apscheduler.executors.default", "authmw.audit", "tasks",
            "gunicorn.error"} <= loggers, loggers
    store = workdir / "scheduler.sqlite"
    assert ("INFO", "scheduler_api", f"job store: sqlite:///{store}") in found
    assert store.exists()  # one store: where gunicorn started, whatever its config's directory
    assert any(logger == "scheduler_api" and "is now the leader" in message
               for _, logger, message in found)
    assert any(level == "INFO" and logger == "apscheduler.executors.default"
               and message.startswith('Running job "now') for level, logger, message in found)
    audit = [message for _, logger, message in found if logger == "authmw.audit"]
    assert any("GET '/scheduler/jobs'" in line and "credentials refused" in line
               and "'admin'" in line for line in audit), audit
    for secret in (PASSWORD, WRONG, base64.b64encode(f"admin:{WRONG}".encode()).decode(),
                   base64.b64encode(f"admin:{PASSWORD}".encode()).decode()):
        assert secret not in text


def test_json_lines_hold_one_record_each_even_with_newlines():
    record = logging.LogRecord("authmw.audit", logging.INFO, __file__, 1,
                               "denied %s", ("a\nforged 2026-01-01 INFO line",), None)
    line = JSONFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["logger"]) == ("INFO", "authmw.audit")
    assert entry["message"] == "denied a\nforged 2026-01-01 INFO line"


def test_an_unknown_log_format_or_level_is_an_error_naming_it():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config_from_env({"LOG_FORMAT": "xml"})
    with pytest.raises(ValueError, match="LOG_LEVEL"):
        logging_config_from_env({"LOG_LEVEL": "loud"})
    assert logging_config("JSON", "debug")["loggers"]["authmw.audit"]["level"] == "DEBUG"


def test_an_unknown_log_format_stops_gunicorn_with_its_name(tmp_path):
    output = tmp_path / "gunicorn.log"
    with pytest.raises(RuntimeError, match="LOG_FORMAT"), gunicorn(
            "gunicorn_app:app", "-c", CONFIG, env={"LOG_FORMAT": "xml"}, output=output,
            timeout=15):
        pass
