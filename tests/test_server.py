"""The demo server under a real gunicorn, driven as the seed's curl and requests examples do."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from requests.auth import HTTPBasicAuth

from .conftest import ROOT, free_port, gunicorn, wait_until_listening
from .test_cluster import leader_pid


@pytest.fixture
def server_env(tmp_path):
    return {
        "SCHEDULER_API_USERNAME": "admin",
        "SCHEDULER_API_PASSWORD": "secret",
        "SCHEDULER_API_ALLOWED_FUNCS": "tasks:*",
        "SCHEDULER_JOBSTORE_URL": f"sqlite:///{tmp_path / 'jobs.sqlite'}",
    }


def serve(env):
    return gunicorn("gunicorn_app:app", "--chdir", "examples", "--threads", "4", env=env)


def test_seed_python_requests_example_and_restart(server_env):
    with serve(server_env) as (host, port):
        base = f"http://{host}:{port}"
        # Get scheduler info
        response = requests.get(f"{base}/scheduler", auth=HTTPBasicAuth("admin", "secret"),
                                timeout=10)
        assert response.status_code == 200
        assert response.json()["state"] == "running"
        # Add job
        job_data = {"id": "python_job", "func": "tasks:my_task", "trigger": "interval",
                    "seconds": 60}
        response = requests.post(f"{base}/scheduler/jobs", json=job_data,
                                 auth=HTTPBasicAuth("admin", "secret"), timeout=10)
        assert response.status_code == 200
        created = response.json()
        assert created["func"] == "tasks:my_task"
        refused = requests.get(f"{base}/scheduler/jobs", auth=HTTPBasicAuth("admin", "no"),
                               timeout=10)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="Scheduler API"'
        assert requests.post(f"{base}/scheduler/jobs", timeout=10,
                             json={**job_data, "id": "x", "func": "os:system"},
                             auth=HTTPBasicAuth("admin", "secret")).status_code == 403
    with serve(server_env) as (host, port):
        response = requests.get(f"http://{host}:{port}/scheduler/jobs",
                                auth=HTTPBasicAuth("admin", "secret"), timeout=10)
        assert [job["id"] for job in response.json()] == ["python_job"]
        assert response.json()[0]["start_date"] == created["start_date"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_seed_curl_examples(server_env):
    with serve(server_env) as (host, port):
        base = f"http://{host}:{port}"

        def curl(*args: str) -> str:
            return subprocess.run(["curl", "-s", "-w", " %{http_code}", *args], check=True,
                                  capture_output=True, text=True, timeout=30).stdout

        assert curl("-u", "admin:secret", f"{base}/scheduler").endswith(" 200")
        assert curl("-H", "Authorization: Basic YWRtaW46c2VjcmV0",
                    f"{base}/scheduler/jobs") == "[] 200"
        added = curl("-u", "admin:secret", "-X", "POST", f"{base}/scheduler/jobs",
                     "-H", "Content-Type: application/json",
                     "-d", '{"id": "test", "func": "tasks:test_task", "trigger": "interval", '
                           '"seconds": 30}')
        assert added.endswith(" 200") and '"id":"test"' in added
        assert curl(f"{base}/scheduler") == "Access Denied 401"


def test_the_example_gunicorn_config_serves_with_one_leader(server_env):
    with gunicorn("gunicorn_app:app", "-c", "examples/gunicorn.conf.py", "--workers", "3",
                  env=server_env) as (host, port):
        leader_pid(f"http://{host}:{port}")  # elected (a worker may answer before)
        answers = [requests.get(f"http://{host}:{port}/scheduler", timeout=10,
                                auth=HTTPBasicAuth("admin", "secret"),
                                headers={"Connection": "close"}).json() for _ in range(12)]
    assert {answer["state"] for answer in answers} == {"running"}
    assert len({answer["leader"]["pid"] for answer in answers}) == 1


def test_the_demo_server_throttles_password_guessing(server_env):
    with serve(server_env) as (host, port):
        url = f"http://{host}:{port}/scheduler"
        session = requests.Session()  # one connection: one worker keeps the count
        statuses = [session.get(url, auth=HTTPBasicAuth("admin", f"guess-{n}"), timeout=10
                                ).status_code for n in range(11)]
        blocked = session.get(url, auth=HTTPBasicAuth("admin", "secret"), timeout=10)
    assert statuses == [401] * 10 + [429]
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 60


def _chunks(data: bytes, size: int = 65536):
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize(
    ("name_size", "status", "stored"),
    [(10, 200, ["chunked"]), (2 * 1024 * 1024, 413, [])],
    ids=["small-chunked-body-is-read", "chunked-body-over-1-MiB-is-413"],
)
def test_chunked_bodies_under_gunicorn(server_env, name_size, status, stored):
    body = json.dumps({"id": "chunked", "func": "tasks:my_task", "trigger": "interval",
                       "seconds": 60, "name": "x" * name_size}).encode()
    with serve(server_env) as (host, port):
        base = f"http://{host}:{port}/scheduler"
        auth = HTTPBasicAuth("admin", "secret")
        response = requests.post(f"{base}/jobs", data=_chunks(body), auth=auth, timeout=30,
                                 headers={"Content-Type": "application/json"})
        listed = requests.get(f"{base}/jobs", auth=auth, timeout=10).json()
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == status, response.text
    assert [job["id"] for job in listed] == stored


def test_a_body_shorter_than_its_content_length_is_400_and_stores_nothing(server_env):
    body = b'{"id": "short", "func": "tasks:my_task", "trigger": "interval", "seconds": 60}'
    head = ("POST /scheduler/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Authorization: Basic YWRtaW46c2VjcmV0\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) + 20}\r\nConnection: close\r\n\r\n")
    with serve(server_env) as (host, port):
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(head.encode() + body)
            sock.shutdown(socket.SHUT_WR)  # the client stops 20 bytes early
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        listed = requests.get(f"http://{host}:{port}/scheduler/jobs", timeout=10,
                              auth=HTTPBasicAuth("admin", "secret")).json()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split(b" ")[1] == b"400"
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {
        "error_message": "the body ended before its Content-Length"}
    assert listed == []


# -- the demo command's password: environment, file, or (warned) command line --------------

@contextmanager
def demo_command(tmp_path, *args: str, env: dict[str, str] | None = None
                 ) -> Iterator[tuple[str, list[str]]]:
    """``python -m scheduler_api`` on a free port; yields its URL and, once it has
    stopped, its stderr (as the list's one item)."""
    port = free_port()
    clean = {name: value for name, value in os.environ.items()
             if not name.startswith("SCHEDULER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "scheduler_api", "--port", str(port),
         "--jobstore-url", f"sqlite:///{tmp_path / 'demo.sqlite'}", *args],
        cwd=ROOT, env={**clean, **(env or {})}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    try:
        if not wait_until_listening(port, process):
            assert process.poll() is None, process.communicate()[1]
            raise AssertionError("the demo server did not start")
        yield f"http://127.0.0.1:{port}/scheduler", stderr
    finally:
        process.terminate()
        try:
            stderr.append(process.communicate(timeout=10)[1])
        except subprocess.TimeoutExpired:
            process.kill()
            stderr.append(process.communicate()[1])


def answers(url: str, password: str) -> tuple[int, int]:
    """(status with the right password, status with another one)."""
    return (requests.get(url, auth=HTTPBasicAuth("admin", password), timeout=10).status_code,
            requests.get(url, auth=HTTPBasicAuth("admin", "not it"), timeout=10).status_code)


@pytest.mark.parametrize(
    "content",
    ["from file\n", "from file", "from file\r\n", "from file\nsecond line ignored\n"],
    ids=["line-with-newline", "no-newline", "crlf", "only-the-first-line"],
)
def test_the_demo_command_reads_its_password_from_a_file(tmp_path, content):
    secret = tmp_path / "password"
    secret.write_bytes(content.encode())
    with demo_command(tmp_path, "--password-file", str(secret),
                      env={"SCHEDULER_API_PASSWORD": "from the environment"}) as (url, stderr):
        assert answers(url, "from file") == (200, 401)
        assert answers(url, "from the environment")[0] == 401
    assert "from file" not in stderr[0]  # neither printed nor warned about
    assert "--password is visible" not in stderr[0]


def test_the_demo_command_takes_its_password_from_the_environment(tmp_path):
    with demo_command(tmp_path, env={"SCHEDULER_API_PASSWORD": "from env"}) as (url, stderr):
        assert answers(url, "from env") == (200, 401)
    assert "from env" not in stderr[0]
    assert "--password is visible" not in stderr[0]
    assert "Generated password" not in stderr[0]


def test_a_password_on_the_command_line_works_with_a_warning(tmp_path):
    with demo_command(tmp_path, "--password", "in ps") as (url, stderr):
        assert answers(url, "in ps") == (200, 401)
    assert "warning: --password is visible to every local user (ps, /proc); use " \
           "--password-file PATH or SCHEDULER_API_PASSWORD instead" in stderr[0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: None, "cannot read the password file {path}: No such file or directory"),
        (lambda path: path.write_text(""), "the password file {path} is empty"),
        (lambda path: path.write_text("\nsecond line\n"), "the password file {path} is empty"),
        (lambda path: path.mkdir(), "cannot read the password file {path}: Is a directory"),
        (lambda path: path.write_bytes(b"\xff\xfe\n"),
         "the password file {path} is not UTF-8 text"),
    ],
    ids=["missing", "empty", "empty-first-line", "a-directory", "not-utf-8"],
)
def test_a_password_file_that_cannot_be_used_is_a_clear_error_exit(tmp_path, make, message):
    path = tmp_path / "password"
    make(path)
    done = subprocess.run(
        [sys.executable, "-m", "scheduler_api", "--port", str(free_port()),
         "--jobstore-url", f"sqlite:///{tmp_path / 'demo.sqlite'}", "--password-file",
         str(path)], cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={**os.environ, "SCHEDULER_API_PASSWORD": "from the environment"})
    assert done.returncode == 2
    assert f"scheduler-api: error: {message.format(path=path)}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "demo.sqlite").exists()  # it stopped before anything else


def test_password_and_password_file_together_are_refused(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "scheduler_api", "--password", "x", "--password-file",
         str(tmp_path / "password")], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "not allowed with argument" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_demo_server_reads_the_same_environment_as_gunicorns_app(monkeypatch):
    """Settings the environment gives (as ``scheduler-api check`` reports them) are used."""
    from scheduler_api import server

    seen: dict = {}
    monkeypatch.setattr(server, "create_app", lambda config: seen.update(config) or object())
    monkeypatch.setattr("werkzeug.serving.run_simple", lambda *args, **kwargs: None)
    monkeypatch.setenv("SCHEDULER_API_PASSWORD", "from-the-environment")
    monkeypatch.setenv("SCHEDULER_EVENTS_MAX_STREAMS", "1")
    monkeypatch.setenv("SCHEDULER_API_MAX_FAILURES", "0")
    monkeypatch.setenv("SCHEDULER_JOBSTORE_TABLE", "other")
    server.main(["--port", "1"])
    assert (seen["SCHEDULER_EVENTS_MAX_STREAMS"], seen["SCHEDULER_API_MAX_FAILURES"],
            seen["SCHEDULER_JOBSTORE_TABLE"], seen["SCHEDULER_API_PASSWORD"]) == (
        "1", "0", "other", "from-the-environment")
