"""The demo server under a real gunicorn, driven as the seed's curl and requests examples do."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

import pytest
import requests
from requests.auth import HTTPBasicAuth

from .conftest import gunicorn


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
