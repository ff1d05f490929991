"""Where the time goes: profiles of the hot paths, saved under the results directory.

- authmw's valid-request path (a bare WSGI app behind AuthMiddleware, Basic credentials),
  plus a breakdown of its steps timed one by one;
- scheduler_api's GET of 10,000 jobs and POST of 1,000 jobs (MemoryJobStore, paused), and
  the same on Flask-APScheduler for comparison.

Each case is run under pyinstrument (call tree: ``profile_<case>.txt``) and, separately,
under cProfile (functions by own time: ``profile_<case>_cprofile.txt``).

    python benchmarks/profile_hot_paths.py [--quick]
"""

from __future__ import annotations

import cProfile
import io
import logging
import pstats
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authmw import Authorization, HTTPBasicAuth
from authmw.auth import decode_basic_credentials, get_authorization_header
from authmw.context import current_environ_var
from benchmarks.bench_middleware import (
    PASSWORD,
    USER,
    VALID,
    authenticate,
    bare_app,
    caller,
    environ_for,
    with_authmw,
)
from benchmarks.bench_scheduler_api import Variant, ours, theirs
from benchmarks.harness import Report, fmt, median, ns_per_call, parser

TOP = 15  # functions listed per case in the summary
TREE_LINES = 150  # lines of the pyinstrument tree kept


def run_pyinstrument(workload: Callable[[], object], out: Path) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    workload()
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    out.write_text("\n".join(text.splitlines()[:TREE_LINES]) + "\n")


def run_cprofile(workload: Callable[[], object], out: Path) -> list[list[Any]]:
    """Profile, save the top by own time and cumulative time; return the summary rows."""
    profiler = cProfile.Profile()
    profiler.enable()
    workload()
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(40)
    out.write_text(stream.getvalue())
    total = stats.total_tt  # type: ignore[attr-defined]
    entries = sorted(stats.stats.items(),  # type: ignore[attr-defined]
                     key=lambda item: item[1][2], reverse=True)
    rows = []
    for (filename, line, function), (_, calls, own, cumulative, _) in entries[:TOP]:
        where = f"{shorten(filename)}:{line}" if line else filename
        rows.append([f"`{function}` ({where})", calls, fmt(100 * own / total, 1),
                     fmt(100 * cumulative / total, 1)])
    return rows


def shorten(filename: str) -> str:
    for marker in ("site-packages/", "/main/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def authmw_steps(iterations: int) -> list[list[Any]]:
    """The valid-request path, step by step, each timed alone in a loop (ns per call)."""
    environ = environ_for("valid")
    middleware = with_authmw(bare_app)
    auth = HTTPBasicAuth()
    token = current_environ_var.set(environ)
    try:
        steps: list[tuple[str, Callable[[], object]]] = [
            ("whole request through AuthMiddleware", caller(middleware, environ)),
            ("bare app, same calling code (subtract)", caller(bare_app, environ)),
            ("PrefixMatcher.select('/scheduler/jobs')",
             lambda: middleware.matcher.select("/scheduler/jobs")),
            ("ContextVar set + reset", lambda: current_environ_var.reset(
                current_environ_var.set(environ))),
            ("HTTPBasicAuth.get_authorization() (all below)", auth.get_authorization),
            ("  get_authorization_header()", get_authorization_header),
            ("  decode_basic_credentials()", lambda: decode_basic_credentials(
                VALID.split()[1].encode())),
            ("  Authorization('basic', username=, password=)",
             lambda: Authorization("basic", username=USER, password=PASSWORD)),
            ("authenticate callback (benchmark's trivial one)",
             lambda: authenticate({"username": USER, "password": PASSWORD})),
        ]
        rounds = 5
        times = {name: [ns_per_call(step, iterations) for _ in range(rounds)]
                 for name, step in steps}
    finally:
        current_environ_var.reset(token)
    return [[name, fmt(median(t) / 1e3, 3)] for name, t in times.items()]


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    scale = 10 if args.quick else 1
    calls, get_jobs, listings, post_jobs = 200_000 // scale, 10_000 // scale, 3, 1000 // scale
    report = Report("profile", args, {"authmw_calls": calls, "get_jobs": get_jobs,
                                      "get_listings": listings, "post_jobs": post_jobs})
    report.out_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("authmw").setLevel(logging.ERROR)

    report.table("authmw valid request, step by step (each timed alone, median of 5 x "
                 f"{calls // 2} calls)", ["step", "us per call"],
                 authmw_steps(calls // 2), [
        "Steps overlap (get_authorization() includes the two indented ones); the whole "
        "request minus the bare app is authmw's overhead.",
    ])

    middleware_call = caller(with_authmw(bare_app), environ_for("valid"))
    variants: dict[str, Variant] = {"scheduler_api": ours("scheduler_api", _memory()),
                                    "flask_apscheduler": theirs()}
    cases: list[tuple[str, str, Callable[[], None], Callable[[], object]]] = [
        ("authmw_valid", f"authmw, valid Basic request, {calls} calls", lambda: None,
         lambda: [middleware_call() for _ in range(calls)]),
    ]
    for name, variant in variants.items():
        cases += [
            (f"{name}_get_{get_jobs}", f"{name}: GET /scheduler/jobs with {get_jobs} jobs, "
             f"{listings} listings", partial(variant.fill, get_jobs),
             partial(variant.list_jobs, listings)),
            (f"{name}_post_{post_jobs}", f"{name}: POST {post_jobs} jobs one at a time",
             variant.scheduler.remove_all_jobs, partial(variant.post_jobs, post_jobs)),
        ]
    try:
        for key, title, prepare, workload in cases:
            print(f"  profiling {title}", file=sys.stderr)
            prepare()
            run_pyinstrument(workload, report.out_dir / f"profile_{key}.txt")
            prepare()
            rows = run_cprofile(workload, report.out_dir / f"profile_{key}_cprofile.txt")
            report.table(f"{title}: top {TOP} functions by own time (cProfile)",
                         ["function", "calls", "own time %", "cumulative %"], rows, [
                f"Call tree: profile_{key}.txt (pyinstrument); full listing: "
                f"profile_{key}_cprofile.txt. cProfile's per-call overhead inflates the "
                "share of small, frequently called functions.",
            ])
    finally:
        for variant in variants.values():
            variant.shutdown()
    report.write()


def _memory() -> dict[str, Any]:
    from apscheduler.jobstores.memory import MemoryJobStore

    return {"default": MemoryJobStore()}


if __name__ == "__main__":
    main()
