"""Throttling of failed logins, per client address and per username.

After ``max_failures`` failed attempts within ``window`` seconds from one address, or for one
username, further attempts get ``429 Too Many Requests`` with ``Retry-After`` until the window
ends, decided *before* the callback runs, so a guessing client costs no password hashing::

    throttle = Throttle(max_failures=10, window=60)
    app = AuthMiddleware(app, auth=HTTPBasicAuth(), authenticate=check, throttle=throttle)

A stranger guessing a username from many addresses must not lock its owner out: an address
that has logged in as a user before (within ``trusted_for``) is held only by its own address
count, not by that username's. Usernames and trust are counted per ``scope`` (the callback
that checks them: ``admin`` of one user store is not ``admin`` of another). The counts live
in a :class:`ThrottleStore`, keyed by a fixed-size digest (a 6 KB username costs what a short
one does): in process by default (per worker, bounded in bytes), or in Redis
(:class:`RedisThrottleStore`) so that several workers and hosts share them.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol


class ThrottleStore(Protocol):
    """Fixed windows of failure counts, and remembered keys, keyed by short str."""

    def add_failure(self, key: str, window: float) -> None: ...
    def blocked_for(self, key: str, max_failures: int) -> float: ...
    def reset(self, key: str) -> None: ...
    def remember(self, key: str, ttl: float, group: str) -> None: ...
    def remembers(self, key: str) -> bool: ...


_STORE_METHODS = ("add_failure", "blocked_for", "reset", "remember", "remembers")


def throttle_key(kind: str, *parts: str) -> str:
    """``kind`` and a 128-bit digest of ``parts``: 34 characters whatever the parts' size."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))  # ("ab", "c") and ("a", "bc") differ
        digest.update(data)
    return f"{kind}:{digest.hexdigest()}"


class MemoryThrottleStore:
    """Counts in this process: at most ``max_bytes`` of failure windows and
    ``max_remembered`` remembered keys.

    Keys are fixed-size digests, so an entry costs at most :data:`ENTRY_BYTES` whatever the
    username, and ``max_bytes`` bounds the store's memory. When it is full, the window
    failed or looked at longest ago goes first: a blocked key that is still being tried stays.
    Remembered keys (addresses that logged in) are kept apart, so that a flood of failures
    cannot push them out, and are never pushed out by new ones either: a full set takes no
    more until some expire. One ``group`` (one user) holds at most ``max_per_group`` of them,
    its oldest going first, so that one account cannot fill the set.
    """

    #: An entry's cost in memory, an upper bound (tracemalloc measures ~250 bytes).
    ENTRY_BYTES = 320

    def __init__(self, max_bytes: int = 16 * 2**20, max_remembered: int = 10_000,
                 clock: Any = time.monotonic, max_per_group: int = 16) -> None:
        if max_bytes < self.ENTRY_BYTES or max_remembered < 0 or max_per_group < 1:
            raise ValueError(f"max_bytes must be at least {self.ENTRY_BYTES}, "
                             "max_remembered >= 0 and max_per_group >= 1")
        self.max_bytes = max_bytes
        self.max_remembered = max_remembered
        self.max_per_group = max_per_group
        self.clock = clock
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._remembered: dict[str, tuple[float, str]] = {}
        self._groups: dict[str, OrderedDict[str, None]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._windows) + len(self._remembered)

    def add_failure(self, key: str, window: float) -> None:
        now = self.clock()
        max_keys = self.max_bytes // self.ENTRY_BYTES
        with self._lock:
            ends, count = self._windows.pop(key, (0.0, 0))
            if ends <= now:
                ends, count = now + window, 0
            self._windows[key] = (ends, count + 1)
            while len(self._windows) > max_keys:
                self._windows.popitem(last=False)

    def blocked_for(self, key: str, max_failures: int) -> float:
        ends, count = self._windows.get(key, (0.0, 0))
        remaining = float(ends - self.clock())
        if count < max_failures or remaining <= 0:
            return 0.0
        with self._lock:
            if key in self._windows:
                self._windows.move_to_end(key)  # still tried: not the first to go when full
        return remaining

    def reset(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def remember(self, key: str, ttl: float, group: str) -> None:
        now = self.clock()
        with self._lock:
            members = self._groups.get(group, OrderedDict())
            if key not in self._remembered:
                if len(members) >= self.max_per_group:
                    self._forget(next(iter(members)))  # this user's oldest
                elif len(self._remembered) >= self.max_remembered:
                    for expired in [name for name, (ends, _) in self._remembered.items()
                                    if ends <= now]:
                        self._forget(expired)
                    if len(self._remembered) >= self.max_remembered:
                        return  # full of live trust: keep it rather than let newcomers in
            self._remembered[key] = (now + ttl, group)
            members = self._groups.setdefault(group, members)
            members[key] = None
            members.move_to_end(key)

    def _forget(self, key: str) -> None:
        _, group = self._remembered.pop(key)
        members = self._groups[group]
        del members[key]
        if not members:
            del self._groups[group]

    def remembers(self, key: str) -> bool:
        return bool(self._remembered.get(key, (0.0, ""))[0] > self.clock())


class RedisThrottleStore:
    """Counts in Redis, shared by every worker and host: ``INCR`` with an expiry per window.

    :param client: a ``redis.Redis`` client (``redis.Redis.from_url("redis://...")``).
    """

    def __init__(self, client: Any, namespace: str = "authmw:throttle:") -> None:
        self.client = client
        self.namespace = namespace

    def add_failure(self, key: str, window: float) -> None:
        name = self.namespace + key
        with self.client.pipeline() as pipe:
            pipe.incr(name)
            pipe.expire(name, math.ceil(window), nx=True)  # the first failure opens the window
            pipe.execute()

    def blocked_for(self, key: str, max_failures: int) -> float:
        name = self.namespace + key
        with self.client.pipeline() as pipe:
            pipe.get(name)
            pipe.pttl(name)
            count, ttl_ms = pipe.execute()
        if count is None or int(count) < max_failures or ttl_ms <= 0:
            return 0.0
        return float(ttl_ms) / 1000

    def reset(self, key: str) -> None:
        self.client.delete(self.namespace + key)

    def remember(self, key: str, ttl: float, group: str) -> None:
        # Redis holds as many as it is given (each expires): no set to fill, no group limit.
        self.client.set(self.namespace + key, b"1", px=max(1, math.ceil(ttl * 1000)))

    def remembers(self, key: str) -> bool:
        return bool(self.client.exists(self.namespace + key))


class Throttle:
    """The policy: how many failures in how long, counted per address and per username.

    :param trusted_for: seconds during which an address that logged in as a user is not held
        by that username's count (its own address count still holds it); 0 turns it off.
    """

    def __init__(self, max_failures: int = 10, window: float = 60.0,
                 store: ThrottleStore | None = None, per_address: bool = True,
                 per_username: bool = True, trusted_for: float = 30 * 86400) -> None:
        if max_failures < 1 or window <= 0 or trusted_for < 0:
            raise ValueError("max_failures must be >= 1, window > 0 and trusted_for >= 0")
        self.max_failures = max_failures
        self.window = window
        self.store: ThrottleStore = store if store is not None else MemoryThrottleStore()
        missing = [name for name in _STORE_METHODS
                   if not callable(getattr(self.store, name, None))]
        if missing:
            raise TypeError(f"throttle store {type(self.store).__name__} lacks "
                            f"{', '.join(missing)}()")
        self.per_address = per_address
        self.per_username = per_username
        self.trusted_for = trusted_for

    def keys(self, address: str | None, username: str | None, scope: str = "") -> list[str]:
        """The counts that hold a request from ``address`` as ``username`` of ``scope``."""
        keys = []
        if self.per_address and address:
            keys.append(throttle_key("a", address))
        if self.per_username and username is not None and not (
                self.trusted_for and address
                and self.store.remembers(throttle_key("t", scope, username, address))):
            keys.append(throttle_key("u", scope, username))
        return keys

    def retry_after(self, keys: list[str]) -> int:
        """Whole seconds to wait (0: not throttled)."""
        waits = [self.store.blocked_for(key, self.max_failures) for key in keys]
        return math.ceil(max(waits, default=0.0))

    def failed(self, keys: list[str]) -> None:
        for key in keys:
            self.store.add_failure(key, self.window)

    def succeeded(self, address: str | None, username: str | None, scope: str = "") -> None:
        """Trust ``address`` for ``username`` of ``scope`` from now on.

        The username's count is not cleared: an owner who logs in often would otherwise
        give a guesser spread over many addresses a fresh allowance each time.
        """
        if self.per_username and self.trusted_for and address and username is not None:
            self.store.remember(throttle_key("t", scope, username, address), self.trusted_for,
                                throttle_key("u", scope, username))
