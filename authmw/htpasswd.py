"""Apache htpasswd files as an ``authenticate`` callback.

:class:`HtpasswdFile` reads files exactly as Apache's ``htpasswd`` writes them, reloads them
when they change, caches verified credentials (:mod:`authmw.credential_cache`: bcrypt is
slow, and Basic re-sends the password on every request), and makes unknown users cost as much
as wrong passwords::

    users = HtpasswdFile("/etc/scheduler/htpasswd")
    app = AuthMiddleware(app, auth=HTTPBasicAuth(), authenticate=users.authenticate)
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import Counter
from typing import NamedTuple

from .auth import Authorization
from .credential_cache import CredentialCache, make_cache
from .passwords import PasswordHash

logger = logging.getLogger("authmw")


class _Snapshot(NamedTuple):
    users: dict[str, PasswordHash]
    #: The file's hashes in username order, and a key made from the file: see dummy_for().
    pool: list[PasswordHash]
    key: bytes
    signature: tuple[int, ...] | None

    def dummy_for(self, username: str) -> PasswordHash | None:
        """The hash an unknown user's password is verified against (the result discarded).

        One of the file's own hashes, picked by a keyed digest of the username: the same
        name always gets the same one, in every process that read the same file, and each
        scheme and cost is picked as often as the file holds it. So a known user takes as
        long as some unknown ones whatever their scheme and cost, and timing one name again
        and again tells nothing new.
        """
        if not self.pool:
            return None
        digest = hashlib.blake2b(username.encode("utf-8", "surrogatepass"), key=self.key,
                                 digest_size=8).digest()
        return self.pool[int.from_bytes(digest, "big") % len(self.pool)]


def _signature(stat: os.stat_result) -> tuple[int, ...]:
    # ctime too: a chmod that makes an unreadable file readable changes nothing else.
    return stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino, stat.st_dev


def _parse_htpasswd(content: bytes, path: str) -> dict[str, PasswordHash]:
    users: dict[str, PasswordHash] = {}
    for number, raw in enumerate(content.split(b"\n"), start=1):
        where = f"{path}, line {number}"  # never the line itself: it holds a hash
        try:
            line = raw.decode("utf-8").strip(" \t\r\f\v")  # Apache strips ASCII spaces
        except UnicodeDecodeError:
            raise ValueError(f"{where}: not UTF-8") from None
        if not line or line.startswith("#"):
            continue
        username, colon, stored_hash = line.partition(":")
        if not username or not colon:
            raise ValueError(f"{where}: expected user:hash")
        if username in users:
            raise ValueError(f"{where}: the user is already on an earlier line")
        try:
            users[username] = PasswordHash.parse(stored_hash)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return users


def _load_htpasswd(path: str) -> _Snapshot:
    with open(path, "rb") as file:
        stat = os.fstat(file.fileno())  # of the file read, even if it is replaced meanwhile
        content = file.read()
    users = _parse_htpasswd(content, path)
    classes = Counter(f"{stored.scheme} {stored.cost}" for stored in users.values())
    if len(classes) > 1:
        logger.warning("htpasswd file %s mixes hash schemes or costs (%s): a user whose hash "
                       "costs more or less than most can be told apart by timing; rehash "
                       "every password with one scheme and cost", path,
                       ", ".join(f"{count} x {name}" for name, count in classes.items()))
    pool = [users[name] for name in sorted(users)]
    # Secret to a client (the file's salts and hashes), the same in every worker.
    key = hashlib.blake2b(content, person=b"authmw dummy").digest()[:32]
    return _Snapshot(users, pool, key, _signature(stat))


class HtpasswdFile:
    """The users of an Apache htpasswd file, and a ready ``authenticate`` callback.

    The file is read now: a malformed line raises ValueError (its line number, never its
    hash), a hash whose library is missing :class:`MissingLibraryError`. Blank lines and
    ``#`` comments are skipped; a user may appear once. Then, at most once every
    ``check_interval`` seconds, a request checks the file's mtime, ctime, size and inode,
    and reloads it when they changed; the cache is cleared then. A file that cannot be reloaded
    (malformed, deleted) refuses every login, with an error logged, until it is fixed: a
    typo must not keep a user that the same edit removed. So does a file caught half-written
    (``htpasswd`` rewrites in place) until the next check; a new file renamed into place
    never is.

    An unknown user's password is verified against one of the file's hashes, picked by the
    name (each scheme and cost as often as the file holds it), through the same cache
    look-up, so that it takes as long as a wrong password whatever the password (long, with
    a NUL, past bcrypt's 72 bytes). A file that mixes schemes or costs is logged as a
    warning: its rarer users still stand out more than the others.

    :param cache: a :class:`CredentialCache` (it may be shared), True for a new one,
        False for none.
    """

    def __init__(self, path: str | os.PathLike[str], *, cache: CredentialCache | bool = True,
                 check_interval: float = 1.0) -> None:
        self.path = os.path.abspath(path)  # the same file even if the process changes directory
        self.cache = make_cache(cache)
        self.check_interval = check_interval
        self._namespace = "htpasswd:" + self.path
        self._snapshot = _load_htpasswd(self.path)
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()

    def authenticate(self, authorization: Authorization) -> bool:
        """The ``authenticate`` callback: True if the Basic credentials are valid."""
        username, password = authorization.get("username"), authorization.get("password")
        return (isinstance(username, str) and isinstance(password, str)
                and self.check_password(username, password))

    def check_password(self, username: str, password: str) -> bool:
        """True if ``username`` is in the file and ``password`` matches its hash."""
        snapshot = self._current()
        stored = snapshot.users.get(username)
        # An unknown user does the same work as a known one, against a dummy hash (picked
        # for known users too, so that picking it costs both the same).
        dummy = snapshot.dummy_for(username)
        checked = stored if stored is not None else dummy
        if checked is None:
            return False  # an empty file: there is no known user to tell apart
        if self.cache is None:
            verdict = checked.verify(password)
        else:
            verdict = self.cache.check((self._namespace, username, password, checked.text),
                                       lambda: checked.verify(password),
                                       remember=stored is not None)
        return stored is not None and bool(verdict)

    def _current(self) -> _Snapshot:
        now = time.monotonic()
        # Non-blocking: while one request reloads, the others go on with the current users.
        if now - self._checked_at >= self.check_interval and self._lock.acquire(blocking=False):
            try:
                self._checked_at = now
                self._reload_if_changed()
            finally:
                self._lock.release()
        return self._snapshot

    def _reload_if_changed(self) -> None:
        try:
            signature: tuple[int, ...] | None = _signature(os.stat(self.path))
        except OSError:
            signature = None
        if signature == self._snapshot.signature:
            return
        try:
            snapshot = _load_htpasswd(self.path)
        except (OSError, ValueError, ImportError) as exc:
            logger.error("htpasswd file %s could not be reloaded, every login is refused "
                         "until it is fixed: %s", self.path, exc)
            snapshot = _Snapshot({}, [], b"", signature)
        self._snapshot = snapshot
        if self.cache is not None:
            self.cache.clear()
