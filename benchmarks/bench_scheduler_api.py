"""scheduler_api against Flask-APScheduler 1.13.1: POST one job at a time, GET the whole list.

Both run on an APScheduler MemoryJobStore with a paused scheduler and no authentication, and
are driven through the same werkzeug test Client. scheduler_api on its default SQLite store
(a temp file) is measured in the same rounds, report only.

POST is also timed in process, without the test client: prebuilt environs handed straight to
each WSGI app, as the middleware benchmark does (report only; the target uses the client).

GET is timed twice: the first listing after the stores were (re)filled ("cold": every job
serialised, as scheduler_api's listing cache has not seen them) and repeated listings of the
unchanged jobs ("warm": scheduler_api reuses each job's JSON). The target is judged on the
repeated listings; the cold ones are reported next to them.

    python benchmarks/bench_scheduler_api.py [--quick]
"""

from __future__ import annotations

import gc
import io
import json
import logging
import pickle
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import datetime_to_utc_timestamp
from werkzeug.test import Client, EnvironBuilder

from benchmarks.harness import (
    Report,
    fmt,
    median,
    paired_ratios,
    parser,
    rotated,
    timed_ns,
)

FUNC = "benchmarks.tasks:noop"
POST_SIZES = (100, 1000, 5000)
GET_SIZES = (100, 1000, 10_000)
LISTED_PER_ROUND = 20_000  # warm GET repeats per round: max(2, LISTED_PER_ROUND // N)
COLD_JOBS_PER_ROUND = 3000  # cold GETs per round (each after a refill): 1 to 5, 3000 // N


def job_body(index: int) -> dict[str, Any]:
    return {"id": f"job-{index}", "func": FUNC, "trigger": "interval", "seconds": 60}


def not_found_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def floor_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The test client's own cost: read the body, answer a small JSON object."""
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


def add_job_floor() -> Variant:
    """The least any JSON job API over APScheduler does per POST: parse, add_job, answer.

    No validation, no allow-list, no routing, no job in the answer: what this costs through
    the same test client bounds from below what any implementation can reach.
    """
    scheduler = BackgroundScheduler(jobstores={"default": MemoryJobStore()})

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        scheduler.add_job(body["func"], body["trigger"], seconds=body["seconds"],
                          id=body["id"], name=body["id"])
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    scheduler.start(paused=True)
    return Variant("client + add_job floor", Client(app), scheduler,
                   lambda: scheduler.shutdown(wait=False))


def post_environs(count: int) -> list[dict[str, Any]]:
    """One WSGI environ per job of ``job_body(0..count-1)``, as the test client builds them."""
    base = EnvironBuilder(path="/scheduler/jobs", method="POST", json=job_body(0)).get_environ()
    environs = []
    for index in range(count):
        body = json.dumps(job_body(index)).encode()
        environs.append({**base, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)})
    return environs


def post_floor(client: Client, count: int) -> None:
    for index in range(count):
        client.post("/scheduler/jobs", json=job_body(index))


@dataclass
class Variant:
    label: str
    client: Client
    scheduler: BackgroundScheduler
    shutdown: Callable[[], None]
    #: scheduler_api's APScheduler (its run history, recorder); None for the others.
    api: Any = None

    def post_jobs(self, count: int) -> None:
        for index in range(count):
            response = self.client.post("/scheduler/jobs", json=job_body(index))
            if response.status_code != 200:
                raise SystemExit(f"{self.label}: POST gave {response.status_code}: "
                                 f"{response.get_data(as_text=True)[:200]}")

    def post_in_process(self, environs: list[dict[str, Any]]) -> None:
        """Hand each environ to the WSGI app itself: the app's time, without the client's."""
        app = self.client.application
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
            statuses.append(status)

        for environ in environs:
            b"".join(app(environ, start_response))
        if set(statuses) != {"200 OK"}:
            raise SystemExit(f"{self.label}: in-process POSTs gave {sorted(set(statuses))}")

    def list_jobs(self, times: int = 1) -> bytes:
        """GET the whole list ``times`` times; return the last body."""
        body = b""
        for _ in range(times):
            response = self.client.get("/scheduler/jobs")
            if response.status_code != 200:
                raise SystemExit(f"{self.label}: GET gave {response.status_code}")
            body = response.get_data()
        return body

    def fill(self, count: int) -> None:
        """Make the store hold exactly job-0 .. job-<count-1> (not through the API)."""
        self.scheduler.remove_all_jobs()
        store = self.scheduler._jobstores["default"]
        if isinstance(store, SQLAlchemyJobStore):
            bulk_insert(store, count)
        else:
            for index in range(count):
                self.scheduler.add_job(FUNC, "interval", seconds=60, id=f"job-{index}",
                                       name=f"job-{index}")


def bulk_insert(store: SQLAlchemyJobStore, count: int, func: str = FUNC,
                trigger: str = "interval", options: dict[str, Any] | None = None,
                with_id_arg: bool = False) -> None:
    """Jobs as the store would write them, in one transaction (one commit per job is slow).

    job-0 .. job-<count-1>, each with ``trigger`` and ``options`` (add_job's keyword
    arguments; default every 60 s);
    ``with_id_arg``: each job gets its own id as its one argument.
    """
    staging = BackgroundScheduler(jobstores={"default": MemoryJobStore()})
    staging.start(paused=True)
    options = {"seconds": 60} if options is None else options
    try:
        for index in range(count):
            job_id = f"job-{index}"
            staging.add_job(func, trigger, args=[job_id] if with_id_arg else None, id=job_id,
                            name=job_id, **options)
        rows = [{"id": job.id, "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
                 "job_state": pickle.dumps(job.__getstate__(), store.pickle_protocol)}
                for job in staging.get_jobs()]
    finally:
        staging.shutdown(wait=False)
    with store.engine.begin() as connection:
        connection.execute(store.jobs_t.insert(), rows)


def ours(label: str, jobstores: dict[str, Any] | None, url: str | None = None,
         paused: bool = True, settings: dict[str, Any] | None = None) -> Variant:
    """scheduler_api's app around a 404 app, started (paused unless ``paused=False``), with
    these ``settings`` besides."""
    from scheduler_api import APScheduler

    scheduler = APScheduler(BackgroundScheduler())
    config: dict[str, Any] = {"SCHEDULER_API_ENABLED": True,
                              "SCHEDULER_API_ALLOWED_FUNCS": ["benchmarks.tasks:*"],
                              **(settings or {})}
    if jobstores is not None:
        config["SCHEDULER_JOBSTORES"] = jobstores
    if url is not None:
        config["SCHEDULER_JOBSTORE_URL"] = url
    app = scheduler.init_app(not_found_app, config=config)
    scheduler.start(paused=paused)
    return Variant(label, Client(app), scheduler.scheduler,
                   lambda: scheduler.shutdown(wait=False), api=scheduler)


def theirs() -> Variant:
    from flask import Flask
    from flask_apscheduler import APScheduler as FlaskAPScheduler

    app = Flask("flask_apscheduler_bench")
    app.config.update(SCHEDULER_API_ENABLED=True,
                      SCHEDULER_JOBSTORES={"default": MemoryJobStore()})
    scheduler = FlaskAPScheduler(BackgroundScheduler())
    scheduler.init_app(app)
    scheduler.start(paused=True)
    return Variant("Flask-APScheduler", Client(app), scheduler.scheduler,
                   lambda: scheduler.shutdown(wait=False))


def build_variants(sqlite_path: Path) -> dict[str, Variant]:
    return {
        "ours": ours("scheduler_api (memory)", {"default": MemoryJobStore()}),
        "theirs": theirs(),
        "ours_sqlite": ours("scheduler_api (SQLite)", None, f"sqlite:///{sqlite_path}"),
    }


def check_listing(variants: dict[str, Variant], count: int) -> None:
    for variant in variants.values():
        listed = json.loads(variant.list_jobs())
        if len(listed) != count or {job["id"] for job in listed} != {
            f"job-{i}" for i in range(count)
        }:
            raise SystemExit(f"{variant.label}: the listing does not hold the {count} jobs")


def bench_post(variants: dict[str, Variant], sizes: tuple[int, ...], rounds: int,
               floor: Client, add_job_floor: Variant
               ) -> tuple[dict[int, dict[str, list[float]]], dict[int, dict[str, list[float]]]]:
    """Through the client and in process: N -> variant -> ns per job, per round.

    The store is emptied before each run of N POSTs.
    """
    times: dict[int, dict[str, list[float]]] = {}
    in_process: dict[int, dict[str, list[float]]] = {}
    posting = {**variants, "add_job_floor": add_job_floor}
    for size in sizes:
        names = list(posting)
        times[size] = {name: [] for name in [*names, "client_floor"]}
        in_process[size] = {name: [] for name in names}
        for round_index in range(rounds):
            for name in rotated(names, round_index):
                variant = posting[name]
                variant.scheduler.remove_all_jobs()
                times[size][name].append(timed_ns(partial(variant.post_jobs, size)) / size)
                check_count(variant, size)
                environs = post_environs(size)
                variant.scheduler.remove_all_jobs()
                in_process[size][name].append(
                    timed_ns(partial(variant.post_in_process, environs)) / size)
                check_count(variant, size)
            times[size]["client_floor"].append(timed_ns(partial(post_floor, floor, size)) / size)
            print(f"  POST N={size} round {round_index + 1}/{rounds}", file=sys.stderr)
    return times, in_process


def check_count(variant: Variant, size: int) -> None:
    if len(variant.scheduler.get_jobs()) != size:
        raise SystemExit(f"{variant.label}: {size} POSTs did not make {size} jobs")


def cold_samples(size: int) -> int:
    return max(1, min(5, COLD_JOBS_PER_ROUND // size))


def bench_get(variants: dict[str, Variant], sizes: tuple[int, ...], rounds: int,
              listed_per_round: int
              ) -> dict[str, dict[int, dict[str, list[float]]]]:
    """"cold" / "second" / "warm" -> N -> variant -> ns per listing, per round.

    Cold: the first listing after the store was refilled with N fresh jobs (the mean over
    ``cold_samples(N)`` refills). Second: the listing right after it. Warm: then the same
    listing again, ``repeats`` times. The second listing is kept apart because it is not
    always warm: scheduler_api's SQL listing cache keeps the JSON of the replaced jobs too,
    and once it holds 16,384 entries it is emptied, in the middle of the cold listing (10,000
    new jobs on top of 10,000 old ones), so the next listing serialises thousands again.
    """
    cold: dict[int, dict[str, list[float]]] = {}
    second: dict[int, dict[str, list[float]]] = {}
    warm: dict[int, dict[str, list[float]]] = {}
    for size in sizes:
        for variant in variants.values():
            variant.fill(size)
        check_listing(variants, size)
        repeats = max(2, listed_per_round // size)
        cold[size] = {name: [] for name in variants}
        second[size] = {name: [] for name in variants}
        warm[size] = {name: [] for name in variants}
        for round_index in range(rounds):
            for name in rotated(list(variants), round_index):
                variant = variants[name]
                samples = []
                for _ in range(cold_samples(size)):
                    variant.fill(size)
                    gc.collect()
                    samples.append(timed_ns(partial(variant.list_jobs, 1)))
                cold[size][name].append(sum(samples) / len(samples))
            for name in rotated(list(variants), round_index):
                second[size][name].append(timed_ns(partial(variants[name].list_jobs, 1)))
            for name in rotated(list(variants), round_index):
                variant = variants[name]
                total = timed_ns(partial(variant.list_jobs, repeats))
                warm[size][name].append(total / repeats)
            print(f"  GET N={size} round {round_index + 1}/{rounds}", file=sys.stderr)
    return {"cold": cold, "second": second, "warm": warm}


def ratio_cells(t: dict[str, list[float]], name: str, subtract: list[float] | None = None
                ) -> str:
    ours_t, theirs_t = t[name], t["theirs"]
    if subtract is not None:
        ours_t = [a - f for a, f in zip(ours_t, subtract, strict=True)]
        theirs_t = [b - f for b, f in zip(theirs_t, subtract, strict=True)]
    return fmt(median(paired_ratios(ours_t, theirs_t)), 3)


def us(values: list[float]) -> str:
    return fmt(median(values) / 1e3, 1)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    post_sizes = (20, 100) if args.quick else POST_SIZES
    get_sizes = (20, 200) if args.quick else GET_SIZES
    listed = LISTED_PER_ROUND // 20 if args.quick else LISTED_PER_ROUND
    report = Report("scheduler_api", args, {
        "rounds": rounds, "post_sizes": post_sizes, "get_sizes": get_sizes,
        "get_repeats_per_round": {
            n: max(2, listed // n) for n in get_sizes},
        "get_cold_samples_per_round": {n: cold_samples(n) for n in get_sizes},
        "job": job_body(0), "client": "werkzeug.test.Client for every variant",
    })
    logging.getLogger("authmw").setLevel(logging.ERROR)  # the auth=None warning

    with tempfile.TemporaryDirectory(prefix="bench_scheduler_api_") as tmp:
        variants = build_variants(Path(tmp) / "jobs.sqlite")
        bound = add_job_floor()
        try:
            post, post_in_process = bench_post(variants, post_sizes, rounds, Client(floor_app),
                                               bound)
            listings = bench_get(variants, get_sizes, rounds, listed)
            get_cold, get_second, get = (listings["cold"], listings["second"],
                                         listings["warm"])
        finally:
            for variant in [*variants.values(), bound]:
                variant.shutdown()
    report.raw("post_ns_per_job", post)
    report.raw("post_in_process_ns_per_job", post_in_process)
    report.raw("get_warm_ns_per_listing", get)
    report.raw("get_cold_ns_per_listing", get_cold)
    report.raw("get_second_ns_per_listing", get_second)

    post_rows = []
    for size, t in post.items():
        floor = t["client_floor"]
        post_rows.append([size, us(t["ours"]), us(t["theirs"]), us(t["ours_sqlite"]),
                          us(floor), us(t["add_job_floor"]), ratio_cells(t, "ours"),
                          ratio_cells(t, "ours", floor), ratio_cells(t, "add_job_floor"),
                          ratio_cells(t, "ours_sqlite"),
                          " ".join(fmt(r, 3) for r in paired_ratios(t["ours"], t["theirs"]))])
    report.table(f"POST /scheduler/jobs, one job at a time (time per job, median of {rounds} "
                 "rounds)", ["N", "scheduler_api memory (us/job)", "Flask-APScheduler (us/job)",
                             "scheduler_api SQLite (us/job)", "client floor (us/job)",
                             "client + add_job floor (us/job)", "ratio ours/theirs",
                             "ratio net of client floor", "ratio add_job floor/theirs",
                             "ratio SQLite/theirs", "ratio per round"], post_rows, [
        "The store is emptied before each run of N POSTs; each POST is an interval job "
        f"({json.dumps(job_body(0))}).",
        "Client floor: the same werkzeug Client POSTing to a WSGI app that only reads the "
        "body; 'net' ratios subtract it from both sides (the target uses the gross ratio).",
        "client + add_job floor: the same client POSTing to a WSGI app that parses the body, "
        "calls APScheduler's add_job on a paused memory store and answers '{}': no "
        "validation, allow-list, routing or job JSON. Its ratio to Flask-APScheduler is the "
        "lowest any job API over APScheduler can reach through this client.",
        "SQLite: the default store on a temp file (on disk, not tmpfs): one commit per POST.",
    ])
    in_process_rows = []
    for size, t in post_in_process.items():
        in_process_rows.append([size, us(t["ours"]), us(t["theirs"]), us(t["ours_sqlite"]),
                                us(t["add_job_floor"]), ratio_cells(t, "ours"),
                                ratio_cells(t, "add_job_floor"), ratio_cells(t, "ours_sqlite"),
                                " ".join(fmt(r, 3)
                                         for r in paired_ratios(t["ours"], t["theirs"]))])
    report.table(f"POST /scheduler/jobs in process, without the test client (time per job, "
                 f"median of {rounds} rounds; report only)", [
        "N", "scheduler_api memory (us/job)", "Flask-APScheduler (us/job)",
        "scheduler_api SQLite (us/job)", "add_job floor (us/job)", "ratio ours/theirs",
        "ratio add_job floor/theirs", "ratio SQLite/theirs", "ratio per round"],
        in_process_rows, [
        "The same POSTs, each a prebuilt WSGI environ handed to the app itself (as the test "
        "client builds them, built before the clock starts): each app's own time per job, "
        "without the ~100-200 us the test client adds to both sides.",
    ])
    get_rows = []
    for size, t in get.items():
        get_rows.append([size, fmt(median(t["ours"]) / 1e6, 2), fmt(median(t["theirs"]) / 1e6, 2),
                         fmt(median(t["ours_sqlite"]) / 1e6, 2),
                         us([v / size for v in t["ours"]]), us([v / size for v in t["theirs"]]),
                         us([v / size for v in t["ours_sqlite"]]), ratio_cells(t, "ours"),
                         ratio_cells(t, "ours_sqlite"),
                         " ".join(fmt(r, 3) for r in paired_ratios(t["ours"], t["theirs"]))])
    repeats = report.data["settings"]["get_repeats_per_round"]
    report.table(f"GET /scheduler/jobs, the whole list, repeated (warm; median of {rounds} "
                 "rounds)", [
        "N", "scheduler_api memory (ms/listing)", "Flask-APScheduler (ms/listing)",
        "scheduler_api SQLite (ms/listing)", "scheduler_api memory (us/job)",
        "Flask-APScheduler (us/job)", "scheduler_api SQLite (us/job)", "ratio ours/theirs",
        "ratio SQLite/theirs", "ratio per round"], get_rows, [
        "Warm: repeated listings of the same, unchanged jobs (per round and N: "
        + ", ".join(f"{repeats[n]} for N={n}" for n in get) + "), after the cold "
        "listing and a second one (both in the next table); scheduler_api's listing cache "
        "reuses each job's JSON. The GET targets are judged on these repeated listings.",
        "The stores are filled outside the API with the same N interval jobs; every listing "
        "is checked once to hold exactly those N jobs.",
    ])
    cold_rows = []
    for size, t in get_cold.items():
        cold_rows.append([size, fmt(median(t["ours"]) / 1e6, 2), fmt(median(t["theirs"]) / 1e6, 2),
                          fmt(median(t["ours_sqlite"]) / 1e6, 2),
                          us([v / size for v in t["ours"]]), us([v / size for v in t["theirs"]]),
                          us([v / size for v in t["ours_sqlite"]]), ratio_cells(t, "ours"),
                          ratio_cells(t, "ours_sqlite"),
                          " ".join(fmt(r, 3) for r in paired_ratios(t["ours"], t["theirs"])),
                          fmt(median(paired_ratios(t["ours"], get[size]["ours"])), 1),
                          fmt(median(get_second[size]["ours"]) / 1e6, 2),
                          fmt(median(get_second[size]["ours_sqlite"]) / 1e6, 2)])
    report.table(f"GET /scheduler/jobs, the whole list, first listing after filling (cold; "
                 f"median of {rounds} rounds; report only)", [
        "N", "scheduler_api memory (ms/listing)", "Flask-APScheduler (ms/listing)",
        "scheduler_api SQLite (ms/listing)", "scheduler_api memory (us/job)",
        "Flask-APScheduler (us/job)", "scheduler_api SQLite (us/job)", "ratio ours/theirs",
        "ratio SQLite/theirs", "ratio per round", "ours cold / ours warm",
        "2nd listing: scheduler_api memory (ms)", "2nd listing: scheduler_api SQLite (ms)"],
        cold_rows, [
        "Cold: the first listing after every store was refilled with N fresh jobs, so "
        "scheduler_api serialises every job (on SQLite also unpickles it), as "
        "Flask-APScheduler always does; the mean of "
        + ", ".join(f"{cold_samples(n)} refill(s) for N={n}" for n in get_cold)
        + " per round (a full collection before each). Report only: no target.",
        "2nd listing: the listing right after the cold one, not counted as warm. On SQLite "
        "with N=10000 it is partly cold: the listing cache keeps the replaced jobs' JSON until "
        "it holds 16,384 entries, then empties itself, here in the middle of the cold listing "
        "(10,000 new jobs over the 10,000 of the previous fill), so the 2nd listing "
        "serialises the jobs listed before the emptying again.",
    ])
    for size, t in post.items():
        report.target(f"POST per job, scheduler_api / Flask-APScheduler, N={size}",
                      median(paired_ratios(t["ours"], t["theirs"])), 0.5)
    for size, t in get.items():
        report.target(f"GET list (repeated), scheduler_api / Flask-APScheduler, N={size}",
                      median(paired_ratios(t["ours"], t["theirs"])), 0.33)
    report.write()


if __name__ == "__main__":
    main()
