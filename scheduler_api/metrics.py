"""Prometheus metrics at ``{prefix}/metrics`` (text format; needs ``prometheus-client``, the
``metrics`` extra), behind the API's authentication::

    metrics = Metrics(scheduler)                 # an APScheduler; init_app makes it
    body, content_type = metrics.exposition()    # what GET {prefix}/metrics answers

Two sources, chosen so that every worker of ``gunicorn -w N`` answers the same (see
``docs/metrics.md``):

- **The shared store**, read at each scrape: runs ended by outcome (all jobs, and per job for
  at most ``SCHEDULER_METRICS_MAX_JOBS`` jobs), run duration and start lateness histograms,
  leader changes (all kept by the recorder in the history's tables,
  :mod:`scheduler_api.run_stats`), runs in progress, jobs by state, the scheduler's state and
  who leads. Indexed reads of small tables: never a scan of the run history.
- **This process's counters**, for what no store holds: authmw's answers (allowed, or denied
  by status and reason) and the API's 503s (store errors). Under several workers they are
  only whole with prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import func, select

from . import engine
from .history import RAN, RAN_ALL, RunHistory
from .run_stats import FINAL, HISTOGRAMS, INF, LEADER_CHANGES, SUM, bucket_key

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Default of SCHEDULER_METRICS_MAX_JOBS: jobs with series of their own (the first ones in
#: the order of their ids); the all-jobs totals count every job.
MAX_JOBS = 100
_STATES = ("running", "paused", "stopped")


class Observed(Protocol):
    """What the metrics read of an :class:`~scheduler_api.APScheduler`."""

    history: RunHistory | None

    @property
    def scheduler(self) -> BaseScheduler: ...
    @property
    def state_name(self) -> str: ...
    def leader(self) -> dict[str, Any] | None: ...


def metrics_enabled(settings: Mapping[str, Any]) -> bool:
    """SCHEDULER_METRICS_ENABLED: unset, on when prometheus-client is installed; True, an
    error without it; False, off."""
    wanted = settings.get("SCHEDULER_METRICS_ENABLED")
    installed = importlib.util.find_spec("prometheus_client") is not None
    if wanted and not installed:
        raise ValueError("SCHEDULER_METRICS_ENABLED is True but prometheus-client is not "
                         "installed (pip install 'authmw[metrics]')")
    return installed if wanted is None else bool(wanted)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class _ProcessCounters:
    """The counters kept by each process (one set per process: prometheus-client's
    multiprocess files are per process, not per app)."""

    _lock = threading.Lock()
    _made: _ProcessCounters | None = None

    def __init__(self) -> None:
        from prometheus_client import Counter

        self.answers = Counter(
            "scheduler_api_auth_answers", "Requests to the API that authmw answered: allowed, "
            "or denied with a status (400, 401, 403, 429, 500) and a reason",
            ["outcome", "code", "reason"], registry=None)
        self.store_errors = Counter(
            "scheduler_api_store_errors", "API answers 503: the job store was unavailable",
            registry=None)

    @classmethod
    def get(cls) -> _ProcessCounters:
        with cls._lock:
            if cls._made is None:
                cls._made = cls()
            return cls._made


def instrument(api: WSGIApplication, auth_options: Mapping[str, Any]
               ) -> tuple[WSGIApplication, dict[str, Any]]:
    """The API app counting what it answers, and authmw's options counting its refusals."""
    from authmw import plain_denial

    counters = _ProcessCounters.get()
    on_deny: Callable[..., Iterable[bytes]] = auth_options.get("on_deny", plain_denial)

    def counting_denial(environ: WSGIEnvironment, start_response: StartResponse, status: str,
                        headers: list[tuple[str, str]]) -> Iterable[bytes]:
        counters.answers.labels("denied", status[:3], environ.get("authmw.denied", "")).inc()
        return on_deny(environ, start_response, status, headers)

    return _CountingAPI(api, counters), {**auth_options, "on_deny": counting_denial}


class _CountingAPI:
    """The API app (``.api``), counting the requests authmw let through and the 503s."""

    def __init__(self, api: WSGIApplication, counters: _ProcessCounters) -> None:
        self.api = api
        self.counters = counters

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse
                 ) -> Iterable[bytes]:
        if "authmw.authorization" in environ:
            self.counters.answers.labels("allowed", "", "").inc()

        def counting_start(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Any:
            if status.startswith("503"):
                self.counters.store_errors.inc()
            return start_response(status, headers, exc_info)

        answer: Iterable[bytes] = self.api(environ, counting_start)
        return answer


class Metrics:
    """The registry of one scheduler's metrics."""

    def __init__(self, scheduler: Observed, max_jobs: int = MAX_JOBS) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_StoreCollector(scheduler, max_jobs))  # type: ignore[arg-type]
        if multiprocess():  # every process's counters, from its files
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            counters = _ProcessCounters.get()
            self.registry.register(counters.answers)
            self.registry.register(counters.store_errors)

    def exposition(self) -> tuple[bytes, str]:
        """The text format's body and content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StoreCollector:
    """Reads what every process shares, at each scrape."""

    def __init__(self, scheduler: Observed, max_jobs: int) -> None:
        self.scheduler = scheduler
        self.max_jobs = max_jobs

    def describe(self) -> list[Any]:
        return []  # nothing read at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        scheduler = self.scheduler
        if scheduler.history is not None:
            yield from self._history(scheduler.history, CounterMetricFamily, GaugeMetricFamily,
                                     HistogramMetricFamily)
        scheduled, paused = self._jobs()
        jobs = GaugeMetricFamily("scheduler_api_jobs", "Jobs in the job stores, by state",
                                 labels=["state"])
        jobs.add_metric(["scheduled"], scheduled)
        jobs.add_metric(["paused"], paused)
        yield jobs
        state = GaugeMetricFamily("scheduler_api_scheduler_state", "1 for the scheduler's "
                                  "state (shared by the processes on one store)",
                                  labels=["state"])
        current = scheduler.state_name
        for name in _STATES:
            state.add_metric([name], 1.0 if name == current else 0.0)
        yield state
        leader = GaugeMetricFamily("scheduler_api_leader", "1 for the process that runs the "
                                   "jobs (absent without an election)", labels=["host", "pid"])
        elected = scheduler.leader()
        if elected is not None:
            leader.add_metric([str(elected["host"]), str(elected["pid"])], 1.0)
        yield leader
        yield GaugeMetricFamily("scheduler_api_metrics_multiprocess", "1 when the per-process "
                                "counters are summed over every process (PROMETHEUS_MULTIPROC_"
                                "DIR); 0: only the answering process's", value=float(
                                    multiprocess()))

    def _history(self, history: RunHistory, counter: Any, gauge: Any,
                 histogram: Any) -> Iterator[Any]:
        counts, stats = history.counts, history.stats
        with history.engine.connect() as connection:
            totals = connection.execute(select(counts.c.outcome, counts.c.n).where(
                counts.c.scope == RAN_ALL, counts.c.job_id == "")).all()
            per_job = connection.execute(
                select(counts.c.job_id, counts.c.outcome, counts.c.n)
                .where(counts.c.scope == RAN).order_by(counts.c.job_id, counts.c.outcome)
                .limit(self.max_jobs * len(FINAL))).all()
            running = connection.execute(select(func.coalesce(func.sum(counts.c.n), 0)).where(
                counts.c.scope == "all", counts.c.job_id == "",
                counts.c.outcome == "running")).scalar_one()
            amounts = {(metric, bucket): value for metric, bucket, value in connection.execute(
                select(stats.c.metric, stats.c.bucket, stats.c.value))}
        runs = counter("scheduler_api_runs", "Runs ended, of every job, by outcome",
                       labels=["outcome"])
        ended = dict(totals)
        for outcome in FINAL:
            runs.add_metric([outcome], float(ended.get(outcome, 0)))
        yield runs
        job_runs = counter("scheduler_api_job_runs", "Runs ended, by job and outcome (the "
                           "first SCHEDULER_METRICS_MAX_JOBS job ids)",
                           labels=["job", "outcome"])
        shown: set[str] = set()
        for job_id, outcome, n in per_job:
            if job_id not in shown and len(shown) >= self.max_jobs:
                break
            shown.add(job_id)
            job_runs.add_metric([job_id, outcome], float(n))
        yield job_runs
        yield gauge("scheduler_api_runs_in_progress", "Runs started and not ended",
                    value=float(running))
        for metric, bounds in HISTOGRAMS.items():
            cumulative, buckets = 0.0, []
            for key in [*map(bucket_key, bounds), INF]:
                cumulative += amounts.get((metric, key), 0.0)
                buckets.append((key, cumulative))
            name, text = {
                "duration": ("scheduler_api_run_duration_seconds", "How long runs took"),
                "lateness": ("scheduler_api_run_lateness_seconds", "How long after their "
                             "scheduled time runs started (scheduled runs)"),
            }[metric]
            family = histogram(name, text)
            family.add_metric([], buckets, amounts.get((metric, SUM), 0.0))
            yield family
        yield counter("scheduler_api_leader_changes", "Times a process became the leader",
                      value=amounts.get(LEADER_CHANGES, 0.0))

    def _jobs(self) -> tuple[int, int]:
        """(scheduled, paused) jobs: counted by the database in SQL stores."""
        scheduled = paused = 0
        for store in engine.jobstores(self.scheduler.scheduler).values():
            if isinstance(store, SQLAlchemyJobStore):
                table = store.jobs_t
                with store.engine.connect() as connection:
                    total, timed = connection.execute(select(
                        func.count(), func.count(table.c.next_run_time)).select_from(table)
                    ).one()
                stopped = total - timed  # count(column) leaves out the NULLs: paused jobs
            else:
                jobs = store.get_all_jobs()
                total, stopped = len(jobs), sum(job.next_run_time is None for job in jobs)
            scheduled += total - stopped
            paused += stopped
        return scheduled, paused
