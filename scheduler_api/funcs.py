"""Which callables an API caller may schedule: only those the operator allowed.

Flask-APScheduler hands any ``module:attr`` to APScheduler's resolver, so an API caller can
run ``os:system``. Here a reference is checked *before* its module is imported::

    policy = FuncPolicy(["tasks:*", "reports:nightly"])
    policy.check("os:system")  # raises ForbiddenFunc; ``os`` is never imported for it

Rules are ``module:name`` (exactly that reference) or ``module:*`` (any callable *defined* in
that module, by a plain name: never a dotted path through it such as ``tasks:os.system``, nor
a name the module merely imported).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterable

logger = logging.getLogger("scheduler_api")

_REFERENCE_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_PLAIN_NAME_RE = re.compile(r"[A-Za-z_]\w*")


class ForbiddenFunc(Exception):
    """The reference is not one the operator allowed (or is not a reference at all)."""


class FuncPolicy:
    """The allow-list of callables; ``allow_any=True`` turns it off (dangerous)."""

    def __init__(self, rules: Iterable[str] = (), allow_any: bool = False) -> None:
        self.exact: set[str] = set()
        self.modules: set[str] = set()
        self.allow_any = allow_any
        # References a module rule has let through: each is looked up once, not per request.
        self._found_in_modules: set[str] = set()
        for rule in rules:
            self.allow(rule)
        if allow_any:
            logger.warning("SCHEDULER_API_ALLOW_ANY_FUNC is on: any API caller can schedule "
                           "any importable callable, such as os:system")

    def allow(self, rule: str) -> None:
        """Add ``module:name`` or ``module:*``; ValueError for anything else."""
        module, _, name = rule.partition(":") if isinstance(rule, str) else ("", "", "")
        if name == "*" and _REFERENCE_RE.fullmatch(f"{module}:x"):
            self.modules.add(module)
        elif _REFERENCE_RE.fullmatch(rule):
            self.exact.add(rule)
        else:
            raise ValueError(f"allowed func {rule!r} must be 'module:name' or 'module:*'")

    def check(self, reference: object) -> str:
        """Return ``reference`` if it may be scheduled, else raise ForbiddenFunc."""
        if not isinstance(reference, str) or not _REFERENCE_RE.fullmatch(reference):
            raise ForbiddenFunc("func must be a 'module:callable' reference")
        if self.allow_any or reference in self.exact or reference in self._found_in_modules:
            return reference
        module_name, _, name = reference.partition(":")
        if module_name in self.modules and _PLAIN_NAME_RE.fullmatch(name):
            # Only now, for an allowed module, may it be imported to look the name up.
            module = importlib.import_module(module_name)
            target = getattr(module, name, None)
            if callable(target) and getattr(target, "__module__", None) == module_name:
                self._found_in_modules.add(reference)
                return reference
        raise ForbiddenFunc(f"func {reference!r} is not allowed (see SCHEDULER_API_ALLOWED_FUNCS)")
