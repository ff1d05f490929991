"""Runs on Celery workers vs the leader's thread pool: CPU-bound throughput, added latency.

Two measurements, every variant in every round (RabbitMQ on 127.0.0.1, one SQLite store per
variant and round, the leader in this process, each Celery worker a process of its own with
one pool process):

1. A CPU-bound job (``benchmarks.tasks:burn``, calibrated to about 50 ms of pure Python) run
   200 times (``run_job``): from the first submission to the last run's end (as recorded in
   the run history), in the leader's thread pool (scheduler_api's default executor, 10
   threads) and on 2 and on 4 Celery workers.
2. Start lateness on idle workers: date jobs due one at a time, 150 ms apart; the run
   history's start minus the scheduled time, Celery (2 idle workers) vs the thread pool. The
   latency Celery adds is the difference of the medians.

    python benchmarks/bench_celery.py [--quick] [--rounds N]

Needs RabbitMQ (``BENCH_CELERY_BROKER``, default amqp://guest:guest@127.0.0.1:5672//).
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import tasks
from benchmarks.harness import ROOT, Report, fmt, median, paired_ratios, parser, rotated
from scheduler_api import APScheduler

BROKER = os.environ.get("BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
SIGNING_KEY = "bench-celery-signing-key"
RUNS = 200
RUN_SECONDS = 0.05
LATENESS_FIRES = 30
LATENESS_SPACING = 0.15
WORKER_COUNTS = (2, 4)


def calibrate(seconds: float) -> int:
    """Iterations of ``tasks.burn`` that take about ``seconds`` here (the fastest of five)."""
    probe = 200_000
    fastest = min(_timed(probe) for _ in range(5))
    return max(1, int(probe * seconds / fastest))


def _timed(iterations: int) -> float:
    start = time.perf_counter()
    tasks.burn(iterations)
    return time.perf_counter() - start


@contextmanager
def workers(count: int, store: str, queue: str, logs: Path) -> Iterator[None]:
    """``count`` Celery workers (one pool process each) reading ``queue``, ready."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCHEDULER_CELERY_BROKER_URL": BROKER,
           "SCHEDULER_CELERY_SIGNING_KEY": SIGNING_KEY,
           "SCHEDULER_CELERY_QUEUE": queue, "SCHEDULER_JOBSTORE_URL": store,
           "SCHEDULER_API_ALLOWED_FUNCS": "benchmarks.tasks:*"}
    processes = []
    try:
        for index in range(count):
            log = logs / f"{queue}-{index}.log"
            with open(log, "wb") as output:
                processes.append((subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "scheduler_api.celery_worker",
                     "worker", "--concurrency", "1", "--hostname", f"b{index}-{queue}@%h",
                     "--loglevel", "info", "--without-gossip", "--without-mingle",
                     "--without-heartbeat"], cwd=ROOT, env=env, stdout=output,
                    stderr=subprocess.STDOUT), log))
        deadline = time.monotonic() + 60
        while not all(b"ready." in log.read_bytes() for _, log in processes):
            if time.monotonic() > deadline or any(p.poll() is not None for p, _ in processes):
                raise RuntimeError("a celery worker did not start: see " + str(logs))
            time.sleep(0.1)
        yield
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def leader(store: str, queue: str | None) -> Iterator[APScheduler]:
    """scheduler_api in this process: its thread pool (``queue`` None) or Celery."""
    config: dict[str, Any] = {"SCHEDULER_JOBSTORE_URL": store,
                              "SCHEDULER_API_ALLOWED_FUNCS": ["benchmarks.tasks:*"]}
    if queue is not None:
        config.update(SCHEDULER_EXECUTOR="celery", SCHEDULER_CELERY_BROKER_URL=BROKER,
                      SCHEDULER_CELERY_QUEUE=queue, SCHEDULER_CELERY_SIGNING_KEY=SIGNING_KEY)
    scheduler = APScheduler()
    scheduler.init_app(None, config=config)
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.shutdown()


def ended_runs(scheduler: APScheduler, job_id: str, count: int, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        runs = scheduler.get_runs(job_id, limit=count + 10).runs
        done = [run for run in runs if run.finished_at is not None]
        if len(done) >= count:
            return done
        if time.monotonic() > deadline:
            raise RuntimeError(f"{job_id}: {len(done)} of {count} runs ended in {timeout} s")
        time.sleep(0.05)


def warm_up(scheduler: APScheduler, count: int) -> None:
    """A few runs first: every pool process has opened the store and imported the tasks."""
    far = datetime.now(timezone.utc) + timedelta(days=1)
    scheduler.add_job("warm", "benchmarks.tasks:noop", trigger="date", run_date=far,
                      max_instances=count * 4)
    for _ in range(count * 4):
        scheduler.run_job("warm")
    ended_runs(scheduler, "warm", count * 4, timeout=60)
    scheduler.remove_job("warm")


def throughput(scheduler: APScheduler, runs: int, iterations: int) -> float:
    """Seconds from the first of ``runs`` submissions to the last run's end."""
    far = datetime.now(timezone.utc) + timedelta(days=1)
    scheduler.add_job("burn", "benchmarks.tasks:burn", args=[iterations], trigger="date",
                      run_date=far, max_instances=runs)
    start = time.time()
    for _ in range(runs):
        scheduler.run_job("burn")
    done = ended_runs(scheduler, "burn", runs, timeout=120 + runs * RUN_SECONDS * 4)
    assert {run.outcome for run in done} == {"success"}, {run.outcome for run in done}
    return max(run.finished_at for run in done).timestamp() - start


def lateness(scheduler: APScheduler, fires: int) -> list[float]:
    """Start minus scheduled time (ms) of ``fires`` date jobs due one at a time."""
    first = datetime.now(timezone.utc) + timedelta(seconds=1)
    for index in range(fires):
        scheduler.add_job(f"due-{index}", "benchmarks.tasks:noop", trigger="date",
                          run_date=first + timedelta(seconds=index * LATENESS_SPACING))
    late = []
    for index in range(fires):
        run, = ended_runs(scheduler, f"due-{index}", 1, timeout=30)
        late.append((run.started_at - run.scheduled_at).total_seconds() * 1000)
    return late


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    runs = 40 if args.quick else RUNS
    fires = 10 if args.quick else LATENESS_FIRES
    logging.getLogger("authmw").setLevel(logging.ERROR)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    iterations = calibrate(RUN_SECONDS)
    report = Report("celery", args, {"rounds": rounds, "runs": runs,
                                     "burn_iterations": iterations, "lateness_fires": fires,
                                     "worker_counts": WORKER_COUNTS, "broker": "RabbitMQ"})
    variants = ["threadpool", *(f"celery-{count}" for count in WORKER_COUNTS)]
    elapsed: dict[str, list[float]] = {variant: [] for variant in variants}
    late: dict[str, list[float]] = {"threadpool": [], "celery-2": []}
    with tempfile.TemporaryDirectory(prefix="bench_celery_") as name:
        tmp = Path(name)
        for round_index in range(rounds):
            for variant in rotated(variants, round_index):
                store = f"sqlite:///{tmp / f'{variant}-{round_index}.sqlite'}"
                queue = f"bench-{uuid.uuid4().hex[:8]}"
                with ExitStack() as stack:
                    celery = variant != "threadpool"
                    scheduler = stack.enter_context(leader(store, queue if celery else None))
                    if celery:
                        count = int(variant.split("-")[1])
                        stack.enter_context(workers(count, store, queue, tmp))
                        warm_up(scheduler, count)
                    elapsed[variant].append(throughput(scheduler, runs, iterations))
                    if variant in late:
                        late[variant].append(median(lateness(scheduler, fires)))
                print(f"round {round_index + 1} {variant}: {elapsed[variant][-1]:.2f} s",
                      flush=True)

    ratios = {variant: paired_ratios(elapsed[variant], elapsed["threadpool"])
              for variant in variants[1:]}
    report.table(
        f"1. {runs} runs of a CPU-bound job (~{RUN_SECONDS * 1000:.0f} ms each), first "
        f"submission to last end (s; median of {rounds} rounds)",
        ["executor", "seconds", "/ thread pool (median of per-round ratios)"],
        [["leader's thread pool (10 threads)", fmt(median(elapsed["threadpool"])), "1.00"],
         *[[f"{count} Celery workers", fmt(median(elapsed[f"celery-{count}"])),
            fmt(median(ratios[f"celery-{count}"]), 3)] for count in WORKER_COUNTS]],
        notes=[f"{os.cpu_count()} CPUs here: more worker processes than CPUs cannot run more "
               "of a CPU-bound job at once"])
    added = [celery - pool for celery, pool in zip(late["celery-2"], late["threadpool"],
                                                   strict=True)]
    report.table(
        f"2. Start lateness, {fires} date jobs due one at a time (ms; per round the median)",
        ["executor", "lateness per round", "median"],
        [["leader's thread pool", ", ".join(fmt(value) for value in late["threadpool"]),
          fmt(median(late["threadpool"]))],
         ["2 idle Celery workers", ", ".join(fmt(value) for value in late["celery-2"]),
          fmt(median(late["celery-2"]))]])
    report.raw("elapsed", elapsed)
    report.raw("lateness_ms", late)
    report.target("2 Celery workers / thread pool, 200 CPU-bound runs",
                  median(ratios["celery-2"]), 0.6)
    report.target("4 Celery workers / thread pool, 200 CPU-bound runs",
                  median(ratios["celery-4"]), 0.35)
    report.target("latency Celery adds, due to start on an idle worker (ms, median)",
                  statistics.median(added), 10)
    report.write()


if __name__ == "__main__":
    main()
