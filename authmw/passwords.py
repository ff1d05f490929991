"""Password hashes for the ``authenticate`` callback: check them, and make new ones.

HTTP Basic gives the callback a username and a password; this module checks the password
against bcrypt, argon2id, scrypt and pbkdf2-sha256 hashes and the htpasswd formats
(``$apr1$``, ``{SHA}``, ``$5$``, ``$6$``; files: :mod:`authmw.htpasswd`). It protects
against:

- malformed, unsupported or absurdly costly hashes, and missing hash libraries: refused when
  the hashes are loaded (ValueError, :class:`MissingLibraryError`), never a 500 per request;
- hostile passwords: any password gives True or False, never an exception; none over
  :data:`MAX_PASSWORD_BYTES` is hashed, and none with a NUL matches;
- bcrypt's 72-byte limit: a longer password never matches a bcrypt hash (it is not truncated).

Usage::

    stored = hash_password("s3cret", scheme="scrypt")
    verify_password("s3cret", stored)  # True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

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
