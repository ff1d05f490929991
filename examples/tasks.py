"""The task module the seed's requests name (``tasks:test_task``, ``tasks:my_task``)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def test_task() -> None:
    logger.info("test_task ran")


def my_task() -> None:
    logger.info("my_task ran")
