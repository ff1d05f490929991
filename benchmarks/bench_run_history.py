"""Run history's costs: listings with ``last_run``, start lateness, bursts, paging runs.

Five measurements, interleaved round by round (every round measures every variant):

1. ``GET /scheduler/jobs`` of 10,000 jobs that each have a recorded last run (``last_run``
   spliced into every job's JSON): scheduler_api vs Flask-APScheduler 1.13.1, both on a
   MemoryJobStore, warm repeated listings (as bench_scheduler_api.py); scheduler_api on its
   SQLite store beside them (report only).
2. One job falling due: start lateness (the body's start minus the scheduled time) under
   scheduler_api (default SQLite store, StoreFirstThreadPoolExecutor, recorder on) vs bare
   APScheduler 3 (BackgroundScheduler, SQLAlchemyJobStore on its own SQLite file, plain
   ThreadPoolExecutor); single date jobs scheduled ~200 ms ahead, alternated.
3. 5,000 date jobs due at the same instant, bulk-inserted into each store: the first and the
   last job's lateness, each job checked to run exactly once and (scheduler_api) the history
   checked to hold 5,000 runs.
4. From the same bursts: jobs per second dispatched and completed, scheduler_api with the
   recorder on vs off.
5. ``GET /scheduler/runs?limit=100`` (and a job's runs, and ``?outcome=error``) on a SQLite
   history of 1,000,000 runs vs one of 1,000.

    python benchmarks/bench_run_history.py [--quick]
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apscheduler.executors.base import run_job as apscheduler_run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING, BaseScheduler
from sqlalchemy import func, select

from benchmarks import tasks
from benchmarks.bench_scheduler_api import Variant, bulk_insert, ours, theirs
from benchmarks.harness import Report, fmt, median, paired_ratios, parser, rotated, timed_ns
from scheduler_api import engine as scheduler_engine
from scheduler_api.history import RunHistory

STAMP = "benchmarks.tasks:stamp"
LISTED_JOBS = 10_000
LISTINGS_PER_ROUND = 3       # warm listings per variant and round (after one unmeasured)
SINGLE_FIRES = 30            # single-job fires per variant and round
SINGLE_LEAD = 0.2            # seconds between scheduling a single job and its run time
BURST_JOBS = 5000
#: scheduler_api bursts per round with the recorder on, and as many off (A B B A, repeated):
#: one burst's jobs/s sways by 10-20 % on shared CPUs, as much as the cost measured.
BURSTS_PER_SIDE = 4
BURST_LEAD = 4.0             # seconds between choosing the burst's instant and the instant
HISTORY_SIZES = (1000, 1_000_000)
RUNS_PER_JOB = 1000          # each job's history: the 1M history has 1,000 such jobs
ERROR_EVERY = 10             # every 10th run of a job is an error: 100 per job
PAGE_REQUESTS = 200          # requests per page kind, history size and round
PAGES = {
    "all runs": "/scheduler/runs?limit=100",
    "one job's runs": "/scheduler/jobs/job-0/runs?limit=100",
    "one job's errors": "/scheduler/jobs/job-0/runs?limit=100&outcome=error",
    "all errors": "/scheduler/runs?limit=100&outcome=error",
}


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 2 ms (cheap next to the schedulers) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.002)


def finished_run(serial: int, job_id: str, outcome: str, at: float) -> dict[str, Any]:
    """A whole row of a history's runs table: a run of ``job_id`` that ended at once (its
    id: ``serial`` in hex, unique within a history)."""
    return {"id": f"{serial:032x}", "job_id": job_id, "reason": "schedule", "outcome": outcome,
            "scheduled_at": at, "started_at": at, "finished_at": at + 0.001,
            "duration": 0.001, "heartbeat_at": at,
            "error_type": "ValueError" if outcome == "error" else None,
            "error_message": "boom" if outcome == "error" else None,
            "traceback": "Traceback: ...\nValueError: boom" if outcome == "error" else None,
            "result": None, "host": "bench", "node": "bench/1", "pid": 1}


def record_runs(history: RunHistory, rows: list[dict[str, Any]]) -> None:
    """Write finished runs as the recorder does: runs, counts and last runs, one transaction."""
    with history.engine.begin() as connection:
        history.write(connection, rows, [], [])


# -- 1. listings with last_run ---------------------------------------------------------------

def listing_variants(tmp: Path, count: int) -> dict[str, Variant]:
    """scheduler_api (memory, SQLite) and Flask-APScheduler, each holding job-0..count-1;
    scheduler_api's jobs each with one recorded run."""
    variants = {
        "ours": ours("scheduler_api (memory)", {"default": MemoryJobStore()}),
        "theirs": theirs(),
        "ours_sqlite": ours("scheduler_api (SQLite)", None, f"sqlite:///{tmp}/listing.sqlite"),
    }
    now = time.time()
    for variant in variants.values():
        variant.fill(count)
        if variant.api is not None:
            record_runs(variant.api.history, [finished_run(index, f"job-{index}", "success", now)
                                              for index in range(count)])
    for variant in variants.values():  # checked once: every job, each with its last run
        listed = json.loads(variant.list_jobs())
        if len(listed) != count:
            raise SystemExit(f"{variant.label}: the listing does not hold the {count} jobs")
        if variant.api is not None and any(job["last_run"] is None for job in listed):
            raise SystemExit(f"{variant.label}: a job is listed without its last run")
    return variants


def bench_listing(variants: dict[str, Variant], round_index: int, repeats: int,
                  results: dict[str, list[float]]) -> None:
    for name in rotated(list(variants), round_index):
        variant = variants[name]
        variant.list_jobs()  # not counted: the first after the previous round may be cold
        results[name].append(timed_ns(partial(variant.list_jobs, repeats)) / repeats)


# -- 2-4. runs falling due -------------------------------------------------------------------

class Runner:
    """A started scheduler that runs jobs: scheduler_api or bare APScheduler 3."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.api: Any = None
        if kind == "apscheduler":
            self.scheduler: BaseScheduler = BackgroundScheduler(
                jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{path}")},
                executors={"default": ThreadPoolExecutor()})
            self.scheduler.start()
        else:
            variant = ours(kind, None, f"sqlite:///{path}", paused=False)
            self.api, self.scheduler = variant.api, variant.scheduler
            if kind == "recorder off":
                recorder_off(self.api)
        wait_until(lambda: self.scheduler.state == STATE_RUNNING, 30, f"{kind} to lead")

    @property
    def store(self) -> SQLAlchemyJobStore:
        return scheduler_engine.jobstores(self.scheduler)["default"]  # type: ignore[return-value]

    def add_date_job(self, key: str, at: datetime) -> None:
        if self.api is not None:
            self.api.add_job(key, STAMP, trigger="date", run_date=at, args=[key])
        else:
            self.scheduler.add_job(STAMP, "date", run_date=at, args=[key], id=key, name=key)

    def shutdown(self) -> None:
        if self.api is not None:
            self.api.shutdown(wait=True)
        else:
            self.scheduler.shutdown(wait=True)


def recorder_off(api: Any) -> None:
    """scheduler_api as it was before run history: no run or event recorded.

    Its executors run jobs through APScheduler's own ``run_job``, and the listeners that
    queue runs and job changes for the recorder are removed; the recorder thread stops.
    """
    api.scheduler.remove_listener(api.recorder.listen)
    api.scheduler.remove_listener(api._announce_change)
    for executor in scheduler_engine.executors(api.scheduler).values():
        if isinstance(executor, scheduler_engine.StoreFirstThreadPoolExecutor):
            executor.run_job = apscheduler_run_job
    api.recorder.stop()


def stamps_of(prefix: str) -> list[tuple[str, float]]:
    return [(key, at) for key, at in list(tasks.STAMPS) if key.startswith(prefix)]


def single_fires(runners: dict[str, Runner], round_index: int, fires: int,
                 results: dict[str, list[float]]) -> None:
    """``fires`` single date jobs per runner, alternated; the median lateness (s) of each."""
    lateness: dict[str, list[float]] = {name: [] for name in runners}
    for fire in range(fires):
        for name in rotated(list(runners), round_index + fire):
            key = f"single-{name}-{round_index}-{fire}"
            at = datetime.now(timezone.utc) + timedelta(seconds=SINGLE_LEAD)
            runners[name].add_date_job(key, at)
            wait_until(lambda key=key: bool(stamps_of(key)), 10, key)  # type: ignore[misc]
            lateness[name].append(stamps_of(key)[0][1] - at.timestamp())
    for name, values in lateness.items():
        results[name].append(median(values))


def burst(kind: str, path: Path, count: int) -> dict[str, float]:
    """``count`` date jobs due at one instant in a fresh store: lateness and throughput."""
    runner = Runner(kind, path)
    try:
        at = datetime.now(timezone.utc) + timedelta(seconds=BURST_LEAD)
        started = time.monotonic()
        bulk_insert(runner.store, count, func=STAMP, trigger="date",
                    options={"run_date": at, "misfire_grace_time": None},
                    with_id_arg=True)
        runner.scheduler.wakeup()
        if time.monotonic() - started > BURST_LEAD - 0.5:
            raise SystemExit(f"{kind}: filling the store took too long to be measured")
        # job ids are job-0 .. job-<count-1> in every burst: a burst's stamps are those
        # noted since it began
        first_stamp = len(tasks.STAMPS)
        wait_until(lambda: len(tasks.STAMPS) - first_stamp >= count, 120, f"{kind}: burst")
        time.sleep(0.3)  # a job run twice would show now
        stamps = tasks.STAMPS[first_stamp:]
        runs = Counter(key for key, _ in stamps)
        if len(stamps) != count or set(runs) != {f"job-{i}" for i in range(count)}:
            raise SystemExit(f"{kind}: {len(stamps)} runs of {len(runs)} jobs, not each of "
                             f"the {count} jobs once")
        times = sorted(moment for _, moment in stamps)
        result = {"first": times[0] - at.timestamp(), "last": times[-1] - at.timestamp(),
                  "per_second": count / (times[-1] - at.timestamp())}
        if runner.api is not None and kind != "recorder off":
            if not runner.api.recorder.flush(120):
                raise SystemExit(f"{kind}: the recorder did not write the burst in 120 s")
            result["history_written"] = time.time() - times[-1]
            check_recorded(runner.api.history, count, kind)
        if runner.store.get_all_jobs():
            raise SystemExit(f"{kind}: date jobs left in the store after their run")
        return result
    finally:
        runner.shutdown()
        tasks.STAMPS.clear()


def check_recorded(history: RunHistory, count: int, kind: str) -> None:
    """The history holds ``count`` successful runs, one per job, and says so in its totals."""
    with history.engine.connect() as connection:
        rows = connection.execute(select(func.count(), func.count(
            history.runs.c.job_id.distinct())).where(
            history.runs.c.outcome == "success")).one()
    page = history.page(limit=1)
    if tuple(rows) != (count, count) or page.total != count:
        raise SystemExit(f"{kind}: the history holds {tuple(rows)} (runs, jobs) successful "
                         f"runs and a total of {page.total}, not {count}")


# -- 5. pages of a long history --------------------------------------------------------------

def fill_history(history: RunHistory, size: int, chunk: int = 50_000) -> None:
    """``size`` finished runs: jobs of RUNS_PER_JOB runs each (every ERROR_EVERY-th an error),
    interleaved as if the jobs ran in turn; written through ``RunHistory.write`` (runs,
    counts, last runs) in chunks, all in one transaction."""
    jobs = max(1, size // RUNS_PER_JOB)
    start = time.time() - size
    with history.engine.begin() as connection:
        for first in range(0, size, chunk):
            rows = []
            for index in range(first, min(size, first + chunk)):
                number, job = divmod(index, jobs)
                outcome = "error" if number % ERROR_EVERY == ERROR_EVERY - 1 else "success"
                rows.append(finished_run(index, f"job-{job}", outcome, start + index))
            history.write(connection, rows, [], [])


def history_apps(tmp: Path, sizes: tuple[int, int]) -> dict[int, Variant]:
    """One paused scheduler_api per history size, on its own SQLite file, job-0 stored.
    Their retention keeps every run: the leader's housekeeping (every 60 s) pruned the runs
    older than 7 days (40 % of the 1,000,000, spread over 11.6 days) in the background of the
    measurements, and paged a smaller history each round."""
    apps = {}
    for size in sizes:
        variant = ours(f"history of {size}", None, f"sqlite:///{tmp}/history-{size}.sqlite",
                       settings={"SCHEDULER_HISTORY_KEEP_DAYS": 36_500})
        variant.fill(1)
        started = time.monotonic()
        fill_history(variant.api.history, size)
        print(f"  history of {size} runs filled in {time.monotonic() - started:.1f} s",
              file=sys.stderr)
        check_pages(variant, size)
        apps[size] = variant
    return apps


def check_pages(variant: Variant, size: int) -> None:
    """Every page full, and its total what the history holds (checked every round)."""
    for label, path in PAGES.items():
        body = json.loads(variant.client.get(path).get_data())
        expected = size // (ERROR_EVERY if "error" in label else 1) // (
            1 if "all" in label else max(1, size // RUNS_PER_JOB))
        if len(body["runs"]) != 100 or body["total"] != expected:
            raise SystemExit(f"{path} on {size} runs: {len(body['runs'])} runs, total "
                             f"{body['total']} (expected 100, {expected})")


def bench_pages(apps: dict[int, Variant], round_index: int, requests: int,
                results: dict[str, dict[int, list[float]]]) -> None:
    for label in rotated(list(PAGES), round_index):
        for size in rotated(list(apps), round_index):
            client = apps[size].client

            def get_pages(client: Any = client, path: str = PAGES[label]) -> None:
                for _ in range(requests):
                    client.get(path)

            results[label][size].append(timed_ns(get_pages) / requests)
    for size, variant in apps.items():
        check_pages(variant, size)


# -- report ----------------------------------------------------------------------------------

def ratio(numerators: list[float], denominators: list[float]) -> float:
    return median(paired_ratios(numerators, denominators))


def per_round(numerators: list[float], denominators: list[float]) -> str:
    return " ".join(fmt(r, 3) for r in paired_ratios(numerators, denominators))


def ms(values: list[float], scale: float = 1e3) -> str:
    return fmt(median(values) * scale, 2)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    quick = args.quick
    rounds = args.rounds or (2 if quick else 5)
    listed = 1000 if quick else LISTED_JOBS
    fires = 5 if quick else SINGLE_FIRES
    burst_jobs = 500 if quick else BURST_JOBS
    requests = 20 if quick else PAGE_REQUESTS
    sizes = (HISTORY_SIZES[0], 20_000) if quick else HISTORY_SIZES
    report = Report("run_history", args, {
        "rounds": rounds, "listed_jobs": listed, "listings_per_round": LISTINGS_PER_ROUND,
        "single_fires_per_round": fires, "single_lead_seconds": SINGLE_LEAD,
        "burst_jobs": burst_jobs, "burst_lead_seconds": BURST_LEAD,
        "history_sizes": sizes, "runs_per_job": RUNS_PER_JOB,
        "error_every": ERROR_EVERY, "page_requests_per_round": requests, "pages": PAGES,
    })
    logging.getLogger("authmw").setLevel(logging.ERROR)  # the auth=None warning
    listing: dict[str, list[float]] = {"ours": [], "theirs": [], "ours_sqlite": []}
    single: dict[str, list[float]] = {"scheduler_api": [], "apscheduler": []}
    bursts: dict[str, list[dict[str, float]]] = {
        "scheduler_api": [], "recorder off": [], "apscheduler": []}
    pages: dict[str, dict[int, list[float]]] = {
        label: {size: [] for size in sizes} for label in PAGES}

    with tempfile.TemporaryDirectory(prefix="bench_run_history_") as name:
        tmp = Path(name)
        variants = listing_variants(tmp, listed)
        apps = history_apps(tmp, sizes)
        runners = {kind: Runner(kind, tmp / f"single-{kind}.sqlite")
                   for kind in ("scheduler_api", "apscheduler")}
        try:
            for round_index in range(rounds):
                bench_listing(variants, round_index, LISTINGS_PER_ROUND, listing)
                single_fires(runners, round_index, fires, single)
                # scheduler_api with the recorder on and off BURSTS_PER_SIDE times each
                # (A B B A, repeated), APScheduler once
                order = rotated(list(bursts), round_index)
                pair = [kind for kind in order if kind != "apscheduler"]
                for _ in range(BURSTS_PER_SIDE // 2 - 1):
                    order += [*reversed(pair), *pair]
                order += list(reversed(pair))
                runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in bursts}
                for number, kind in enumerate(order):
                    runs[kind].append(burst(
                        kind, tmp / f"burst-{round_index}-{number}.sqlite", burst_jobs))
                for kind, results in runs.items():
                    bursts[kind].append({key: statistics.fmean(r[key] for r in results)
                                         for key in results[0]})
                bench_pages(apps, round_index, requests, pages)
                latest = {kind: {key: fmt(value, 3) for key, value in results[-1].items()}
                          for kind, results in bursts.items()}
                print(f"  round {round_index + 1}/{rounds}: single "
                      f"{[fmt(v[-1] * 1e3) for v in single.values()]} ms, bursts {latest}",
                      file=sys.stderr)
        finally:
            for runner in runners.values():
                runner.shutdown()
            for variant in [*variants.values(), *apps.values()]:
                variant.shutdown()
    report.raw("listing_ns", listing)
    report.raw("single_lateness_s", single)
    report.raw("bursts", bursts)
    report.raw("page_ns", {label: {str(k): v for k, v in t.items()} for label, t in pages.items()})

    report.table(f"1. GET /scheduler/jobs, {listed} jobs each with its last_run, repeated "
                 f"(warm; median of {rounds} rounds)", [
        "scheduler_api memory (ms)", "Flask-APScheduler (ms)", "scheduler_api SQLite (ms)",
        "ratio ours/theirs", "ratio SQLite/theirs", "ratio per round"], [[
            ms(listing["ours"], 1e-6), ms(listing["theirs"], 1e-6),
            ms(listing["ours_sqlite"], 1e-6), fmt(ratio(listing["ours"], listing["theirs"]), 3),
            fmt(ratio(listing["ours_sqlite"], listing["theirs"]), 3),
            per_round(listing["ours"], listing["theirs"])]], [
        "Both on a MemoryJobStore, paused, through the werkzeug test Client (as "
        "bench_scheduler_api.py); scheduler_api's history on (for a memory store: its private "
        "SQLite file), every job with one recorded run, so each job's JSON carries last_run. "
        f"Per round: one unmeasured listing, then the mean of {LISTINGS_PER_ROUND}.",
        "SQLite: scheduler_api's default store on a temp file, history in the same database "
        "(report only).",
    ])
    report.table(f"2. One job falling due: start lateness (ms; per round the median of "
                 f"{fires} fires; median of {rounds} rounds)", [
        "scheduler_api", "APScheduler 3", "ratio", "ratio per round"], [[
            ms(single["scheduler_api"]), ms(single["apscheduler"]),
            fmt(ratio(single["scheduler_api"], single["apscheduler"]), 3),
            per_round(single["scheduler_api"], single["apscheduler"])]], [
        "Lateness: the job body's start (time.time()) minus its date trigger's run date; "
        f"each job is added {SINGLE_LEAD * 1e3:.0f} ms before its run date, the two "
        "schedulers alternating (one job at a time in the process).",
        "scheduler_api: the default SQLAlchemyJobStore on a SQLite file, its "
        "StoreFirstThreadPoolExecutor (10 threads), run history on, leader election. "
        "APScheduler 3: BackgroundScheduler, SQLAlchemyJobStore(url=) on its own SQLite "
        "file, ThreadPoolExecutor (10 threads).",
    ])
    burst_rows = []
    for kind, results in bursts.items():
        burst_rows.append([kind, ms([r["first"] for r in results]),
                           ms([r["last"] for r in results]),
                           fmt(median([r["per_second"] for r in results]), 0),
                           ms([r["history_written"] for r in results])
                           if "history_written" in results[0] else "",
                           " ".join(fmt(r["first"] * 1e3, 0) for r in results),
                           " ".join(fmt(r["last"] * 1e3, 0) for r in results)])
    last = {kind: [r["last"] for r in results] for kind, results in bursts.items()}
    rate = {kind: [r["per_second"] for r in results] for kind, results in bursts.items()}
    report.table(f"3-4. {burst_jobs} date jobs due at the same instant (median of {rounds} "
                 "rounds)", [
        "scheduler", "first job's lateness (ms)", "last job's lateness (ms)",
        "jobs/s (all dispatched and done)", "history written, after the last run (ms)",
        "first per round (ms)", "last per round (ms)"], burst_rows, [
        f"Per round: scheduler_api with the recorder on and off {BURSTS_PER_SIDE} times each "
        "(A B B A, repeated; the mean of each side), APScheduler 3 once. Each burst: a "
        "fresh SQLite file, the scheduler started, then the jobs bulk-inserted "
        f"(one transaction) with one run date {BURST_LEAD} s ahead. Every job's run is "
        "noted by the job itself: each of the jobs ran exactly once, the store is empty "
        "afterwards, and scheduler_api's history holds one successful run per job (rows and "
        "total), checked every burst.",
        "jobs/s: jobs / (last job's start - the run date); a job's body is empty, so its "
        "start is its end.",
        "recorder off: the same scheduler_api, its executor running jobs through "
        "APScheduler's run_job, no run or job event queued for the recorder.",
        f"last/last ratio per round: {per_round(last['scheduler_api'], last['apscheduler'])}; "
        f"recorder on/off jobs/s per round: "
        f"{per_round(rate['scheduler_api'], rate['recorder off'])}",
    ])
    page_rows = []
    for label, t in pages.items():
        small, large = t[sizes[0]], t[sizes[1]]
        page_rows.append([f"{label}: `{PAGES[label]}`", ms(small, 1e-6), ms(large, 1e-6),
                          fmt(ratio(large, small), 3), per_round(large, small)])
    report.table(f"5. A page of 100 runs (with total) from a SQLite history of "
                 f"{sizes[1]:,} vs {sizes[0]:,} runs (ms/request; median of "
                 f"{rounds} rounds)", [
        "page", f"{sizes[0]:,} runs (ms)", f"{sizes[1]:,} runs (ms)",
        "ratio 1M/1k", "ratio per round"], page_rows, [
        f"Histories written by bulk insert through RunHistory.write (runs, counts, last runs): "
        f"jobs of {RUNS_PER_JOB} runs each (1 job for 1k, 1,000 for 1M), interleaved, every "
        f"{ERROR_EVERY}th run of a job an error, so every page holds 100 runs; each page and "
        "its total checked at the start and after every round (retention keeps every run). "
        "Through the werkzeug test Client, scheduler paused.",
    ])

    report.target(f"GET {listed} jobs with last_run, scheduler_api / Flask-APScheduler (memory)",
                  ratio(listing["ours"], listing["theirs"]), 0.33)
    report.target("single job start lateness, scheduler_api / APScheduler 3",
                  ratio(single["scheduler_api"], single["apscheduler"]), 1.5)
    report.target(f"{burst_jobs} due at once: first job's lateness, scheduler_api (s)",
                  median([r["first"] for r in bursts["scheduler_api"]]), 0.05)
    report.target(f"{burst_jobs} due at once: last job's lateness, scheduler_api / APScheduler 3",
                  ratio(last["scheduler_api"], last["apscheduler"]), 0.35)
    report.target(f"{burst_jobs} due at once: jobs/s, recorder on / off",
                  ratio(rate["scheduler_api"], rate["recorder off"]), 0.90, at_least=True)
    for label, t in pages.items():
        report.target(f"page of runs, {label}: 1M / 1k runs",
                      ratio(t[sizes[1]], t[sizes[0]]), 1.5)
    report.write()


if __name__ == "__main__":
    main()
