"""Example tasks the demo server allows (``scheduler_api.example_tasks:*``)."""

from __future__ import annotations

import logging

logger = logging.getLogger("scheduler_api.example_tasks")


def say_hello(name: str = "world") -> str:
    """Log a greeting; the smallest job there is."""
    logger.info("hello, %s", name)
    return f"hello, {name}"


def add(x: float, y: float) -> float:
    """Add two numbers and log the result."""
    result = x + y
    logger.info("%s + %s = %s", x, y, result)
    return result
