"""authmw's cost per request, in process, against wsgi-basic-auth and Flask-HTTPAuth.

Each WSGI app is called directly with a fresh copy of a prebuilt environ (the bare app is
called the same way, so the copy cancels out of every overhead). Per round, every variant of
a case is timed over many calls; overhead = variant - bare, ratio = ours / peer, per round.

    python benchmarks/bench_middleware.py [--quick]
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from werkzeug.test import create_environ

from authmw import AuthMiddleware, HTTPBasicAuth
from benchmarks.harness import (
    Report,
    fmt,
    median,
    ns_per_call,
    paired_ratios,
    parser,
    rotated,
)

USER, PASSWORD = "admin", "s3cret-password"
VALID = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

#: case -> (PATH_INFO, Authorization header or None, expected status)
CASES: dict[str, tuple[str, str | None, int]] = {
    "unprotected": ("/public/ping", None, 200),
    "valid": ("/scheduler/jobs", VALID, 200),
    "401": ("/scheduler/jobs", None, 401),
}
#: calls per variant and round, full run (--quick divides by 20)
WSGI_ITERATIONS = {"unprotected": 200_000, "valid": 100_000, "401": 100_000}
FLASK_ITERATIONS = {"valid": 20_000, "401": 20_000}

WSGIApp = Callable[..., Iterable[bytes]]


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def bare_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def authenticate(auth: dict[str, str]) -> bool:
    return auth["username"] == USER and auth["password"] == PASSWORD


def with_authmw(app: WSGIApp) -> AuthMiddleware:
    return AuthMiddleware(app, auth=HTTPBasicAuth(), prefixes=["/scheduler"],
                          authenticate=authenticate)


def with_wsgi_basic_auth(app: WSGIApp) -> WSGIApp:
    from wsgi_basic_auth import BasicAuth

    # 1.1.0 has include_paths (read from its source), the exact equivalent of prefixes=.
    peer: WSGIApp = BasicAuth(app, realm="Authentication Required", users={USER: PASSWORD},
                              include_paths=["/scheduler"])
    return peer


def flask_apps() -> dict[str, WSGIApp]:
    """A plain Flask route, the same wrapped by authmw, and one guarded by Flask-HTTPAuth."""
    from flask import Flask
    from flask_httpauth import HTTPBasicAuth as FlaskHTTPBasicAuth

    def build(name: str, guard: Callable[[Any], Any] | None = None) -> Flask:
        app = Flask(name)

        def jobs() -> str:
            return "ok"

        app.add_url_rule("/scheduler/jobs", "jobs", guard(jobs) if guard else jobs)
        return app

    flask_auth = FlaskHTTPBasicAuth()

    @flask_auth.verify_password  # type: ignore[untyped-decorator]
    def verify_password(username: str, password: str) -> str | None:
        return username if username == USER and password == PASSWORD else None

    plain = build("plain")
    return {"bare": plain, "authmw": with_authmw(plain),
            "peer": build("flask_httpauth", flask_auth.login_required)}


def environ_for(case: str) -> dict[str, Any]:
    path, authorization, _ = CASES[case]
    headers = {"Authorization": authorization} if authorization else {}
    return create_environ(path, "http://localhost/", headers=headers)


def caller(app: WSGIApp, environ: dict[str, Any]) -> Callable[[], None]:
    """One request as a server makes it: fresh environ, iterate the body, close it."""
    copy = environ.copy

    def call() -> None:
        body = app(copy(), start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()

    return call


def status_of(app: WSGIApp, environ: dict[str, Any]) -> int:
    seen: list[str] = []
    body = app(environ.copy(), lambda status, headers, exc_info=None: seen.append(status))
    b"".join(body)
    getattr(body, "close", lambda: None)()
    return int(seen[0].split()[0])


def check(apps: dict[str, WSGIApp], case: str) -> None:
    expected = CASES[case][2]
    for name, app in apps.items():
        status = status_of(app, environ_for(case))
        wanted = 200 if name == "bare" else expected
        if status != wanted:
            raise SystemExit(f"{name} answered {status} on case {case!r}, expected {wanted}")


def measure(apps: dict[str, WSGIApp], iterations: dict[str, int], rounds: int
            ) -> dict[str, dict[str, list[float]]]:
    """case -> variant -> ns per call, one figure per round."""
    times: dict[str, dict[str, list[float]]] = {
        case: {name: [] for name in apps} for case in iterations
    }
    for round_index in range(rounds):
        for case, n in iterations.items():
            environ = environ_for(case)
            for name in rotated(list(apps), round_index):
                times[case][name].append(ns_per_call(caller(apps[name], environ), n))
        print(f"  round {round_index + 1}/{rounds} done", file=sys.stderr)
    return times


def summarise(report: Report, title: str, peer: str,
              times: dict[str, dict[str, list[float]]], notes: list[str]) -> dict[str, float]:
    rows, ratios = [], {}
    for case, t in times.items():
        ours = [a - b for a, b in zip(t["authmw"], t["bare"], strict=True)]
        theirs = [p - b for p, b in zip(t["peer"], t["bare"], strict=True)]
        per_round = paired_ratios(ours, theirs)
        total = paired_ratios(t["authmw"], t["peer"])
        ratios[case] = median(per_round)
        rows.append([
            case, fmt(median(t["bare"]) / 1e3, 3), fmt(median(t["authmw"]) / 1e3, 3),
            fmt(median(t["peer"]) / 1e3, 3), fmt(median(ours) / 1e3, 3),
            fmt(median(theirs) / 1e3, 3), fmt(ratios[case], 3), fmt(median(total), 3),
            " ".join(fmt(r, 3) for r in per_round),
        ])
    report.table(title, ["case", "bare (us)", "authmw (us)", f"{peer} (us)",
                         "authmw overhead (us)", f"{peer} overhead (us)",
                         "overhead ratio (median)", "total-time ratio",
                         "overhead ratio per round"], rows, notes)
    return ratios


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    scale = 20 if args.quick else 1
    wsgi_n = {case: n // scale for case, n in WSGI_ITERATIONS.items()}
    flask_n = {case: n // scale for case, n in FLASK_ITERATIONS.items()}
    report = Report("middleware", args, {"rounds": rounds, "wsgi_calls_per_round": wsgi_n,
                                         "flask_calls_per_round": flask_n})

    wsgi: dict[str, WSGIApp] = {"bare": bare_app, "authmw": with_authmw(bare_app),
                                "peer": with_wsgi_basic_auth(bare_app)}
    for case in wsgi_n:
        check(wsgi, case)
    print("bare WSGI app: authmw vs wsgi-basic-auth", file=sys.stderr)
    wsgi_times = measure(wsgi, wsgi_n, rounds)
    report.raw("wsgi_ns_per_call", wsgi_times)
    ratios = summarise(report, "Bare WSGI app: authmw vs wsgi-basic-auth 1.1.0 (median of "
                       f"{rounds} rounds)", "wsgi-basic-auth", wsgi_times, [
        "Overhead = time per request minus the bare app's, in the same round; "
        "ratio = authmw overhead / wsgi-basic-auth overhead, per round, then the median.",
        "wsgi-basic-auth configured with include_paths=['/scheduler'] (1.1.0 has it), so "
        "/public is unprotected for both. Its check is a plain request.path.startswith() "
        "(no //, %2F, case or ;param handling), and it builds a webob.Request on every call.",
        "Cases: unprotected = GET /public/ping; valid = GET /scheduler/jobs with correct Basic "
        "credentials; 401 = GET /scheduler/jobs without credentials.",
    ])
    report.target("authmw overhead / wsgi-basic-auth overhead, unprotected path",
                  ratios["unprotected"], 0.15)
    report.target("authmw overhead / wsgi-basic-auth overhead, valid Basic request",
                  ratios["valid"], 0.5)
    report.target("authmw overhead / wsgi-basic-auth overhead, 401 (no credentials)",
                  ratios["401"], 0.15)

    flask = flask_apps()
    for case in flask_n:
        check(flask, case)
    print("Flask route: authmw vs Flask-HTTPAuth", file=sys.stderr)
    flask_times = measure(flask, flask_n, rounds)
    report.raw("flask_ns_per_call", flask_times)
    summarise(report, f"Flask route: authmw vs Flask-HTTPAuth (median of {rounds} rounds)",
              "Flask-HTTPAuth", flask_times, [
        "bare = the plain Flask route (200); authmw = that same Flask app wrapped by "
        "AuthMiddleware; Flask-HTTPAuth = the route decorated with @auth.login_required.",
        "On 401 authmw answers before Flask runs, so its 'overhead' over the plain route is "
        "negative (it is faster than serving the route); the total-time ratio is the "
        "meaningful figure there. Report only: no target.",
    ])
    report.write()


if __name__ == "__main__":
    main()
