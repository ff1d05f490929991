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


# -- for the run history tests (tests/test_run_history*.py) --------------------------------

gate = threading.Event()


def wait_for_gate(timeout: float = 10.0) -> str:
    """Runs until the test opens ``gate`` (at most ``timeout`` seconds)."""
    gate.wait(timeout)
    return "gate opened"


def give(value: object) -> object:
    return value


def give_text(size: int) -> str:
    return "r" * size


def fail(message: str = "boom") -> None:
    raise RuntimeError(message)


def fail_with_text(size: int) -> None:
    raise RuntimeError("m" * size)


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def give_unprintable() -> Unprintable:
    return Unprintable()


def fail_unprintably() -> None:
    raise UnprintableError("hidden")


class TreacherousText(str):
    """A str whose own methods raise: what a broken __str__ or __repr__ may return."""

    def __len__(self) -> int:
        raise RuntimeError("no len")

    def __str__(self) -> str:
        raise RuntimeError("no str")


class NamelessClass(type):
    """A metaclass whose classes' names cannot be read."""

    def __getattribute__(cls, name: str) -> object:
        if name in ("__name__", "__qualname__"):
            raise RuntimeError("no name")
        return super().__getattribute__(name)


class TreacherousError(Exception, metaclass=NamelessClass):
    def __str__(self) -> str:
        return TreacherousText("a treacherous message")


class NamelessUnprintable(metaclass=NamelessClass):
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def fail_treacherously() -> None:
    raise TreacherousError()


def give_nameless_unprintable() -> NamelessUnprintable:
    return NamelessUnprintable()


class Unstorable:
    """A repr no database takes as it is: a NUL and an unpaired surrogate."""

    def __repr__(self) -> str:
        return "nul\x00 and \ud800 surrogate"


def give_unstorable() -> Unstorable:
    return Unstorable()


def fail_unstorably() -> None:
    raise ValueError("nul\x00 and \ud800 surrogate")


LongNamedError = type("E" * 300, (Exception,), {})


def fail_with_long_type_name() -> None:
    raise LongNamedError("a class name of 300 characters")


def fail_with_request() -> None:
    """Raises with whatever of the current request a job's code could reach."""
    import authmw
    from authmw.context import current_environ_var

    environ = current_environ_var.get()
    raise RuntimeError(f"request {authmw.request!r}, environ {environ!r}")
