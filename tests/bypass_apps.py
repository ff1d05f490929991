"""Apps for the bypass tests: a werkzeug-routed app and a Flask app with one protected view.

gunicorn imports this module (``tests.bypass_apps:guarded_flask`` and kin).
"""

from __future__ import annotations

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from authmw import AuthMiddleware, HTTPBasicAuth

PROTECTED_MARKER = b"PROTECTED VIEW"
PUBLIC_MARKER = b"public view"

_url_map = Map(
    [
        Rule("/scheduler", endpoint="protected"),
        Rule("/scheduler/", endpoint="protected"),
        Rule("/scheduler/jobs", endpoint="protected"),
        Rule("/scheduler/jobs/<job_id>", endpoint="protected"),
        Rule("/scheduler-admin", endpoint="public"),
        Rule("/schedulerx", endpoint="public"),
        Rule("/public", endpoint="public"),
    ]
)


@Request.application  # type: ignore[arg-type]
def werkzeug_app(request: Request) -> Response:
    try:
        endpoint, _ = _url_map.bind_to_environ(request.environ).match()
    except HTTPException as exc:
        return exc  # type: ignore[return-value]
    return Response(PROTECTED_MARKER if endpoint == "protected" else PUBLIC_MARKER)


flask_app = Flask(__name__)


@flask_app.route("/scheduler")
@flask_app.route("/scheduler/")
@flask_app.route("/scheduler/jobs")
@flask_app.route("/scheduler/jobs/<job_id>")
def protected_view(job_id: str | None = None) -> bytes:
    return PROTECTED_MARKER


@flask_app.route("/scheduler-admin")
@flask_app.route("/schedulerx")
@flask_app.route("/public")
def public_view() -> bytes:
    return PUBLIC_MARKER


def guard(app):  # type: ignore[no-untyped-def]
    middleware = AuthMiddleware(app, auth=HTTPBasicAuth(), prefixes=["/scheduler"])
    middleware.authenticate(lambda auth: auth["username"] == "admin" and auth["password"] == "s")
    return middleware


guarded_werkzeug = guard(werkzeug_app)
guarded_flask = guard(flask_app)
