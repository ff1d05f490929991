"""Password checks for the ``authenticate`` callback: stored hashes and htpasswd files.

HTTP Basic gives the callback a username and a password; this module checks them against
bcrypt, argon2id, scrypt and pbkdf2-sha256 hashes, and against Apache htpasswd files as the
``htpasswd`` tool writes them (``-B`` bcrypt, ``-m`` ``$apr1$``, ``-s`` ``{SHA}``,
``-2`` ``$5$``, ``-5`` ``$6$``). It protects against:

- malformed, unsupported or absurdly costly hashes, and missing hash libraries: refused when
  the hashes are loaded (ValueError, :class:`MissingLibraryError`), never a 500 per request;
- hostile passwords: any password gives True or False, never an exception; none over
  :data:`MAX_PASSWORD_BYTES` is hashed, and none with a NUL matches;
- bcrypt's 72-byte limit: a longer password never matches a bcrypt hash (it is not truncated);
- usernames leaking by timing: an unknown user costs one verification, like a wrong password;
- a credential cache that lets any password in after one good login (Kinto's bug): the cache
  is keyed by the password too, and only successes are cached.

Usage::

    users = HtpasswdFile("/etc/scheduler/htpasswd")
    app = AuthMiddleware(app, auth=HTTPBasicAuth(), authenticate=users.authenticate)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import logging
import os
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, NamedTuple

from .auth import Authorization
from .middleware import check_callback

logger = logging.getLogger("authmw")

#: Longest password checked, in UTF-8 bytes: a longer one never matches, and is never hashed.
MAX_PASSWORD_BYTES = 4096
#: bcrypt reads no further: a longer password never matches a bcrypt hash.
BCRYPT_MAX_PASSWORD_BYTES = 72

# The most work a stored hash may ask for. Beyond it one login would take many seconds (a
# typo, or a planted hash: a denial of service), so such a hash is refused when loaded.
_MAX_BCRYPT_COST = 17  # htpasswd -C accepts 4 to 17; each step doubles the time
_MAX_ITERATIONS = 10_000_000  # pbkdf2-sha256 iterations and sha-crypt rounds
_MAX_MEMORY = 1 << 30  # bytes, for scrypt and argon2id
_MAX_PARALLELISM = 16  # scrypt p, argon2id lanes
_MAX_ARGON2_PASSES = 64
_MAX_HASH_LENGTH = 1024  # longer than any hash this module reads
_HASH_CHARACTERS = re.compile(r"[!-~]+")  # printable ASCII, no space: what every format uses

_B64 = "[A-Za-z0-9+/]"
_CRYPT64 = "[./A-Za-z0-9]"
# A bcrypt salt is 16 bytes in 22 characters: the last one carries 2 bits, so only these
# four spellings are valid (the bcrypt library raises on any other).
_BCRYPT_RE = re.compile(rf"\$2[aby]\$([0-9][0-9])\${_CRYPT64}{{21}}[.Oeu]{_CRYPT64}{{31}}")
_ARGON2ID_RE = re.compile(
    rf"\$argon2id\$v=19\$m=([1-9][0-9]{{0,9}}),t=([1-9][0-9]{{0,9}}),p=([1-9][0-9]{{0,9}})"
    rf"\$({_B64}{{11,}})\$({_B64}{{6,}})"
)
_SCRYPT_RE = re.compile(
    rf"\$scrypt\$ln=([1-9][0-9]?),r=([1-9][0-9]{{0,3}}),p=([1-9][0-9]{{0,3}})"
    rf"\$({_B64}*)\$({_B64}{{43}})"
)
_PBKDF2_RE = re.compile(
    rf"\$pbkdf2-sha256\$([1-9][0-9]{{0,9}})\$({_CRYPT64}*)\$({_CRYPT64}{{43}})"
)
_APR1_RE = re.compile(rf"\$apr1\${_CRYPT64}{{0,8}}\${_CRYPT64}{{22}}")
_SHA256_CRYPT_RE = re.compile(
    rf"\$5\$(?:rounds=([1-9][0-9]{{0,9}})\$)?{_CRYPT64}{{0,16}}\${_CRYPT64}{{43}}"
)
_SHA512_CRYPT_RE = re.compile(
    rf"\$6\$(?:rounds=([1-9][0-9]{{0,9}})\$)?{_CRYPT64}{{0,16}}\${_CRYPT64}{{86}}"
)
_SHA1_RE = re.compile(rf"\{{SHA\}}({_B64}{{27}}=)")

# The import name of each optional library, and the package and extra that provide it.
_LIBRARIES = {
    "bcrypt": ("bcrypt", "bcrypt"),
    "argon2": ("argon2-cffi", "argon2"),
    "passlib.hash": ("libpass", "htpasswd"),
}


class MissingLibraryError(ImportError):
    """A hash needs an optional library that is not installed; the message says what to add."""


def _library(module: str, scheme: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        package, extra = _LIBRARIES[module]
        raise MissingLibraryError(
            f"{scheme} hashes need the {package} package: pip install 'authmw[{extra}]'",
            name=module,
        ) from None


def _checked(what: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValueError(f"{what} must be between {low} and {high}, not {value}")
    return value


def _b64decode(text: str, altchars: bytes = b"+/") -> bytes | None:
    """Decode unpadded base64, or None unless ``text`` is the one canonical spelling."""
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars, validate=True)
    except ValueError:
        return None
    return data if _b64encode(data, altchars) == text else None


def _b64encode(data: bytes, altchars: bytes = b"+/") -> str:
    return base64.b64encode(data, altchars).decode("ascii").rstrip("=")


def _password_bytes(password: object) -> bytes | None:
    """``password`` as UTF-8, or None when it cannot match: not a str, over the cap, or NUL.

    A NUL would be ambiguous: C ``crypt()`` stops there, and pbkdf2 and scrypt pad their
    HMAC key with NULs, so that ``"pw\\0"`` would match the hash of ``"pw"``.
    """
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_BYTES:
        return None
    # surrogatepass: a lone surrogate (from os.fsdecode, say) must not raise, as elsewhere.
    data = password.encode("utf-8", "surrogatepass")
    return data if len(data) <= MAX_PASSWORD_BYTES and b"\0" not in data else None


@dataclass(frozen=True)
class PasswordHash:
    """A stored hash, checked once by :meth:`parse`, then verified with :meth:`verify`.

    ``text`` is the hash as stored; ``cost`` holds its work parameters: two hashes with
    equal ``scheme`` and ``cost`` take the same time to verify.
    """

    scheme: str
    cost: tuple[int, ...]
    text: str = field(repr=False)
    _check: Callable[[bytes], bool] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, stored_hash: str) -> PasswordHash:
        """Check ``stored_hash`` and return it ready to verify.

        Raises ValueError when it is malformed, of an unsupported scheme (DES crypt, plain
        text) or too costly, and :class:`MissingLibraryError` when its library is missing.
        The message never contains the hash. The formats:

        ========================================== ================ =======================
        format                                     scheme           needs
        ========================================== ================ =======================
        ``$2a$``, ``$2b$``, ``$2y$``               bcrypt           ``bcrypt``
        ``$argon2id$v=19$m=M,t=T,p=P$salt$hash``   argon2id         ``argon2-cffi``
        ``$scrypt$ln=L,r=R,p=P$salt$hash``         scrypt, N = 2^L  standard library
        ``$pbkdf2-sha256$iterations$salt$hash``    pbkdf2-sha256    standard library
        ``$apr1$salt$hash``                        apr1 (MD5)       ``libpass``
        ``$5$[rounds=R$]salt$hash``, ``$6$...``    sha256/512-crypt ``libpass``
        ``{SHA}hash``                              sha1 (unsalted)  standard library
        ========================================== ================ =======================

        The scrypt and pbkdf2-sha256 formats are passlib's, so passlib reads them too: salt
        and 32-byte hash in unpadded base64, the standard alphabet for scrypt and passlib's
        adapted one (``.`` instead of ``+``) for pbkdf2-sha256.
        """
        if not isinstance(stored_hash, str):
            raise ValueError(f"a password hash must be a str, not {type(stored_hash).__name__}")
        if len(stored_hash) > _MAX_HASH_LENGTH or not _HASH_CHARACTERS.fullmatch(stored_hash):
            raise ValueError("not a password hash: empty, too long, or not printable ASCII")
        for prefix, parser in _PARSERS:
            if stored_hash.startswith(prefix):
                return parser(stored_hash)
        raise ValueError(
            "unsupported password hash: use bcrypt, argon2id, scrypt, pbkdf2-sha256, "
            "$apr1$, $5$, $6$ or {SHA} (DES crypt and plain text are refused)"
        )

    def verify(self, password: str) -> bool:
        """True if ``password`` matches; False otherwise, whatever ``password`` is."""
        data = _password_bytes(password)
        return data is not None and self._check(data)


def verify_password(password: str, stored_hash: str) -> bool:
    """True if ``password`` matches ``stored_hash`` (see :meth:`PasswordHash.parse`).

    A malformed hash raises ValueError; parse hashes once when loading them
    (:meth:`PasswordHash.parse`) so that this cannot happen during a request.
    """
    return PasswordHash.parse(stored_hash).verify(password)


def _parse_bcrypt(text: str) -> PasswordHash:
    match = _BCRYPT_RE.fullmatch(text)
    if match is None:
        raise ValueError("malformed bcrypt hash")
    cost = _checked("bcrypt cost", int(match[1]), 4, _MAX_BCRYPT_COST)
    bcrypt = _library("bcrypt", "bcrypt")
    stored = text.encode("ascii")

    def check(password: bytes) -> bool:
        # Never truncate: bcrypt would then accept every password that shares the first 72
        # bytes, the rest unchecked (and bcrypt 5 raises on longer ones).
        return len(password) <= BCRYPT_MAX_PASSWORD_BYTES and bool(
            bcrypt.checkpw(password, stored)
        )

    return PasswordHash("bcrypt", (cost,), text, check)


def _parse_argon2id(text: str) -> PasswordHash:
    match = _ARGON2ID_RE.fullmatch(text)
    if match is None or _b64decode(match[4]) is None or _b64decode(match[5]) is None:
        raise ValueError("malformed argon2id hash")
    memory_kib, passes, lanes = int(match[1]), int(match[2]), int(match[3])
    _checked("argon2id parallelism", lanes, 1, _MAX_PARALLELISM)
    _checked("argon2id memory (KiB)", memory_kib, 8 * lanes, _MAX_MEMORY // 1024)
    _checked("argon2id time cost", passes, 1, _MAX_ARGON2_PASSES)
    argon2 = _library("argon2", "argon2id")
    stored = text.encode("ascii")

    def check(password: bytes) -> bool:
        try:
            return bool(argon2.low_level.verify_secret(stored, password, argon2.Type.ID))
        except argon2.exceptions.VerificationError:  # a mismatch, or argon2 itself failing
            return False

    return PasswordHash("argon2id", (memory_kib, passes, lanes), text, check)


def _check_scrypt(log_n: int, r: int, p: int) -> None:
    _checked("scrypt p", p, 1, _MAX_PARALLELISM)
    # OpenSSL's own limits (hashlib.scrypt raises beyond them): N < 2^(16 r), and memory.
    if log_n >= 16 * r or 128 * r * ((1 << log_n) + p + 2) > _MAX_MEMORY:
        raise ValueError(f"scrypt parameters need over {_MAX_MEMORY >> 20} MiB or are invalid")


def _scrypt(password: bytes, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password, salt=salt, n=1 << log_n, r=r, p=p, maxmem=_MAX_MEMORY, dklen=32
    )


def _parse_scrypt(text: str) -> PasswordHash:
    match = _SCRYPT_RE.fullmatch(text)
    salt = _b64decode(match[4]) if match else None
    digest = _b64decode(match[5]) if match else None
    if match is None or salt is None or digest is None:
        raise ValueError("malformed scrypt hash")
    log_n, r, p = int(match[1]), int(match[2]), int(match[3])
    _check_scrypt(log_n, r, p)

    def check(password: bytes) -> bool:
        return hmac.compare_digest(_scrypt(password, salt, log_n, r, p), digest)

    return PasswordHash("scrypt", (log_n, r, p), text, check)


def _pbkdf2(password: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


def _parse_pbkdf2(text: str) -> PasswordHash:
    match = _PBKDF2_RE.fullmatch(text)
    salt = _b64decode(match[2], b"./") if match else None
    digest = _b64decode(match[3], b"./") if match else None
    if match is None or salt is None or digest is None:
        raise ValueError("malformed pbkdf2-sha256 hash")
    iterations = _checked("pbkdf2-sha256 iterations", int(match[1]), 1, _MAX_ITERATIONS)

    def check(password: bytes) -> bool:
        return hmac.compare_digest(_pbkdf2(password, salt, iterations), digest)

    return PasswordHash("pbkdf2-sha256", (iterations,), text, check)


def _parse_sha1(text: str) -> PasswordHash:
    match = _SHA1_RE.fullmatch(text)
    digest = _b64decode(match[1].rstrip("=")) if match else None
    if digest is None:
        raise ValueError("malformed {SHA} hash")

    def check(password: bytes) -> bool:
        # Unsalted SHA-1 is what htpasswd -s writes; it is weak, and read only for files.
        return hmac.compare_digest(hashlib.sha1(password).digest(), digest)  # noqa: S324

    return PasswordHash("sha1", (), text, check)


def _libpass_parser(
    scheme: str, pattern: re.Pattern[str], handler_name: str
) -> Callable[[str], PasswordHash]:
    """A parser for a crypt format that libpass verifies (Python 3.13 has no ``crypt``)."""

    def parse(text: str) -> PasswordHash:
        match = pattern.fullmatch(text)
        if match is None:
            raise ValueError(f"malformed {scheme} hash")
        cost: tuple[int, ...] = ()
        if pattern.groups:  # sha-crypt: 5000 rounds unless said; libpass refuses under 1000
            rounds = int(match[1] or 5000)
            cost = (_checked(f"{scheme} rounds", rounds, 1000, _MAX_ITERATIONS),)
        handler = getattr(_library("passlib.hash", scheme), handler_name)

        def check(password: bytes) -> bool:
            return bool(handler.verify(password, text))

        return PasswordHash(scheme, cost, text, check)

    return parse


_PARSERS: tuple[tuple[str, Callable[[str], PasswordHash]], ...] = (
    ("$2a$", _parse_bcrypt),
    ("$2b$", _parse_bcrypt),
    ("$2y$", _parse_bcrypt),
    ("$argon2id$", _parse_argon2id),
    ("$scrypt$", _parse_scrypt),
    ("$pbkdf2-sha256$", _parse_pbkdf2),
    ("$apr1$", _libpass_parser("apr1", _APR1_RE, "apr_md5_crypt")),
    ("$5$", _libpass_parser("sha256-crypt", _SHA256_CRYPT_RE, "sha256_crypt")),
    ("$6$", _libpass_parser("sha512-crypt", _SHA512_CRYPT_RE, "sha512_crypt")),
    ("{SHA}", _parse_sha1),
)


def hash_password(password: str, scheme: str = "scrypt", *, cost: int | None = None) -> str:
    """Hash ``password`` with a fresh random salt, in a format :func:`verify_password` reads.

    ``cost`` is, and defaults to: for ``"scrypt"`` log2 N (17, with r=8, p=1: 128 MiB, the
    OWASP minimum; standard library only); for ``"bcrypt"`` the log2 rounds (12); for
    ``"argon2id"`` the passes (3, with 64 MiB and 4 lanes, RFC 9106's second choice); for
    ``"pbkdf2-sha256"`` the iterations (600 000, OWASP). Use ``"bcrypt"`` in a file Apache
    reads as well. ValueError for an unknown scheme, a cost out of range, a password over
    :data:`MAX_PASSWORD_BYTES`, or over 72 bytes for bcrypt (it would not be fully checked).
    """
    data = _password_bytes(password)
    if data is None:
        raise ValueError(
            f"the password must be a str of at most {MAX_PASSWORD_BYTES} bytes, without NUL"
        )
    hasher = _HASHERS.get(scheme)
    if hasher is None:
        raise ValueError(f"hash_password() makes {', '.join(_HASHERS)} hashes, not {scheme!r}")
    return hasher(data, cost)


def _hash_scrypt(password: bytes, cost: int | None) -> str:
    log_n, r, p = 17 if cost is None else cost, 8, 1
    _check_scrypt(log_n, r, p)
    salt = os.urandom(16)
    digest = _scrypt(password, salt, log_n, r, p)
    return f"$scrypt$ln={log_n},r={r},p={p}${_b64encode(salt)}${_b64encode(digest)}"


def _hash_bcrypt(password: bytes, cost: int | None) -> str:
    if len(password) > BCRYPT_MAX_PASSWORD_BYTES:
        raise ValueError("bcrypt checks only the first 72 bytes of a password: choose a "
                         "shorter password or another scheme")
    rounds = _checked("bcrypt cost", 12 if cost is None else cost, 4, _MAX_BCRYPT_COST)
    bcrypt = _library("bcrypt", "bcrypt")
    return str(bcrypt.hashpw(password, bcrypt.gensalt(rounds)).decode("ascii"))


def _hash_argon2id(password: bytes, cost: int | None) -> str:
    passes = _checked("argon2id time cost", 3 if cost is None else cost, 1, _MAX_ARGON2_PASSES)
    argon2 = _library("argon2", "argon2id")
    return str(argon2.PasswordHasher(time_cost=passes).hash(password))


def _hash_pbkdf2(password: bytes, cost: int | None) -> str:
    iterations = _checked(
        "pbkdf2-sha256 iterations", 600_000 if cost is None else cost, 1, _MAX_ITERATIONS
    )
    salt = os.urandom(16)
    digest = _pbkdf2(password, salt, iterations)
    return f"$pbkdf2-sha256${iterations}${_b64encode(salt, b'./')}${_b64encode(digest, b'./')}"


_HASHERS: dict[str, Callable[[bytes, int | None], str]] = {
    "scrypt": _hash_scrypt,
    "bcrypt": _hash_bcrypt,
    "argon2id": _hash_argon2id,
    "pbkdf2-sha256": _hash_pbkdf2,
}


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

    def check(self, fields: tuple[str, ...], verify: Callable[[], Any]) -> Any:
        """Return the cached verdict for ``fields``, or ``verify()``'s, cached if truthy."""
        if self.ttl <= 0 or self.maxsize <= 0:
            return verify()
        digest = self._digest(fields)
        verdict = self._get(digest)
        if verdict is None:
            verdict = verify()
            if verdict:
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


def _make_cache(cache: CredentialCache | bool) -> CredentialCache | None:
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
    return CachedCallback(callback, _make_cache(cache), namespace)


class _Snapshot(NamedTuple):
    users: dict[str, PasswordHash]
    dummy: PasswordHash | None
    signature: tuple[int, ...] | None


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


def _dummy_hash(users: dict[str, PasswordHash]) -> PasswordHash | None:
    """The hash an unknown user's password is verified against, the result discarded.

    One of the file's own hashes, of its most common scheme and cost: the same algorithm,
    parameters and sizes take the same time, and there is nothing to generate.
    """
    counts = Counter((stored.scheme, stored.cost) for stored in users.values())
    if not counts:
        return None
    common = counts.most_common(1)[0][0]
    return next(h for h in users.values() if (h.scheme, h.cost) == common)


def _load_htpasswd(path: str) -> _Snapshot:
    with open(path, "rb") as file:
        stat = os.fstat(file.fileno())  # of the file read, even if it is replaced meanwhile
        content = file.read()
    users = _parse_htpasswd(content, path)
    return _Snapshot(users, _dummy_hash(users), _signature(stat))


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

    An unknown user's password is verified against one of the file's hashes, of its most
    common scheme and cost, so that it takes as long as a wrong password.

    :param cache: a :class:`CredentialCache` (it may be shared), True for a new one,
        False for none.
    """

    def __init__(self, path: str | os.PathLike[str], *, cache: CredentialCache | bool = True,
                 check_interval: float = 1.0) -> None:
        self.path = os.path.abspath(path)  # the same file even if the process changes directory
        self.cache = _make_cache(cache)
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
        if stored is None:
            if snapshot.dummy is not None:
                snapshot.dummy.verify(password)  # as slow as a wrong password
            return False
        if self.cache is None:
            return stored.verify(password)
        return bool(self.cache.check((self._namespace, username, password, stored.text),
                                     lambda: stored.verify(password)))

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
            snapshot = _Snapshot({}, None, signature)
        self._snapshot = snapshot
        if self.cache is not None:
            self.cache.clear()
