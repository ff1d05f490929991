"""What the metrics count, taken from the rows the recorder writes: monotonic totals and
histogram buckets, added in the same transaction as the runs (:mod:`scheduler_api.history`).

The history's own counts go down when old runs are pruned; Prometheus counters must not.
These never do: a run counts once, when it reaches its outcome, and stays counted::

    totals, stats = stat_deltas(inserts, finishes, events)
    totals[("report", "success")]          # runs of job "report" that ended in success
    stats[("duration", "0.5")]             # runs that took more than 0.1 s and at most 0.5 s
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

#: Upper bounds (seconds) of the buckets of run durations and of start lateness (how long
#: after its scheduled time a run started); each histogram also has ``+Inf``.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
HISTOGRAMS = {"duration": DURATION_BUCKETS, "lateness": LATENESS_BUCKETS}
#: The bucket keys besides the bounds: the sum of what was observed, and ``+Inf``.
SUM, INF = "sum", "+Inf"
#: The counter of leader changes (a stat with this metric and an empty bucket).
LEADER_CHANGES = ("leader_changes", "")
#: Outcomes a run ends with (``running`` is not one).
FINAL = ("success", "error", "missed", "skipped", "lost")


def bucket_key(bound: float) -> str:
    return f"{bound:g}"


Stats = defaultdict[tuple[str, str], float]


def observe(stats: Stats, metric: str, value: float) -> None:
    """Count ``value`` in the first bucket of ``metric`` that holds it, and in its sum."""
    bounds = HISTOGRAMS[metric]
    index = bisect.bisect_left(bounds, value)
    stats[metric, bucket_key(bounds[index]) if index < len(bounds) else INF] += 1
    stats[metric, SUM] += max(0.0, value)


def stat_deltas(inserts: Iterable[Mapping[str, Any]], finishes: Iterable[Mapping[str, Any]],
                events: Iterable[Mapping[str, Any]] = ()
                ) -> tuple[Counter[tuple[str, str]], Stats]:
    """((job id, outcome) -> runs ended, (metric, bucket) -> amount) for one write.

    Each run is inserted once (as it starts, or ended already) and finished at most once, so
    its lateness is counted with its insert and its outcome and duration when it ends.
    """
    inserts, finishes = list(inserts), list(finishes)
    totals: Counter[tuple[str, str]] = Counter()
    stats: Stats = defaultdict(float)
    for row in inserts:
        if row.get("started_at") is not None and row.get("reason") == "schedule":
            observe(stats, "lateness", row["started_at"] - row["scheduled_at"])
    for row in [*inserts, *finishes]:
        if row["outcome"] in FINAL:
            totals[row["job_id"], row["outcome"]] += 1
            if row.get("duration") is not None:
                observe(stats, "duration", row["duration"])
    for event in events:
        if event.get("kind") == "leader_changed":
            stats[LEADER_CHANGES] += 1
    return totals, stats
