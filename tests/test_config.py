"""The SCHEDULER_* settings: unknown or wrongly typed ones are errors that name them, and the
whole authmw configuration can be given to init_app."""

from __future__ import annotations

import pytest

from authmw import AuthMiddleware, HTTPBasicAuth, Rule, compare_secrets
from scheduler_api import APScheduler

from .api_helpers import APIClient, plain_app
from .conftest import basic


def init(tmp_path, **config):
    scheduler = APScheduler()
    app = scheduler.init_app(plain_app, config={
        "SCHEDULER_API_ENABLED": True,
        "SCHEDULER_JOBSTORE_URL": f"sqlite:///{tmp_path / 'jobs.sqlite'}",
        "SCHEDULER_AUTH": HTTPBasicAuth(),
        **config,
    })
    return scheduler, app


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [({"SCHEDULER_JOBSTORE_URLS": "sqlite://"}, ValueError, "unknown setting "
      "SCHEDULER_JOBSTORE_URLS"),
     ({"SCHEDULER_API_ENABLED": "yes"}, TypeError, "SCHEDULER_API_ENABLED must be True or False"),
     ({"SCHEDULER_API_ALLOWED_FUNCS": "tests.tasks:*"}, TypeError,
      "SCHEDULER_API_ALLOWED_FUNCS must be a list of str"),
     ({"SCHEDULER_AUTH": "basic"}, TypeError, "SCHEDULER_AUTH must be an authmw handler"),
     ({"SCHEDULER_THROTTLE": 10}, TypeError, "SCHEDULER_THROTTLE must be an authmw.Throttle"),
     ({"SCHEDULER_JOBSTORES": ["default"]}, TypeError, "SCHEDULER_JOBSTORES must be a mapping"),
     ({"SCHEDULER_JOBS": [("id", "func")]}, TypeError, "SCHEDULER_JOBS must be a list of job"),
     ({"SCHEDULER_MIN_INTERVAL": "1"}, ValueError, "SCHEDULER_MIN_INTERVAL must be a number"),
     ({"SCHEDULER_AUTH_OPTIONS": {"rule": []}}, ValueError,
      "SCHEDULER_AUTH_OPTIONS: unknown option"),
     ({"SCHEDULER_AUTH_MIDDLEWARE": "authmw:AuthMiddleware"}, TypeError,
      "SCHEDULER_AUTH_MIDDLEWARE must be a callable")],
    ids=["misspelt", "bool-as-str", "list-as-str", "handler-as-str", "throttle-as-int",
         "stores-as-list", "jobs-as-tuples", "interval-as-str", "unknown-auth-option",
         "factory-as-str"],
)
def test_a_wrong_setting_is_an_error_naming_it(tmp_path, config, error, message):
    with pytest.raises(error, match=message):
        init(tmp_path, **config)


def test_other_keys_of_a_flask_config_are_left_alone(tmp_path):
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="x", SCHEDULER_API_ENABLED=True,
                      SCHEDULER_JOBSTORE_URL=f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    scheduler = APScheduler()
    scheduler.init_app(app)
    assert scheduler.api_enabled and app.apscheduler is scheduler


def check(auth):
    users = {"reader": ["reader"], "admin": ["reader", "admin"]}
    if auth["username"] in users and compare_secrets(auth["password"], "pw"):
        return {"roles": users[auth["username"]]}
    return False


def test_rules_and_public_paths_reach_the_apis_middleware(tmp_path):
    scheduler, app = init(tmp_path, SCHEDULER_AUTH_OPTIONS={
        "rules": [Rule("/scheduler", roles={"GET": "reader", "*": "admin"})],
        "public": ["/scheduler/openapi.json"],
    })
    scheduler.authenticate(check)
    scheduler.start()
    try:
        client = APIClient(app)
        assert client.get("/openapi.json", auth=False).status_code == 200
        assert client.get("/jobs", auth=False).status_code == 401
        reader = {"Authorization": basic("reader", "pw")}
        assert client.get("/jobs", auth=False, headers=reader).status_code == 200
        assert client.post("/pause", auth=False, headers=reader).status_code == 403
        admin = {"Authorization": basic("admin", "pw")}
        assert client.post("/pause", auth=False, headers=admin).status_code == 204
    finally:
        scheduler.shutdown(wait=False)


def test_a_factory_builds_the_apis_middleware(tmp_path):
    built = {}

    class AuditedMiddleware(AuthMiddleware):
        pass

    def factory(app, **options):
        built.update(options)
        public = [*options.pop("public"), "/scheduler/openapi.json"]  # the health checks too
        return AuditedMiddleware(app, **options, public=public)

    scheduler, app = init(tmp_path, SCHEDULER_AUTH_MIDDLEWARE=factory)
    assert isinstance(app, AuditedMiddleware) and scheduler.middleware is app
    assert built["prefixes"] == ["/scheduler"] and isinstance(built["auth"], HTTPBasicAuth)
    assert app.public == {"/scheduler/health", "/scheduler/ready", "/scheduler/openapi.json"}
    scheduler.authenticate(check)  # registered on the factory's middleware
    assert app.authenticate_callback is check


def test_a_factory_that_builds_something_else_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"must return an authmw\.AuthMiddleware"):
        init(tmp_path, SCHEDULER_AUTH_MIDDLEWARE=lambda app, **options: app)
