"""Every example of the seed runs with only its imports changed (examples/seed_*.py)."""

from __future__ import annotations

import logging
import runpy
from pathlib import Path

import pytest
from werkzeug.test import Client

from .conftest import ROOT, basic

EXAMPLES = ROOT / "examples"


@pytest.fixture
def run_example(tmp_path, monkeypatch):
    """Execute an example file in a scratch directory (its SQLite store lands there)."""
    monkeypatch.chdir(tmp_path)
    namespaces: list[dict] = []

    def run(name: str) -> dict:
        namespace = runpy.run_path(str(EXAMPLES / name), run_name="seed_example")
        namespaces.append(namespace)
        return namespace

    yield run
    for namespace in namespaces:
        if namespace["scheduler"].running:
            namespace["scheduler"].shutdown()


def test_basic_authentication_setup(run_example, tmp_path):
    example = run_example("seed_basic_auth.py")
    client = Client(example["app"])
    assert example["scheduler"].running
    assert Path(tmp_path / "scheduler.sqlite").exists()  # persistent by default
    refused = client.get("/scheduler")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="Authentication Required"'
    assert refused.data == b"Access Denied"
    assert client.get("/scheduler", headers={"Authorization": basic("admin", "wrong")}
                      ).status_code == 401
    info = client.get("/scheduler", headers={"Authorization": basic("admin", "secret")})
    assert info.status_code == 200
    assert info.json["running"] is True


def test_custom_authentication_realm(run_example):
    example = run_example("seed_custom_realm.py")
    refused = Client(example["app"]).get("/scheduler/jobs")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="Scheduler API"'


def test_direct_authentication_assignment(run_example):
    example = run_example("seed_direct_assignment.py")
    client = Client(example["app"])
    assert client.get("/scheduler/jobs", headers={"Authorization": basic("admin", "secret")}
                      ).status_code == 200
    for username, password in [("admin", "nope"), ("nobody", "secret")]:
        assert client.get("/scheduler/jobs", headers={
            "Authorization": basic(username, password)}).status_code == 401


def test_advanced_authentication_callback_refuses_the_placeholder_hashes(run_example):
    example = run_example("seed_advanced_callback.py")
    client = Client(example["app"])
    for username, password in [("admin", "hashed_admin_password"), ("admin", ""),
                               ("operator", "x"), ("ghost", "x")]:
        assert client.get("/scheduler", headers={
            "Authorization": basic(username, password)}).status_code == 401
    assert example["authenticate"]({"username": "admin"}) is False  # no password: refused


def test_custom_authentication_class(run_example):
    example = run_example("seed_custom_auth_class.py")
    client = Client(example["app"])
    refused = client.get("/scheduler")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'API-Key realm="Scheduler API"'
    assert client.get("/scheduler", headers={"X-API-Key": "key4"}).status_code == 401
    assert client.get("/scheduler", headers={"X-API-Key": "key2"}).status_code == 200


def test_no_authentication_development_only(run_example, caplog):
    with caplog.at_level(logging.WARNING, logger="authmw"):
        example = run_example("seed_no_auth.py")
    assert Client(example["app"]).get("/scheduler").status_code == 200
    assert "WITHOUT authentication" in caplog.text


def test_the_flask_app_keeps_its_own_routes(run_example):
    example = run_example("seed_basic_auth.py")

    @example["app"].route("/hello")
    def hello():
        return "hello"

    assert Client(example["app"]).get("/hello").data == b"hello"
