"""Per-prefix rules: which handler and callback guard a prefix, and which roles each method
needs there.

Each reading of a path selects the rule of its longest matching prefix; a rule's ``auth`` and
``authenticate`` default to the middleware's own. A method a rule's ``roles`` do not list
(and no ``"*"``) needs what the enclosing rule asks for it, and is refused where no rule
lists it. A user authenticated but without a required role gets a 403, not a 401::

    Rule("/scheduler", roles={"GET": {"reader", "admin"}, "*": "admin"})
    Rule("/api", auth=HTTPTokenAuth(), authenticate=check_token)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .paths import normalize_prefix

if TYPE_CHECKING:
    from .auth import AuthenticateCallback, HTTPAuth


def roles_of(user: object) -> frozenset[str]:
    """The roles of what the callback returned: a ``roles`` attribute or key, else none."""
    roles = user.get("roles") if isinstance(user, Mapping) else getattr(user, "roles", None)
    if isinstance(roles, str):
        return frozenset((roles,))
    return frozenset(roles) if isinstance(roles, Collection) else frozenset()


@dataclass
class Rule:
    """How to guard one prefix.

    :param prefix: the path prefix (validated like the middleware's prefixes).
    :param auth: the handler for this prefix; None: the middleware's.
    :param authenticate: the callback for this prefix; None: the middleware's.
    :param roles: method (or ``"*"`` for any other) to the roles allowed to use it; a user
        needs one of them (``HEAD``, unless listed, needs ``GET``'s). A method not listed
        needs what the enclosing rule (the longest shorter prefix with the same callback)
        asks, and is refused (403) where no such rule lists it. None: this rule asks for no
        role (the enclosing ones may); where no rule has ``roles``, any authenticated user.
    :param get_roles: how to read the roles of the callback's result (default
        :func:`roles_of`).
    """

    prefix: str
    auth: HTTPAuth | None = None
    authenticate: AuthenticateCallback | None = None
    roles: Mapping[str, str | Collection[str]] | None = None
    get_roles: Callable[[Any], Collection[str]] = roles_of
    _required: dict[str, frozenset[str]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.prefix = normalize_prefix(self.prefix)
        for method, allowed in (self.roles or {}).items():
            if not isinstance(method, str) or not method:
                raise ValueError(f"rule {self.prefix}: a method must be a non-empty str")
            allowed_set = frozenset((allowed,) if isinstance(allowed, str) else allowed)
            if not allowed_set:
                raise ValueError(f"rule {self.prefix}: {method} allows no role at all")
            self._required[method.upper()] = allowed_set

    def required_roles(self, method: str) -> frozenset[str] | None:
        """The roles (any one suffices) this rule lists for ``method``; None: it lists none
        (the enclosing rule decides). ``HEAD`` not listed is ``GET``'s: werkzeug, Flask and
        Django answer it with the GET view."""
        required = self._required.get(method)
        if required is None and method == "HEAD":
            required = self._required.get("GET")
        return required if required is not None else self._required.get("*")
