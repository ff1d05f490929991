"""A scrape of ``{prefix}/metrics`` with 10,000 jobs and 1,000,000 recorded runs.

The store (SQLite, a temp file) is filled outside the API: the jobs through APScheduler's
SQLAlchemyJobStore, the runs through the history's own write path in batches (so the counts
and the metrics' totals and buckets are what the recorder would have written). The scrape is
timed through the werkzeug test client with Basic credentials, against the same app with 100
jobs and no runs (the floor), rotated round by round; the target is judged on the median
scrape time of the big store::

    python benchmarks/bench_metrics.py [--quick]
"""

from __future__ import annotations

import base64
import logging
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from werkzeug.test import Client

from authmw import HTTPBasicAuth
from benchmarks.harness import Report, fmt, median, parser, rotated, timed_ns
from scheduler_api import APScheduler
from scheduler_api.server import not_found_app

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:secret").decode()}
FUNC = "scheduler_api.example_tasks:say_hello"
OUTCOMES = ("success", "success", "success", "error", "missed", "skipped")
BATCH = 10_000


def make(store: Path, jobs: int, runs: int) -> tuple[APScheduler, Client]:
    scheduler = APScheduler()
    app = scheduler.init_app(not_found_app, config={
        "SCHEDULER_API_ENABLED": True, "SCHEDULER_AUTH": HTTPBasicAuth(),
        "SCHEDULER_JOBSTORE_URL": f"sqlite:///{store}",
        "SCHEDULER_API_ALLOWED_FUNCS": [FUNC],
        "SCHEDULER_HISTORY_KEEP_RUNS": 10**9, "SCHEDULER_HISTORY_KEEP_DAYS": 36_500})
    scheduler.authenticate(lambda auth: auth["username"] == "admin"
                           and auth["password"] == "secret")
    scheduler.start(paused=True)
    for index in range(jobs):  # one in ten paused
        paused: dict[str, Any] = {"next_run_time": None} if index % 10 == 0 else {}
        scheduler.add_job(f"job-{index:05d}", FUNC, trigger="interval", hours=1, **paused)
    fill_runs(scheduler, jobs, runs)
    return scheduler, Client(app)


def fill_runs(scheduler: APScheduler, jobs: int, runs: int) -> None:
    history = scheduler.history
    assert history is not None
    now = time.time() - runs  # one a second, ending now
    rng = random.Random(6)
    for start in range(0, runs, BATCH):
        rows: list[dict[str, Any]] = []
        for index in range(start, min(runs, start + BATCH)):
            outcome = OUTCOMES[index % len(OUTCOMES)]
            ran = outcome in ("success", "error")
            scheduled = now + index
            rows.append({"id": uuid.uuid4().hex, "job_id": f"job-{index % jobs:05d}",
                         "reason": "schedule", "outcome": outcome, "scheduled_at": scheduled,
                         "started_at": scheduled + rng.random() if ran else None,
                         "finished_at": scheduled + 2 if ran else None,
                         "duration": rng.expovariate(2.0) if ran else None,
                         "heartbeat_at": None, "error_type": "ValueError" if outcome == "error"
                         else None, "error_message": "bad" if outcome == "error" else None,
                         "traceback": None, "result": None, "host": "bench", "pid": 1})
        with history.engine.begin() as connection:
            history.write(connection, rows, [], [])


def scrape(client: Client) -> bytes:
    response = client.get("/scheduler/metrics", headers=AUTH)
    if response.status_code != 200:
        raise SystemExit(f"GET /scheduler/metrics gave {response.status_code}")
    return response.get_data()


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    logging.disable(logging.WARNING)
    jobs, runs = (1000, 20_000) if args.quick else (10_000, 1_000_000)
    rounds = args.rounds or (3 if args.quick else 7)
    scrapes = 5 if args.quick else 20
    report = Report("metrics", args, settings={"jobs": jobs, "runs": runs, "rounds": rounds,
                                               "scrapes_per_round": scrapes})
    with tempfile.TemporaryDirectory() as directory:
        started = time.monotonic()
        big, big_client = make(Path(directory) / "big.sqlite", jobs, runs)
        fill_seconds = time.monotonic() - started
        small, small_client = make(Path(directory) / "small.sqlite", 100, 0)
        text = scrape(big_client).decode()
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        successes = sum(OUTCOMES[index % len(OUTCOMES)] == "success" for index in range(runs))
        if f'scheduler_api_runs_total{{outcome="success"}} {successes}.0' not in text:
            raise SystemExit("the scrape does not count the runs written")
        times: dict[str, list[float]] = {"big": [], "floor": []}
        for round_index in range(rounds):
            for name, client in rotated([("big", big_client), ("floor", small_client)],
                                        round_index):
                per_scrape = [timed_ns(lambda client=client: scrape(client)) / 1e6
                              for _ in range(scrapes)]
                times[name].append(median(per_scrape))
        for scheduler in (big, small):
            scheduler.shutdown(wait=False)
    big_ms, floor_ms = median(times["big"]), median(times["floor"])
    report.table("scrape of GET /scheduler/metrics (ms, median of rounds)",
                 ["store", "jobs", "runs", "series", "scrape ms"],
                 [[f"{jobs} jobs, {runs} runs", jobs, runs, series, fmt(big_ms, 2)],
                  ["floor: 100 jobs, no runs", 100, 0, "-", fmt(floor_ms, 2)]],
                 notes=[f"filling the big store took {fill_seconds:.0f} s",
                        "SCHEDULER_METRICS_MAX_JOBS default: per-job series for 100 jobs"])
    report.raw("scrape_ms", times)
    report.target("median scrape, 10,000 jobs and 1,000,000 runs (ms)", big_ms, 100.0)
    # Report only: the floor has no runs, so about 250 fewer series to render.
    report.note(f"scrape big / floor: {fmt(big_ms / floor_ms if floor_ms else float('nan'))}")
    report.write()


if __name__ == "__main__":
    main()
