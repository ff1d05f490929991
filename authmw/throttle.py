"""Throttling of failed logins, per client address and per username.

After ``max_failures`` failed attempts within ``window`` seconds from one address, or for one
username, further attempts get ``429 Too Many Requests`` with ``Retry-After`` until the window
ends, decided *before* the callback runs, so a guessing client costs no password hashing::

    throttle = Throttle(max_failures=10, window=60)
    app = AuthMiddleware(app, auth=HTTPBasicAuth(), authenticate=check, throttle=throttle)

The counts live in a :class:`ThrottleStore`: in process by default (per worker), or in Redis
(:class:`RedisThrottleStore`) so that several workers and hosts share them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol


class ThrottleStore(Protocol):
    """Fixed windows of failure counts, keyed by str."""

    def add_failure(self, key: str, window: float) -> None: ...
    def blocked_for(self, key: str, max_failures: int) -> float: ...
    def reset(self, key: str) -> None: ...


class MemoryThrottleStore:
    """Counts in this process, at most ``max_keys`` of them (the oldest windows go first)."""

    def __init__(self, max_keys: int = 100_000, clock: Any = time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def add_failure(self, key: str, window: float) -> None:
        now = self.clock()
        with self._lock:
            ends, count = self._windows.pop(key, (0.0, 0))
            if ends <= now:
                ends, count = now + window, 0
            self._windows[key] = (ends, count + 1)
            while len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)

    def blocked_for(self, key: str, max_failures: int) -> float:
        ends, count = self._windows.get(key, (0.0, 0))
        remaining = ends - self.clock()
        return remaining if count >= max_failures and remaining > 0 else 0.0

    def reset(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)


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


class Throttle:
    """The policy: how many failures in how long, counted per address and per username."""

    def __init__(self, max_failures: int = 10, window: float = 60.0,
                 store: ThrottleStore | None = None, per_address: bool = True,
                 per_username: bool = True) -> None:
        if max_failures < 1 or window <= 0:
            raise ValueError("max_failures must be >= 1 and window > 0")
        self.max_failures = max_failures
        self.window = window
        self.store: ThrottleStore = store if store is not None else MemoryThrottleStore()
        self.per_address = per_address
        self.per_username = per_username

    def keys(self, address: str | None, username: str | None) -> list[str]:
        keys = []
        if self.per_address and address:
            keys.append("a:" + address)
        if self.per_username and username is not None:
            keys.append("u:" + username)
        return keys

    def retry_after(self, keys: list[str]) -> int:
        """Whole seconds to wait (0: not throttled)."""
        waits = [self.store.blocked_for(key, self.max_failures) for key in keys]
        return math.ceil(max(waits, default=0.0))

    def failed(self, keys: list[str]) -> None:
        for key in keys:
            self.store.add_failure(key, self.window)

    def succeeded(self, username: str | None) -> None:
        """A good login clears its username's count (not its address's)."""
        if self.per_username and username is not None:
            self.store.reset("u:" + username)
