"""Callables the scheduler_api tests schedule (allowed as ``tests.tasks:*``)."""

from __future__ import annotations

import threading
import time
from os import system  # noqa: F401 - imported, not defined here: must stay forbidden

runs: list[tuple[str, tuple[object, ...]]] = []
ran = threading.Event()


def record(label: str = "ran", *rest: object) -> None:
    runs.append((label, rest))
    ran.set()


def slow(seconds: float = 1.0) -> None:
    time.sleep(seconds)


class Helpers:
    @staticmethod
    def nested() -> None:
        """Reachable only by a dotted path: never allowed by ``tests.tasks:*``."""
