"""A cache of verified credentials, for any ``authenticate`` callback.

Basic auth re-sends the password on every request, so a slow hash (bcrypt cost 12: 240 ms)
would be paid every time; :class:`CredentialCache` remembers successes briefly, keyed so that
another password never hits (Kinto's bug), and holds nothing to crack a password from::

    app = AuthMiddleware(app, auth=HTTPBasicAuth(), authenticate=cached(check_user))
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .auth import Authorization, check_callback


class CredentialCache:
    """Successful verifications, remembered ``ttl`` seconds so Basic auth is not re-hashed.

    Basic auth sends the password with every request: at 240 ms a verification, one core
    serves 4 requests a second. An entry is keyed by HMAC-SHA256, under a random key made
    for this cache, of everything the verdict depends on (the store, the username, the
    password, the stored hash), so another password never hits, and the cache holds neither
    a password nor anything to crack one from offline. Failures are never cached. At most
    ``maxsize`` entries are kept, least recently used first out. ``ttl=0`` or ``maxsize=0``
    turns it off. Thread-safe.
    """

    def __init__(self, ttl: float = 60.0, maxsize: int = 1024) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._key = os.urandom(32)
        self._entries: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, fields: tuple[str, ...], verify: Callable[[], Any], *,
              remember: bool = True) -> Any:
        """Return the cached verdict for ``fields``, or ``verify()``'s, cached if truthy.

        ``remember=False`` does the same work (digest, look-up, ``verify()``) and caches
        nothing: for a check that must take as long as a real one, never be a hit.
        """
        if self.ttl <= 0 or self.maxsize <= 0:
            return verify()
        digest = self._digest(fields)
        verdict = self._get(digest)
        if verdict is None:
            verdict = verify()
            if verdict and remember:
                self._put(digest, verdict)
        return verdict

    def clear(self) -> None:
        """Forget every entry (the store changed)."""
        with self._lock:
            self._entries.clear()

    def _digest(self, fields: tuple[str, ...]) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for value in fields:
            data = value.encode("utf-8", "surrogatepass")
            mac.update(len(data).to_bytes(8, "big"))  # ("ab", "c") and ("a", "bc") differ
            mac.update(data)
        return mac.digest()

    def _get(self, digest: bytes) -> Any:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if time.monotonic() >= entry[0]:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return entry[1]

    def _put(self, digest: bytes, verdict: Any) -> None:
        with self._lock:
            self._entries[digest] = (time.monotonic() + self.ttl, verdict)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)


def make_cache(cache: CredentialCache | bool) -> CredentialCache | None:
    if cache is True:
        return CredentialCache()
    return None if cache is False else cache  # not "cache or None": an empty cache is falsy


class CachedCallback:
    """An ``authenticate`` callback whose successes are cached; made by :func:`cached`."""

    def __init__(self, callback: Callable[[Authorization], Any], cache: CredentialCache | None,
                 namespace: str) -> None:
        self.callback = callback
        self.cache = cache
        self.namespace = namespace

    def __call__(self, authorization: Authorization) -> Any:
        username, password = authorization.get("username"), authorization.get("password")
        if self.cache is None or not isinstance(username, str) or not isinstance(password, str):
            return self.callback(authorization)  # off, or nothing to key on
        auth_type = str(getattr(authorization, "auth_type", ""))
        return self.cache.check((self.namespace, auth_type, username, password),
                                lambda: self.callback(authorization))


def cached(callback: Callable[[Authorization], Any], *, cache: CredentialCache | bool = True,
           namespace: str | None = None) -> CachedCallback:
    """Wrap an ``authenticate`` callback so that its successes are cached.

    The cache cannot see ``callback``'s user store: call ``.cache.clear()`` when it
    changes, or entries (a removed user, an old password) live on until ``ttl``.
    ``namespace`` tells apart callbacks that share a cache; by default each wrapper has its
    own (not the callback's ``id()``: a later callback may get it, and the old verdicts).
    ``cache=False`` passes every call through.
    """
    check_callback(callback)
    namespace = namespace or "callback:" + os.urandom(16).hex()
    return CachedCallback(callback, make_cache(cache), namespace)
