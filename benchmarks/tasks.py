"""Callables the scheduler benchmarks schedule (never run: the schedulers stay paused)."""

from __future__ import annotations


def noop() -> None:
    """Do nothing."""

