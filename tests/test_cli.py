"""``scheduler-api jobs ...`` and ``scheduler-api check`` against a real demo server.

The server is ``python -m scheduler_api serve`` (the ``serve`` subcommand, so that one is
covered too); the client runs in process (its output captured) and, where the point is what
other processes and users could see, as a command of its own.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import requests

from scheduler_api import cli

from .conftest import ROOT, free_port, wait_until_listening

PASSWORD = "cli-Pa55word-never-shown"
FUNC = "scheduler_api.example_tasks:say_hello"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo server, started with ``serve``; yields its API's URL."""
    store = tmp_path_factory.mktemp("cli") / "jobs.sqlite"
    port = free_port()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SCHEDULER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "scheduler_api", "serve", "--port", str(port),
         "--jobstore-url", f"sqlite:///{store}"], cwd=ROOT,
        env={**env, "SCHEDULER_API_PASSWORD": PASSWORD},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until_listening(port, process), "the demo server did not start"
        yield f"http://127.0.0.1:{port}/scheduler"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def env(server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The client's environment: the server's URL and credentials, no netrc."""
    for name in list(os.environ):
        if name.startswith("SCHEDULER_") or name == "NETRC":
            monkeypatch.delenv(name)
    values = {"SCHEDULER_API_URL": server, "SCHEDULER_API_PASSWORD": PASSWORD,
              "NETRC": str(tmp_path / "no-netrc")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``scheduler-api argv`` in process."""
    try:
        cli.main(list(argv))
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    return code, out, err


def api(server: str, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, server + path, auth=("admin", PASSWORD), timeout=10,
                            **kwargs)  # type: ignore[arg-type]


def test_jobs_add_list_show_pause_resume_run_runs_delete(env, server, capsys, tmp_path):
    code, out, _ = run(capsys, "jobs", "add", "--id", "flags", "--func", FUNC,
                       "--trigger", "interval", "--set", "hours=2", "--kwargs", '{"name": "x"}')
    assert code == 0 and out.split("\n")[0].split() == ["ID", "FUNC", "SCHEDULE", "NEXT", "RUN",
                                                        "LAST", "RUN"]
    assert "flags" in out and "interval hours=2" in out
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"id": "from-file", "func": FUNC, "trigger": "cron",
                                    "hour": 3, "minute": "*/5"}))
    assert run(capsys, "jobs", "add", str(job_file))[0] == 0
    sys.stdin = open(job_file)  # "-" reads stdin
    try:
        code, out, _ = run(capsys, "jobs", "add", "-", "--id", "from-stdin", "--json")
    finally:
        sys.stdin.close()
        sys.stdin = sys.__stdin__
    assert code == 0 and json.loads(out) == api(server, "GET", "/jobs/from-stdin").json()

    code, out, _ = run(capsys, "jobs", "list")
    lines = out.strip().split("\n")
    assert code == 0 and lines[0].startswith("ID ")
    assert {line.split()[0] for line in lines[1:]} == {"flags", "from-file", "from-stdin"}
    assert "cron hour=3 minute=*/5" in out
    widths = {line.index("scheduler_api") for line in lines[1:]}  # aligned columns
    assert len(widths) == 1 and lines[0].index("FUNC") in widths
    code, out, _ = run(capsys, "jobs", "list", "--json")
    assert json.loads(out) == api(server, "GET", "/jobs").json()
    code, out, _ = run(capsys, "jobs", "list", "--limit", "1", "--offset", "1")
    assert out.strip().endswith("1 of 3 jobs")

    code, out, _ = run(capsys, "jobs", "show", "flags")
    assert code == 0 and "kwargs" in out and '{"name": "x"}' in out
    assert json.loads(run(capsys, "jobs", "show", "flags", "--json")[1]) == api(
        server, "GET", "/jobs/flags").json()

    code, out, _ = run(capsys, "jobs", "pause", "flags")
    assert code == 0 and "paused" in out
    assert api(server, "GET", "/jobs/flags").json()["next_run_time"] is None
    code, out, _ = run(capsys, "jobs", "resume", "flags", "--json")
    assert json.loads(out)["next_run_time"] is not None

    assert run(capsys, "jobs", "run", "flags")[0] == 0
    deadline = time.monotonic() + 10
    while not api(server, "GET", "/jobs/flags/runs").json()["total"]:
        assert time.monotonic() < deadline, "the run was not recorded"
        time.sleep(0.1)
    code, out, _ = run(capsys, "jobs", "runs", "flags")
    assert code == 0 and out.split("\n")[0].split()[:3] == ["SCHEDULED", "JOB", "OUTCOME"]
    assert " flags " in out and "1 of 1 runs" in out
    assert json.loads(run(capsys, "jobs", "runs", "--json", "--limit", "5")[1]) == api(
        server, "GET", "/runs?limit=5").json()
    code, out, _ = run(capsys, "jobs", "runs", "flags", "--outcome", "error")
    assert code == 0 and "0 of 0 runs" in out

    code, out, _ = run(capsys, "jobs", "delete", "from-file")
    assert (code, out.strip()) == (0, "deleted job from-file")
    assert api(server, "GET", "/jobs/from-file").status_code == 404


def test_api_errors_print_the_error_message_and_exit_3(env, capsys):
    code, out, err = run(capsys, "jobs", "show", "missing")
    assert (code, out) == (3, "")
    assert err.strip() == "scheduler-api: error: Job missing not found (HTTP 404)"
    code, _, err = run(capsys, "jobs", "add", "--id", "bad", "--func", FUNC,
                       "--trigger", "interval", "--set", "minuts=3")
    assert code == 3 and "minuts" in err and "(HTTP 400)" in err
    code, _, err = run(capsys, "jobs", "add", "--id", "evil", "--func", "os:system")
    assert code == 3 and "not allowed" in err and "(HTTP 403)" in err
    code, _, err = run(capsys, "jobs", "add", "--id", "no-func")
    assert code == 3 and "func: is required (HTTP 400)" in err


def test_wrong_or_missing_credentials_exit_3_and_say_where_credentials_come_from(
        env, capsys, monkeypatch):
    monkeypatch.setenv("SCHEDULER_API_PASSWORD", "wrong-password-123")
    code, _, err = run(capsys, "jobs", "list")
    assert code == 3 and "refused the credentials" in err and "HTTP 401" in err
    assert "wrong-password-123" not in err
    monkeypatch.delenv("SCHEDULER_API_PASSWORD")
    code, _, err = run(capsys, "jobs", "list")
    assert code == 3 and "no credentials were sent" in err and "netrc" in err


def test_an_unreachable_server_exits_4(env, capsys, monkeypatch):
    monkeypatch.setenv("SCHEDULER_API_URL", f"http://127.0.0.1:{free_port()}/scheduler")
    code, _, err = run(capsys, "jobs", "list")
    assert code == 4 and "cannot reach the server" in err


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers a 500 with the API's JSON, or a redirect elsewhere."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        _Stub.seen.append(self.headers.get("Authorization"))
        if self.path.startswith(("/echo", "/html")):  # a hostile or wrong server
            body = (f"request headers:\n{self.headers}".encode() if self.path.startswith("/echo")
                    else b"<html>a login page</html>")
            self.send_response(500 if self.path.startswith("/echo") else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://elsewhere.example/steal")
            self.end_headers()
            return
        body = b'{"error_message": "internal error"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub(env, monkeypatch) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_server_errors_exit_4_and_redirects_are_not_followed(stub, capsys, monkeypatch):
    monkeypatch.setenv("SCHEDULER_API_URL", f"http://127.0.0.1:{stub}/api")
    code, _, err = run(capsys, "jobs", "list")
    assert code == 4 and err.strip() == "scheduler-api: error: internal error (HTTP 500)"
    _Stub.seen.clear()
    monkeypatch.setenv("SCHEDULER_API_URL", f"http://127.0.0.1:{stub}/redirect")
    code, _, err = run(capsys, "jobs", "list")
    assert code == 4 and "redirect" in err and "not followed" in err
    assert len(_Stub.seen) == 1  # nothing sent on to elsewhere.example


def test_a_server_echoing_the_credentials_gets_its_answer_withheld(stub, capsys, monkeypatch):
    monkeypatch.setenv("SCHEDULER_API_URL", f"http://127.0.0.1:{stub}/echo")
    code, out, err = run(capsys, "jobs", "list")
    assert code == 4 and "repeats the credentials" in err
    token = _Stub.seen[-1].split()[1]
    assert PASSWORD not in out + err and token not in out + err


@pytest.mark.parametrize("url, code, said", [
    ("http://[::1", 2, "is not a URL"),
    ("http://127.0.0.1:abc/scheduler", 2, "is not a URL"),
    ("http://127.0.0.1:1/sch\r\nX-Injected: 1", 2, "is not a URL"),
], ids=["unclosed bracket", "port that is no number", "CR LF in the path"])
def test_a_malformed_url_is_a_usage_error_not_a_traceback(env, capsys, monkeypatch, url, code,
                                                          said):
    monkeypatch.setenv("SCHEDULER_API_URL", url)
    exit_code, _, err = run(capsys, "jobs", "list")
    assert exit_code == code and said in err and "Traceback" not in err


def test_a_2xx_that_is_not_the_api_exits_4(stub, capsys, monkeypatch):
    monkeypatch.setenv("SCHEDULER_API_URL", f"http://127.0.0.1:{stub}/html")
    code, _, err = run(capsys, "jobs", "list")
    assert code == 4 and "not what the job API answers" in err and "Traceback" not in err


def test_credentials_never_come_from_the_command_line(env, capsys, monkeypatch):
    for argv in (["jobs", "list", "--password", "x"], ["jobs", "--password=x", "list"],
                 ["check", "--pass", "x"], ["jobs", "list", "--user", "admin"]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "never taken from the command line" in err, argv
    monkeypatch.setenv("SCHEDULER_API_URL", f"http://admin:{PASSWORD}@127.0.0.1:1/scheduler")
    code, _, err = run(capsys, "jobs", "list")  # run() checks the password is not shown
    assert code == 2 and "SCHEDULER_API_URL must not hold credentials" in err
    monkeypatch.setenv("SCHEDULER_API_URL", "ftp://127.0.0.1/scheduler")
    assert run(capsys, "jobs", "list")[0] == 2


def test_netrc(env, server, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("SCHEDULER_API_PASSWORD")
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text(f"machine 127.0.0.1\n  login admin\n  password {PASSWORD}\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    code, out, _ = run(capsys, "jobs", "list", "--json")
    assert code == 0 and isinstance(json.loads(out), list)
    netrc_file.chmod(0o644)
    code, _, err = run(capsys, "jobs", "list")
    assert code == 2 and "can be read by other users: chmod 600" in err
    netrc_file.write_text(f"machine 127.0.0.1 login admin password {PASSWORD} bogus\n")
    netrc_file.chmod(0o600)
    code, _, err = run(capsys, "jobs", "list")
    assert code == 2 and "cannot read the netrc file" in err
    netrc_file.write_text(f"machine other.example login admin password {PASSWORD}\n")
    code, _, err = run(capsys, "jobs", "list")
    assert code == 3 and "no credentials were sent" in err


def test_as_a_command_the_password_is_in_no_argv_output_or_error(env, server, tmp_path):
    """Every process's command line is public (ps): only the environment holds it."""
    environment = {**os.environ, **env}
    for argv, expected in ((["jobs", "list"], 0), (["jobs", "list", "--json"], 0),
                           (["jobs", "show", "missing"], 3), (["check"], 0),
                           (["jobs", "runs"], 0)):
        command = [sys.executable, "-m", "scheduler_api", *argv]
        done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == expected, (argv, done.stderr)
        assert PASSWORD not in " ".join(command) + done.stdout + done.stderr
    wrong = {**environment, "SCHEDULER_API_PASSWORD": "Wrong-" + PASSWORD}
    done = subprocess.run([sys.executable, "-m", "scheduler_api", "jobs", "list"], cwd=ROOT,
                          env=wrong, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and PASSWORD not in done.stdout + done.stderr


def test_table_cells_cannot_drive_the_terminal():
    text = cli.table(["ID", "NAME"], [["a\x1b[2Jb", "line\nbreak"]])
    assert "\x1b" not in text and "\n" not in text.split("\n", 1)[1]
    assert "a\\x1b[2Jb" in text and "line\\nbreak" in text


# -- check --------------------------------------------------------------------------------

@pytest.fixture
def check_env(monkeypatch, tmp_path) -> None:
    for name in list(os.environ):
        if name.startswith("SCHEDULER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SCHEDULER_API_PASSWORD", PASSWORD)
    monkeypatch.setenv("SCHEDULER_JOBSTORE_URL", f"sqlite:///{tmp_path / 'never.sqlite'}")


def test_check_says_what_the_environment_would_serve(check_env, capsys, tmp_path):
    code, out, _ = run(capsys, "check")
    assert code == 0
    assert "served at /scheduler" in out and "never.sqlite (table apscheduler_jobs)" in out
    assert "HTTPBasicAuth (Basic realm=\"Scheduler API\"), user 'admin', password set" in out
    assert "scheduler_api.example_tasks:*" in out and "/scheduler/metrics" in out
    assert not (tmp_path / "never.sqlite").exists()  # nothing was started or created
    report = json.loads(run(capsys, "check", "--json")[1])
    assert report["allowed funcs"] == ["scheduler_api.example_tasks:*"]
    assert report["jobs defined"] == []


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SCHEDULER_JOBSTORE_URLS", "sqlite:///x", "unknown environment variable "
                                               "SCHEDULER_JOBSTORE_URLS"),
    ("SCHEDULER_API_MAX_FAILURES", "ten", "SCHEDULER_API_MAX_FAILURES must be a whole number"),
    ("SCHEDULER_API_PASSWORD", "", "SCHEDULER_API_PASSWORD must be set"),
    ("SCHEDULER_API_ALLOWED_FUNCS", "os.system", "allowed func 'os.system' must be"),
    ("SCHEDULER_JOBSTORE_URL", f"::{PASSWORD}::", "SCHEDULER_JOBSTORE_URL is not a database "
                                                  "URL"),
    ("SCHEDULER_JOBSTORE_URL", f"nosuchdb://u:{PASSWORD}@h/d", "nosuchdb"),
])
def test_check_names_the_bad_setting_and_exits_1(check_env, capsys, monkeypatch, name, value,
                                                  message):
    monkeypatch.setenv(name, value)
    code, out, err = run(capsys, "check")
    assert code == 1 and message in err and out == ""


def test_check_hides_the_store_password(check_env, capsys, monkeypatch):
    monkeypatch.setenv("SCHEDULER_JOBSTORE_URL",
                       f"postgresql+psycopg://app:{PASSWORD}@db.internal/app")
    code, out, _ = run(capsys, "check")
    assert code == 0 and "postgresql+psycopg://app:***@db.internal/app" in out


@pytest.mark.parametrize("url", [
    f"postgresql+psycopg://app@db.internal/app?password={PASSWORD}",
    f"postgresql+psycopg://app@db.internal/app?user=app&sslpassword={PASSWORD}",
    f"postgresql+psycopg://app:p@{PASSWORD}@db.internal/app",
], ids=["password in the query", "sslpassword in the query", "unescaped @ in the password"])
def test_check_hides_a_password_wherever_the_url_holds_it(check_env, capsys, monkeypatch, url):
    monkeypatch.setenv("SCHEDULER_JOBSTORE_URL", url)
    _, out, err = run(capsys, "check")
    assert PASSWORD not in out + err


@pytest.mark.parametrize(("environment", "shown"), [
    ({}, "the leader's thread pool"),
    ({"SCHEDULER_EXECUTOR": "celery", "SCHEDULER_CELERY_SIGNING_KEY": f"key-{PASSWORD}-key",
      "SCHEDULER_CELERY_BROKER_URL": f"amqp://app:{PASSWORD}@mq.internal:5672//"},
     "Celery workers through amqp://app:***@mq.internal:5672//, queue scheduler_api; jobs "
     "with executor 'leader' in the leader's threads"),
    ({"SCHEDULER_EXECUTOR": "celery", "SCHEDULER_CELERY_QUEUE": "runs",
      "SCHEDULER_CELERY_ACKS_LATE": "yes", "SCHEDULER_CELERY_SIGNING_KEY": f"{PASSWORD}" * 4,
      "SCHEDULER_CELERY_BROKER_URL": f"redis://:{PASSWORD}@cache.internal:6379/0"},
     "Celery workers through redis://:***@cache.internal:6379/0, queue runs, acknowledged "
     "when they end"),
], ids=["thread-pool", "celery-over-rabbitmq", "celery-over-redis-acks-late"])
def test_check_says_where_runs_go_without_the_brokers_password(check_env, capsys, monkeypatch,
                                                                 environment, shown):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    code, out, err = run(capsys, "check")
    assert code == 0 and shown in out
    assert PASSWORD not in out + err


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SCHEDULER_EXECUTOR", "celery", "set SCHEDULER_CELERY_BROKER_URL"),
    ("SCHEDULER_EXECUTOR", "rq", "SCHEDULER_EXECUTOR must be one of 'celery', 'threadpool'"),
    ("SCHEDULER_CELERY_BROKER_URL", f"amqp://app:{PASSWORD}@mq//",
     "SCHEDULER_CELERY_BROKER_URL is set but SCHEDULER_EXECUTOR is not 'celery'"),
    ("SCHEDULER_CELERY_ACKS_LATE", "maybe", "SCHEDULER_CELERY_ACKS_LATE must be 1, true"),
    ("SCHEDULER_CELERY_BROKER_URL", f"amqp://app:{PASSWORD}@mq//",
     "SCHEDULER_CELERY_SIGNING_KEY must be set, at least 16 characters"),
], ids=["celery-without-a-broker", "an-unknown-executor", "a-broker-without-celery",
        "acks-late-not-a-flag", "celery-without-a-signing-key"])
def test_check_names_a_wrong_executor_setting(check_env, capsys, monkeypatch, name, value,
                                              message):
    if "SIGNING_KEY" in message:
        monkeypatch.setenv("SCHEDULER_EXECUTOR", "celery")
    monkeypatch.setenv(name, value)
    code, out, err = run(capsys, "check")
    assert code == 1 and message in err and PASSWORD not in out + err


def test_check_a_python_config_module(capsys, tmp_path):
    module = tmp_path / "settings.py"
    module.write_text(
        "SCHEDULER_API_ENABLED = True\nSCHEDULER_API_PREFIX = '/jobs-api'\n"
        f"SCHEDULER_JOBSTORE_URL = 'sqlite:///{tmp_path / 'never.sqlite'}'\n"
        "SCHEDULER_API_ALLOWED_FUNCS = ['tests.tasks:*']\n"
        "SCHEDULER_JOBS = [{'id': 'nightly', 'func': 'tests.tasks:record', 'trigger': 'cron',"
        " 'hour': 3}]\n")
    code, out, _ = run(capsys, "check", "--config", str(module))
    assert code == 0 and "served at /jobs-api" in out and "NONE: the API is served without" in out
    assert "nightly (tests.tasks:record, cron)" in out and "/jobs-api/metrics" in out
    module.write_text("SCHEDULER_JOBS = [{'id': 'bad', 'func': 'tests.tasks:record', "
                      "'trigger': 'cron', 'hour': 25}]\n")
    code, _, err = run(capsys, "check", "--config", str(module))
    assert code == 1 and "SCHEDULER_JOBS: job 'bad'" in err
    module.write_text("SCHEDULER_JOBS = [{'id': 'gone', 'func': 'tests.tasks:nope'}]\n")
    code, _, err = run(capsys, "check", "--config", str(module))
    assert code == 1 and "job 'gone': func 'tests.tasks:nope' cannot be imported" in err
    module.write_text("SCHEDULER_API_ENABLED = 'yes'\n")
    code, _, err = run(capsys, "check", "--config", str(module))
    assert code == 1 and "SCHEDULER_API_ENABLED must be True or False" in err
    code, _, err = run(capsys, "check", "--config", "no_such_module_here")
    assert code == 1 and "cannot load it" in err


def test_the_bare_command_still_serves(tmp_path):
    """``scheduler-api --port ...`` (no subcommand) is the demo server, as before; its help
    lists the server's flags and the subcommands."""
    done = subprocess.run([sys.executable, "-m", "scheduler_api", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "--jobstore-url" in done.stdout
    assert "scheduler-api jobs" in done.stdout
    done = subprocess.run([sys.executable, "-m", "scheduler_api", "jobs", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "runs" in done.stdout
