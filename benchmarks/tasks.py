"""Callables the scheduler benchmarks schedule.

``noop`` is never run (bench_scheduler_api's schedulers stay paused); ``stamp`` is run by
bench_run_history's schedulers and notes when each run's body started.
"""

from __future__ import annotations

import time

#: (key, time.time() when the body started), one per run of ``stamp``, in start order.
STAMPS: list[tuple[str, float]] = []


def noop() -> None:
    """Do nothing."""


def stamp(key: str) -> None:
    """Note that a run of ``key`` started now (list.append is atomic: no lock needed)."""
    STAMPS.append((key, time.time()))


def burn(iterations: int) -> int:
    """Pure Python arithmetic, holding the GIL throughout (bench_celery: ~50 ms a run)."""
    total = 0
    for number in range(iterations):
        total += number * number % 7
    return total
