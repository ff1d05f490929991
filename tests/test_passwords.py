"""authmw.passwords: every scheme, hostile input, htpasswd files as Apache's own tool writes
them, unknown users' timing, and the credential cache."""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from authmw import (
    AuthMiddleware,
    Authorization,
    CredentialCache,
    HtpasswdFile,
    HTTPBasicAuth,
    cached,
)
from authmw.passwords import (
    BCRYPT_MAX_PASSWORD_BYTES,
    MAX_PASSWORD_BYTES,
    MissingLibraryError,
    PasswordHash,
    hash_password,
    verify_password,
)

from .conftest import basic, call

DATA = Path(__file__).parent / "data" / "htpasswd"
HTPASSWD = shutil.which("htpasswd")
needs_htpasswd = pytest.mark.skipif(
    HTPASSWD is None, reason="Apache's htpasswd is not installed (apt-get install apache2-utils)"
)

# Non-ASCII, a colon and a space: what Basic auth can carry and a careless parser mangles.
PASSWORD = "correct horse: pässwörd ✓"
SCHEMES = ["bcrypt", "argon2id", "scrypt", "pbkdf2-sha256", "apr1", "sha1", "sha256-crypt",
           "sha512-crypt"]
# The optional library each scheme needs, and its extra (the others need only the standard
# library).
LIBRARY = {"bcrypt": ("bcrypt", "bcrypt"), "argon2id": ("argon2", "argon2"),
           "apr1": ("passlib.hash", "htpasswd"), "sha256-crypt": ("passlib.hash", "htpasswd"),
           "sha512-crypt": ("passlib.hash", "htpasswd")}


def need(*schemes):
    for scheme in schemes:
        if scheme in LIBRARY:
            module, extra = LIBRARY[scheme]
            pytest.importorskip(module, reason=f"{scheme} needs {module}: authmw[{extra}]")


@functools.cache
def _stored_hash(scheme, password):
    if scheme == "argon2id":
        import argon2

        return argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(password)
    if scheme in ("bcrypt", "scrypt", "pbkdf2-sha256"):
        return hash_password(password, scheme, cost={"bcrypt": 4, "scrypt": 4}.get(scheme, 1000))
    if scheme == "sha1":
        return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    from passlib import hash as libpass

    handler = {"apr1": libpass.apr_md5_crypt,
               "sha256-crypt": libpass.sha256_crypt.using(rounds=1000),
               "sha512-crypt": libpass.sha512_crypt.using(rounds=1000)}[scheme]
    return handler.hash(password)


def stored_hash(scheme, password=PASSWORD):
    """A hash of ``password`` at the scheme's lowest cost, made once (the tests stay fast)."""
    need(scheme)
    return _stored_hash(scheme, password)


def fast_hash(password):
    """A standard-library hash (no optional library needed) that costs next to nothing."""
    return hash_password(password, "pbkdf2-sha256", cost=1)


def write(path, text, *, mtime_ns=None):
    """Write ``text`` in place; set the mtime when given (file systems tick coarsely)."""
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def mtime_ns(path):
    return path.stat().st_mtime_ns


@pytest.fixture
def alice_file(tmp_path):
    path = tmp_path / "htpasswd"
    write(path, f"alice:{fast_hash(PASSWORD)}\n")
    return path


@pytest.fixture
def verified(monkeypatch):
    """Every verification, in order: (the PasswordHash, the password)."""
    calls = []
    original = PasswordHash.verify

    def verify(self, password):
        calls.append((self, password))
        return original(self, password)

    monkeypatch.setattr(PasswordHash, "verify", verify)
    return calls


def passwords(verified):
    return [password for _, password in verified]


# -- every scheme ---------------------------------------------------------------------------

WRONG_PASSWORDS = {
    "empty": "",
    "other": "wrong",
    "one-char-short": PASSWORD[:-1],
    "one-char-more": PASSWORD + " ",
    "other-case": PASSWORD.upper(),
    "utf8-read-as-latin1": PASSWORD.encode().decode("latin-1"),
    "nfd-normalised": PASSWORD.replace("ä", "a\u0308"),
}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_scheme_verifies_the_right_password(scheme):
    stored = stored_hash(scheme)
    assert PasswordHash.parse(stored).scheme == scheme
    assert verify_password(PASSWORD, stored) is True


@pytest.mark.parametrize("wrong", WRONG_PASSWORDS.values(), ids=WRONG_PASSWORDS.keys())
@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_scheme_refuses_wrong_passwords(scheme, wrong):
    assert verify_password(wrong, stored_hash(scheme)) is False


HOSTILE_PASSWORDS = {
    "none": None,
    "bytes": PASSWORD.encode(),
    "int": 42,
    "nul": "\0",
    "right-then-nul": PASSWORD + "\0",
    "nul-inside": PASSWORD[:3] + "\0" + PASSWORD[3:],
    "lone-surrogate": "\ud800",
    "one-byte-over-the-cap": "x" * (MAX_PASSWORD_BYTES + 1),
    "multibyte-over-the-cap": "é" * (MAX_PASSWORD_BYTES // 2 + 1),
    "a-megabyte": "x" * 1_000_000,
}


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS.values(), ids=HOSTILE_PASSWORDS.keys())
@pytest.mark.parametrize("scheme", SCHEMES)
def test_hostile_passwords_are_refused_without_raising(scheme, password):
    stored = stored_hash(scheme)
    started = time.perf_counter()
    assert verify_password(password, stored) is False
    assert time.perf_counter() - started < 1  # nothing over the cap is hashed


@pytest.mark.parametrize("scheme", ["scrypt", "pbkdf2-sha256"])
def test_a_password_of_exactly_the_cap_verifies_and_one_byte_more_cannot_be_hashed(scheme):
    at_cap = "é" * (MAX_PASSWORD_BYTES // 2)  # 2 bytes each in UTF-8
    stored = hash_password(at_cap, scheme, cost=4 if scheme == "scrypt" else 1)
    assert verify_password(at_cap, stored) is True
    with pytest.raises(ValueError, match="at most 4096 bytes"):
        hash_password(at_cap + "x", scheme, cost=4 if scheme == "scrypt" else 1)


# -- bcrypt's 72-byte limit: longer passwords never match, never raise -------------------------

def test_bcrypt_verifies_72_bytes_and_never_matches_73_even_against_the_72_byte_hash():
    need("bcrypt")
    import bcrypt

    password = "é" * 36  # 72 bytes
    assert verify_password(password, hash_password(password, "bcrypt", cost=4)) is True
    truncated = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    assert verify_password(password + "x", truncated) is False  # bcrypt 4 would have said True


def test_bcrypt_refuses_to_hash_a_password_it_would_not_fully_check():
    need("bcrypt")
    with pytest.raises(ValueError, match="first 72 bytes"):
        hash_password("x" * (BCRYPT_MAX_PASSWORD_BYTES + 1), "bcrypt", cost=4)


def test_a_long_password_that_apache_truncated_is_refused():
    need("bcrypt", "apr1")
    users = HtpasswdFile(DATA / "apache.htpasswd")
    assert users.check_password("long-bcrypt", "x" * 80) is False
    assert users.check_password("long-bcrypt", "x" * 72) is True  # what htpasswd -B hashed


@needs_htpasswd
def test_apache_itself_truncates_the_long_bcrypt_password():
    result = subprocess.run([HTPASSWD, "-vb", DATA / "apache.htpasswd", "long-bcrypt", "x" * 80],
                            capture_output=True)
    assert result.returncode == 0  # the difference with authmw that the docstring explains


# -- hostile and malformed hashes: ValueError, never the hash in the message ------------------

BCRYPT_SHAPE = "$2b$04$" + "." * 21 + "O" + "a" * 31
ARGON2_SHAPE = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"
SCRYPT_SHAPE = "$scrypt$ln=4,r=8,p=1$c2FsdA$" + "A" * 43
PBKDF2_SHAPE = "$pbkdf2-sha256$1000$c2FsdA$" + "A" * 43
APR1_SHAPE = "$apr1$saltsalt$" + "a" * 22
SHA256_CRYPT_SHAPE = "$5$rounds=1000$salt$" + "a" * 43
SHA512_CRYPT_SHAPE = "$6$salt$" + "a" * 86
SHA1_SHAPE = "{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM="

HOSTILE_HASHES = {
    "empty": "",
    "space": " ",
    "plaintext": "secret",
    "des-crypt": "JgChHHBkG3TB.",
    "htpasswd-crypt-failure": "*0",
    "md5-crypt": "$1$saltsalt$" + "a" * 22,
    "nul": BCRYPT_SHAPE[:10] + "\0" + BCRYPT_SHAPE[11:],
    "non-ascii": BCRYPT_SHAPE[:-1] + "é",
    "trailing-newline": BCRYPT_SHAPE + "\n",
    "too-long": "$pbkdf2-sha256$1000$" + "a" * 2000 + "$" + "A" * 43,
    "bcrypt-2x-prefix": "$2x$" + BCRYPT_SHAPE[4:],
    "bcrypt-cost-3": BCRYPT_SHAPE.replace("$04$", "$03$"),
    "bcrypt-cost-18": BCRYPT_SHAPE.replace("$04$", "$18$"),
    "bcrypt-cost-99": BCRYPT_SHAPE.replace("$04$", "$99$"),
    "bcrypt-unicode-digits": BCRYPT_SHAPE.replace("$04$", "$\u0660\u0664$"),
    "bcrypt-salt-bad-last-char": BCRYPT_SHAPE.replace("O", "a"),
    "bcrypt-truncated": BCRYPT_SHAPE[:-1],
    "argon2i": ARGON2_SHAPE.replace("argon2id", "argon2i"),
    "argon2d": ARGON2_SHAPE.replace("argon2id", "argon2d"),
    "argon2id-version-16": ARGON2_SHAPE.replace("v=19", "v=16"),
    "argon2id-no-version": ARGON2_SHAPE.replace("v=19$", ""),
    "argon2id-time-0": ARGON2_SHAPE.replace("t=1", "t=0"),
    "argon2id-time-65": ARGON2_SHAPE.replace("t=1", "t=65"),
    "argon2id-memory-below-8-per-lane": ARGON2_SHAPE.replace("p=1", "p=2"),
    "argon2id-memory-2-gib": ARGON2_SHAPE.replace("m=8", "m=2097152"),
    "argon2id-7-byte-salt": ARGON2_SHAPE.replace("c2FsdHNhbHQ", "c2FsdHNhbA"),
    "argon2id-non-canonical-base64": ARGON2_SHAPE.replace("c2FsdHNhbHQ", "c2FsdHNhbHR"),
    "argon2id-padded-base64": ARGON2_SHAPE + "=",
    "scrypt-r1-ln16-over-openssl-limit": SCRYPT_SHAPE.replace("ln=4,r=8", "ln=16,r=1"),
    "scrypt-2-gib": SCRYPT_SHAPE.replace("ln=4,r=8", "ln=21,r=8"),
    "scrypt-p-0": SCRYPT_SHAPE.replace("p=1", "p=0"),
    "scrypt-p-17": SCRYPT_SHAPE.replace("p=1", "p=17"),
    "scrypt-short-digest": SCRYPT_SHAPE[:-1],
    "scrypt-ab64-alphabet": SCRYPT_SHAPE.replace("c2FsdA", "c2.sdA"),
    "pbkdf2-zero-padded-rounds": PBKDF2_SHAPE.replace("$1000$", "$01000$"),
    "pbkdf2-rounds-over-limit": PBKDF2_SHAPE.replace("$1000$", "$100000000$"),
    "pbkdf2-plus-instead-of-dot": PBKDF2_SHAPE.replace("c2FsdA", "c2+sdA"),
    "pbkdf2-short-digest": PBKDF2_SHAPE[:-1],
    "pbkdf2-no-salt-field": "$pbkdf2-sha256$1000$" + "A" * 43,
    "apr1-9-char-salt": APR1_SHAPE.replace("saltsalt", "saltsalt9"),
    "apr1-short-checksum": APR1_SHAPE[:-1],
    "sha256-crypt-999-rounds": SHA256_CRYPT_SHAPE.replace("rounds=1000", "rounds=999"),
    "sha256-crypt-zero-padded-rounds": SHA256_CRYPT_SHAPE.replace("rounds=1000", "rounds=01000"),
    "sha512-crypt-rounds-over-limit": SHA512_CRYPT_SHAPE.replace("$6$", "$6$rounds=999999999$"),
    "sha512-crypt-no-checksum": "$6$salt",
    "sha512-crypt-17-char-salt": SHA512_CRYPT_SHAPE.replace("$salt$", "$" + "s" * 17 + "$"),
    "sha1-unpadded": SHA1_SHAPE.rstrip("="),
    "sha1-short": SHA1_SHAPE[:-2] + "=",
    "sha1-non-canonical": SHA1_SHAPE.replace("YHM=", "YHN="),
}


@pytest.mark.parametrize("stored", HOSTILE_HASHES.values(), ids=HOSTILE_HASHES.keys())
def test_hostile_hashes_are_a_clear_value_error_that_never_shows_the_hash(stored):
    with pytest.raises(ValueError) as raised:
        PasswordHash.parse(stored)
    message = str(raised.value)
    assert message
    if len(stored) >= 8:
        assert stored[-8:] not in message


@pytest.mark.parametrize("stored", [None, b"$2b$04$", 42], ids=["none", "bytes", "int"])
def test_a_hash_that_is_not_a_str_is_a_value_error(stored):
    with pytest.raises(ValueError, match="must be a str"):
        PasswordHash.parse(stored)


# Shapes that are valid but odd: accepted, and verifying against them never raises.
ODD_BUT_VALID = {
    "bcrypt-2a": ("bcrypt", "$2a$" + BCRYPT_SHAPE[4:]),
    "bcrypt-2y": ("bcrypt", "$2y$" + BCRYPT_SHAPE[4:]),
    "bcrypt-random-checksum": ("bcrypt", BCRYPT_SHAPE),
    "argon2id-random-hash": ("argon2id", ARGON2_SHAPE),
    "scrypt-empty-salt": ("scrypt", SCRYPT_SHAPE.replace("c2FsdA", "")),
    "pbkdf2-empty-salt": ("pbkdf2-sha256", PBKDF2_SHAPE.replace("c2FsdA", "")),
    "apr1-empty-salt": ("apr1", APR1_SHAPE.replace("saltsalt", "")),
    "apr1-non-canonical-checksum": ("apr1", APR1_SHAPE[:-1] + "z"),
    "sha256-crypt-empty-salt": ("sha256-crypt", SHA256_CRYPT_SHAPE.replace("$salt$", "$$")),
    "sha512-crypt-implicit-5000-rounds": ("sha512-crypt", SHA512_CRYPT_SHAPE),
}


@pytest.mark.parametrize(("scheme", "stored"), ODD_BUT_VALID.values(), ids=ODD_BUT_VALID.keys())
def test_odd_but_valid_hashes_verify_to_false_without_raising(scheme, stored):
    need(scheme)
    parsed = PasswordHash.parse(stored)
    assert parsed.scheme == scheme
    for password in (PASSWORD, "", "\0", "x" * 100):
        assert parsed.verify(password) is False


def test_the_cost_of_sha_crypt_without_rounds_is_5000():
    need("sha512-crypt")
    assert PasswordHash.parse(SHA512_CRYPT_SHAPE).cost == (5000,)


# -- missing libraries: a clear error when loading, naming the extra to install -------------

APACHE_LINES = dict(
    line.split(":", 1) for line in (DATA / "apache.htpasswd").read_text("utf-8").splitlines()
)
MISSING = {
    "bcrypt": ("bcrypt", APACHE_LINES["bcrypt"], "authmw[bcrypt]"),
    "argon2id": ("argon2", ARGON2_SHAPE, "authmw[argon2]"),
    "apr1": ("passlib.hash", APACHE_LINES["apr1"], "authmw[htpasswd]"),
    "sha512-crypt": ("passlib.hash", APACHE_LINES["sha512"], "authmw[htpasswd]"),
}


@pytest.mark.parametrize(("module", "stored", "extra"), MISSING.values(), ids=MISSING.keys())
def test_a_hash_whose_library_is_missing_fails_when_loaded(monkeypatch, tmp_path, module,
                                                           stored, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(MissingLibraryError, match=re.escape(extra)):
        PasswordHash.parse(stored)
    write(tmp_path / "htpasswd", f"alice:{stored}\n")
    with pytest.raises(ImportError):
        HtpasswdFile(tmp_path / "htpasswd")


@pytest.mark.parametrize(("scheme", "module"), [("bcrypt", "bcrypt"), ("argon2id", "argon2")])
def test_hashing_with_a_missing_library_names_the_extra(monkeypatch, scheme, module):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingLibraryError, match="pip install"):
        hash_password(PASSWORD, scheme, cost=4)


# -- hash_password ------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["bcrypt", "argon2id", "scrypt", "pbkdf2-sha256"])
def test_hash_password_salts_every_hash(scheme):
    need(scheme)
    cost = {"bcrypt": 4, "argon2id": 1, "scrypt": 4, "pbkdf2-sha256": 1}[scheme]
    first, second = (hash_password(PASSWORD, scheme, cost=cost) for _ in range(2))
    assert first != second
    assert PasswordHash.parse(first).scheme == scheme


@pytest.mark.parametrize(("scheme", "prefix"), [
    ("scrypt", "$scrypt$ln=17,r=8,p=1$"),
    ("argon2id", "$argon2id$v=19$m=65536,t=3,p=4$"),
    ("pbkdf2-sha256", "$pbkdf2-sha256$600000$"),
    ("bcrypt", "$2b$12$"),
])
def test_hash_password_defaults_are_current_recommendations(scheme, prefix):
    need(scheme)
    assert hash_password(PASSWORD, scheme).startswith(prefix)


def test_the_default_scheme_is_the_standard_librarys_scrypt():
    assert hash_password(PASSWORD).startswith("$scrypt$ln=17,")


@pytest.mark.parametrize(("scheme", "cost", "message"), [
    ("md5", None, "not 'md5'"),
    ("apr1", None, "not 'apr1'"),
    ("bcrypt", 3, "bcrypt cost must be between 4 and 17"),
    ("bcrypt", 18, "bcrypt cost must be between 4 and 17"),
    ("scrypt", 21, "over 1024 MiB"),
    ("pbkdf2-sha256", 0, "iterations must be between"),
    ("argon2id", 0, "time cost must be between"),
], ids=["unknown", "insecure-apr1", "bcrypt-3", "bcrypt-18", "scrypt-2-gib", "pbkdf2-0",
        "argon2id-0"])
def test_hash_password_refuses_bad_schemes_and_costs(scheme, cost, message):
    with pytest.raises(ValueError, match=message):
        hash_password(PASSWORD, scheme, cost=cost)


@pytest.mark.parametrize("scheme", ["scrypt", "pbkdf2-sha256"])
def test_scrypt_and_pbkdf2_hashes_are_passlibs_format_both_ways(scheme):
    libpass = pytest.importorskip("passlib.hash", reason="needs libpass: authmw[htpasswd]")

    handler = {"scrypt": libpass.scrypt.using(rounds=4),
               "pbkdf2-sha256": libpass.pbkdf2_sha256.using(rounds=1000)}[scheme]
    assert handler.verify(PASSWORD, stored_hash(scheme))
    assert verify_password(PASSWORD, handler.hash(PASSWORD)) is True
    assert verify_password("wrong", handler.hash(PASSWORD)) is False


@needs_htpasswd
def test_apache_verifies_hash_passwords_bcrypt(tmp_path):
    need("bcrypt")
    write(tmp_path / "htpasswd", f"alice:{hash_password(PASSWORD, 'bcrypt', cost=4)}\n")
    check = [HTPASSWD, "-vb", tmp_path / "htpasswd", "alice"]
    assert subprocess.run([*check, PASSWORD], capture_output=True).returncode == 0
    assert subprocess.run([*check, "wrong"], capture_output=True).returncode != 0


# -- htpasswd files as the real tool writes them ------------------------------------------

# The users of tests/data/htpasswd/apache.htpasswd (made by generate.sh) and their passwords.
APACHE_USERS = {
    "bcrypt": "bcrypt: secret",
    "apr1": "apr1: secret",
    "default": "default: secret",
    "sha1": "sha1: secret",
    "sha256": "sha256: secret",
    "sha512": "sha512: secret",
    "sha512-rounds": "sha512 rounds: secret",
    "ünïcødé": "pässwörd ✓",
}


@pytest.fixture(scope="module")
def apache_users():
    need("bcrypt", "apr1")
    return HtpasswdFile(DATA / "apache.htpasswd", cache=False)


@pytest.mark.parametrize(("username", "password"), APACHE_USERS.items(), ids=APACHE_USERS.keys())
def test_the_committed_apache_file_verifies_every_user(apache_users, username, password):
    assert apache_users.check_password(username, password) is True
    mojibake = password.encode().decode("latin-1")
    for wrong in {password + "x", password.upper(), mojibake} - {password}:
        assert apache_users.check_password(username, wrong) is False


def test_the_committed_apache_file_has_exactly_these_schemes(apache_users):
    schemes = {apache_users._snapshot.users[user].scheme for user in APACHE_USERS}
    assert schemes == {"bcrypt", "apr1", "sha1", "sha256-crypt", "sha512-crypt"}


def test_an_unknown_user_is_refused(apache_users):
    assert apache_users.check_password("nobody", "bcrypt: secret") is False


REAL_TOOL_FLAGS = {
    "bcrypt": ["-B", "-C", "4"],
    "apr1": ["-m"],
    "default": [],
    "sha1": ["-s"],
    "sha256": ["-2"],
    "sha512": ["-5"],
    "sha512-1000-rounds": ["-5", "-r", "1000"],
}


@needs_htpasswd
@pytest.mark.parametrize("flags", REAL_TOOL_FLAGS.values(), ids=REAL_TOOL_FLAGS.keys())
def test_files_written_by_the_real_htpasswd_load(tmp_path, flags):
    need("bcrypt", "apr1")
    path = tmp_path / "htpasswd"
    subprocess.run([HTPASSWD, "-cb", *flags, path, "ünïcødé", PASSWORD], check=True,
                   capture_output=True)
    users = HtpasswdFile(path)
    assert users.check_password("ünïcødé", PASSWORD) is True
    assert users.check_password("ünïcødé", "wrong") is False


@needs_htpasswd
def test_users_added_and_deleted_by_the_real_htpasswd_are_seen(tmp_path):
    need("bcrypt")
    path = tmp_path / "htpasswd"
    subprocess.run([HTPASSWD, "-cbB", "-C", "4", path, "alice", "a"], check=True,
                   capture_output=True)
    users = HtpasswdFile(path, check_interval=0)
    subprocess.run([HTPASSWD, "-bB", "-C", "4", path, "bob", "b"], check=True, capture_output=True)
    assert users.check_password("bob", "b") is True
    subprocess.run([HTPASSWD, "-D", path, "alice"], check=True, capture_output=True)
    write(path, path.read_bytes(), mtime_ns=mtime_ns(path) + 10**9)  # same-tick writes
    assert users.check_password("alice", "a") is False


REFUSED_REAL_TOOL_OUTPUT = {
    "des-crypt-htpasswd-d": ("des.htpasswd", ["-d"]),
    "plaintext-htpasswd-p": ("plaintext.htpasswd", ["-p"]),
    "crypt-failure-htpasswd-2-r-500": ("failed-crypt.htpasswd", ["-2", "-r", "500"]),
}


@pytest.mark.parametrize(("fixture", "flags"), REFUSED_REAL_TOOL_OUTPUT.values(),
                         ids=REFUSED_REAL_TOOL_OUTPUT.keys())
def test_what_the_real_tool_writes_but_is_unsafe_is_refused(tmp_path, fixture, flags):
    refused = r"line 1: (unsupported password hash|not a password hash)"
    with pytest.raises(ValueError, match=refused):
        HtpasswdFile(DATA / fixture)
    if HTPASSWD is not None:  # and as this machine's htpasswd writes it now
        path = tmp_path / "htpasswd"
        subprocess.run([HTPASSWD, "-cb", *flags, path, "user", "secret"], check=True,
                       capture_output=True)
        with pytest.raises(ValueError, match=refused):
            HtpasswdFile(path)


def test_the_htpasswd_file_works_as_the_middlewares_callback(recording_app):
    need("bcrypt", "apr1")
    app = AuthMiddleware(recording_app, auth=HTTPBasicAuth(),
                         authenticate=HtpasswdFile(DATA / "apache.htpasswd").authenticate)
    assert call(app, "/", authorization=basic("ünïcødé", "pässwörd ✓")).status == 200
    assert recording_app.seen[0]["REMOTE_USER"] == "ünïcødé"
    assert call(app, "/", authorization=basic("ünïcødé", "wrong")).status == 401
    assert call(app, "/", authorization=basic("nobody", "pässwörd ✓")).status == 401
    assert call(app, "/").status == 401


@pytest.mark.parametrize("authorization", [
    Authorization("basic"),
    Authorization("basic", username="sha1"),
    Authorization("basic", username=None, password="sha1: secret"),
    Authorization("bearer", token="sha1: secret"),
], ids=["no-fields", "no-password", "username-none", "other-scheme"])
def test_the_callback_refuses_authorizations_without_str_credentials(tmp_path, authorization):
    write(tmp_path / "htpasswd", f"sha1:{fast_hash('sha1: secret')}\n")
    assert HtpasswdFile(tmp_path / "htpasswd").authenticate(authorization) is False


# -- malformed files: ValueError with the line number, never the hash or the password -------

SECRET_HASH = fast_hash("hunter2")
MALFORMED_FILES = {
    "no-colon": (b"alice\n", 1),
    "empty-username": (f":{SECRET_HASH}\n".encode(), 1),
    "empty-hash": (b"alice:\n", 1),
    "duplicate-user": (f"alice:{SECRET_HASH}\nalice:{SECRET_HASH}\n".encode(), 2),
    "plaintext-password": (b"alice:hunter2\n", 1),
    "extra-field": (f"alice:{SECRET_HASH}:hunter2\n".encode(), 1),
    "space-after-colon": (f"alice: {SECRET_HASH}\n".encode(), 1),
    "not-utf8": (b"alice:\xffhunter2\n", 1),
    "after-comments-blank-and-crlf-lines": (
        f"# users\r\n\r\nbob:{SECRET_HASH}\r\n  \nalice hunter2\n".encode(), 5),
}


@pytest.mark.parametrize(("content", "line"), MALFORMED_FILES.values(),
                         ids=MALFORMED_FILES.keys())
def test_a_malformed_line_is_a_value_error_with_its_number(tmp_path, content, line):
    write(tmp_path / "htpasswd", content)
    with pytest.raises(ValueError, match=f", line {line}: ") as raised:
        HtpasswdFile(tmp_path / "htpasswd")
    assert SECRET_HASH not in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_comments_blank_lines_crlf_and_surrounding_spaces_are_accepted(tmp_path):
    write(tmp_path / "htpasswd", f"# users\r\n\r\n  alice:{fast_hash('a')}  \r\n"
                                 f"\t# bob left\nbob:{fast_hash('b')}")
    users = HtpasswdFile(tmp_path / "htpasswd")
    assert users.check_password("alice", "a") and users.check_password("bob", "b")


def test_an_empty_file_refuses_everyone(tmp_path):
    write(tmp_path / "htpasswd", "")
    assert HtpasswdFile(tmp_path / "htpasswd").check_password("", "") is False


def test_a_missing_file_fails_when_loaded(tmp_path):
    with pytest.raises(FileNotFoundError):
        HtpasswdFile(tmp_path / "missing")


# -- reloading ------------------------------------------------------------------------------

def replace_keeping_size_and_mtime(path, text):
    """Swap in a new file (a new inode) of the same size and mtime as the old one."""
    old = path.stat()
    new = path.with_name("new")
    write(new, text, mtime_ns=old.st_mtime_ns)
    os.replace(new, path)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (old.st_size, old.st_mtime_ns)


def rewrite_in_place(path, text, *, bump_mtime):
    old_mtime = mtime_ns(path)
    write(path, text, mtime_ns=old_mtime + 10**9 if bump_mtime else old_mtime)


CHANGES = {
    "rewritten-in-place": lambda path, text: rewrite_in_place(path, text, bump_mtime=True),
    "same-mtime-other-size": lambda path, text: rewrite_in_place(path, text + "\n",
                                                                 bump_mtime=False),
    "renamed-over-same-size-and-mtime": replace_keeping_size_and_mtime,
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_the_file_is_reloaded_when_it_changes(tmp_path, change):
    path = tmp_path / "htpasswd"
    write(path, f"alice:{fast_hash('old')}\n")
    users = HtpasswdFile(path, check_interval=0)
    assert users.check_password("alice", "old") is True
    change(path, f"alice:{fast_hash('new')}\n")  # the same length
    assert users.check_password("alice", "old") is False
    assert users.check_password("alice", "new") is True


def test_a_chmod_alone_is_seen_so_a_file_made_readable_is_reloaded(alice_file, verified):
    users = HtpasswdFile(alice_file, check_interval=0)
    assert users.check_password("alice", PASSWORD) is True
    os.chmod(alice_file, 0o600)  # changes the ctime only (root reads any file anyway)
    assert users.check_password("alice", PASSWORD) is True
    assert passwords(verified) == [PASSWORD, PASSWORD]  # reloaded, so the cache was dropped


def test_a_relative_path_keeps_naming_the_same_file_after_a_chdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "htpasswd", f"alice:{fast_hash('old')}\n")
    users = HtpasswdFile("htpasswd", check_interval=0)
    monkeypatch.chdir("/")
    rewrite_in_place(tmp_path / "htpasswd", f"alice:{fast_hash('new')}\n", bump_mtime=True)
    assert users.check_password("alice", "new") is True


def test_the_file_is_checked_at_most_once_per_check_interval(tmp_path):
    path = tmp_path / "htpasswd"
    write(path, f"alice:{fast_hash('old')}\n")
    users = HtpasswdFile(path, check_interval=3600)
    rewrite_in_place(path, f"alice:{fast_hash('new')}\n", bump_mtime=True)
    assert users.check_password("alice", "old") is True  # not checked yet
    users.check_interval = 0
    assert users.check_password("alice", "old") is False


def test_the_default_check_interval_is_one_second(tmp_path):
    path = tmp_path / "htpasswd"
    write(path, f"alice:{fast_hash('a')}\n")
    assert HtpasswdFile(path).check_interval == 1.0


BREAKAGES = {
    "malformed": lambda path: rewrite_in_place(path, path.read_text() + "bob:hunter2\n",
                                               bump_mtime=True),
    "deleted": lambda path: path.unlink(),
}


@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_a_file_that_cannot_be_reloaded_refuses_everyone_until_fixed(alice_file, caplog,
                                                                     breakage):
    good = alice_file.read_text()
    users = HtpasswdFile(alice_file, check_interval=0)
    breakage(alice_file)
    with caplog.at_level(logging.ERROR, logger="authmw"):
        assert users.check_password("alice", PASSWORD) is False
        assert users.check_password("alice", PASSWORD) is False
    assert caplog.text.count("every login is refused") == 1  # once, not once per request
    assert "hunter2" not in caplog.text
    assert "line 2" in caplog.text or "No such file" in caplog.text
    write(alice_file.with_name("fixed"), good)
    os.replace(alice_file.with_name("fixed"), alice_file)
    assert users.check_password("alice", PASSWORD) is True


def test_atomic_replacements_never_refuse_a_login_under_concurrent_requests(tmp_path):
    path = tmp_path / "htpasswd"
    write(path, f"alice:{fast_hash('a')}\n")
    users = HtpasswdFile(path, check_interval=0)

    def login():  # a failure in a thread fails the test (see filterwarnings in pyproject)
        for _ in range(200):
            assert users.check_password("alice", "a") is True

    threads = [threading.Thread(target=login) for _ in range(8)]
    for thread in threads:
        thread.start()
    for number in range(20):  # new files, renamed into place, that keep alice's password
        write(tmp_path / "new", f"alice:{fast_hash('a')}\n" + "#" * number)
        os.replace(tmp_path / "new", path)
    for thread in threads:
        thread.join()


# -- unknown users cost as much as wrong passwords ------------------------------------------

HOSTILE_SHAPES = {"normal": "wrong password", "73-bytes": "p" * 73, "5000-bytes": "p" * 5000,
                  "nul": "wrong\x00password"}


@pytest.mark.parametrize("password", HOSTILE_SHAPES.values(), ids=HOSTILE_SHAPES.keys())
def test_known_and_unknown_users_do_the_same_work_whatever_the_password(tmp_path, monkeypatch,
                                                                        password):
    need("bcrypt")
    path = tmp_path / "htpasswd"
    write(path, "".join(f"{name}:{hash_password(name, 'bcrypt', cost=4)}\n"
                        for name in ("alice", "bob")))
    users = HtpasswdFile(path)
    work: list[str] = []

    def recording(name, original):
        def wrapper(self, *args):
            work.append(name if name != "verify" else f"verify {self.scheme} {self.cost}")
            return original(self, *args)
        return wrapper

    for name in ("_digest", "_get", "_put"):
        monkeypatch.setattr(CredentialCache, name, recording(name, getattr(CredentialCache, name)))
    monkeypatch.setattr(PasswordHash, "verify", recording("verify", PasswordHash.verify))

    def work_for(username):
        work.clear()
        assert users.check_password(username, password) is False
        return list(work)

    assert work_for("alice") == work_for("nobody") == ["_digest", "_get", "verify bcrypt (4,)"]


@pytest.mark.parametrize("password", HOSTILE_SHAPES.values(), ids=HOSTILE_SHAPES.keys())
def test_known_and_unknown_users_take_as_long_whatever_the_password(tmp_path, password):
    need("bcrypt")
    path = tmp_path / "htpasswd"
    write(path, "".join(f"{name}:{hash_password(name, 'bcrypt', cost=4)}\n"
                        for name in ("alice", "bob")))
    users = HtpasswdFile(path)
    samples = 30 if password == "wrong password" else 3000  # bcrypt-4: ~1 ms; others: µs

    def seconds(username):
        started = time.perf_counter()
        users.check_password(username, password)
        return time.perf_counter() - started

    known, unknown = [], []
    for _ in range(samples):  # alternated, so that a slow moment hits both
        known.append(seconds("alice"))
        unknown.append(seconds("nobody"))
    ratio = statistics.median(known) / statistics.median(unknown)
    print(f"median known/unknown time ratio: {ratio:.3f} "
          f"({statistics.median(known) * 1e6:.1f} µs a check)")
    assert 0.9 <= ratio <= 1.1


def test_unknown_users_are_checked_against_each_hash_of_the_file_as_often(tmp_path, verified,
                                                                          caplog):
    need("apr1")
    path = tmp_path / "htpasswd"
    hashes = {"a": fast_hash("a"), "b": hash_password("b", "pbkdf2-sha256", cost=1000),
              "c": hash_password("c", "pbkdf2-sha256", cost=1000), "d": stored_hash("apr1")}
    write(path, "".join(f"{name}:{stored}\n" for name, stored in hashes.items()))
    with caplog.at_level(logging.WARNING, logger="authmw"):
        users = HtpasswdFile(path)
    assert "mixes hash schemes or costs" in caplog.text
    assert "2 x pbkdf2-sha256 (1000,)" in caplog.text
    for index in range(400):
        assert users.check_password(f"nobody{index}", "b") is False
    picked = Counter(stored.text for stored, _ in verified)
    assert all(60 <= picked[stored] <= 140 for stored in hashes.values()), picked.values()
    verified.clear()
    users.check_password("nobody7", "b")
    users.check_password("nobody7", "b")
    assert verified[0][0] is verified[1][0]  # one name, one dummy: timing it again tells nothing
    HtpasswdFile(path).check_password("nobody7", "b")
    assert verified[2][0].text == verified[0][0].text  # and the same in another process


# -- the credential cache -------------------------------------------------------------------

def test_a_successful_login_is_cached(alice_file, verified):
    users = HtpasswdFile(alice_file)
    assert users.check_password("alice", PASSWORD) and users.check_password("alice", PASSWORD)
    assert passwords(verified) == [PASSWORD]
    assert len(users.cache) == 1


def test_a_cached_user_with_another_password_is_refused(alice_file, verified):
    users = HtpasswdFile(alice_file)
    assert users.check_password("alice", PASSWORD) is True
    for wrong in ("wrong", "", PASSWORD[:-1]):  # Kinto's bug let every one of these in
        assert users.check_password("alice", wrong) is False
    assert passwords(verified) == [PASSWORD, "wrong", "", PASSWORD[:-1]]


def test_failures_are_never_cached(alice_file, verified):
    users = HtpasswdFile(alice_file)
    for _ in range(3):
        assert users.check_password("alice", "wrong") is False
        assert users.check_password("nobody", PASSWORD) is False
    assert len(verified) == 6
    assert len(users.cache) == 0


def test_a_changed_file_drops_the_cache(alice_file, verified):
    users = HtpasswdFile(alice_file, check_interval=0)
    assert users.check_password("alice", PASSWORD) is True
    rewrite_in_place(alice_file, alice_file.read_text() + "# changed\n", bump_mtime=True)
    assert users.check_password("alice", PASSWORD) is True  # verified again
    assert passwords(verified) == [PASSWORD, PASSWORD]
    rewrite_in_place(alice_file, "", bump_mtime=True)
    assert users.check_password("alice", PASSWORD) is False
    assert len(users.cache) == 0


def test_entries_expire_after_the_ttl(alice_file, verified, monkeypatch):
    # The cache's clock, moved by hand: with a real one, a loaded machine took longer than
    # the 0.05 s TTL between the first two checks (a third verification).
    import authmw.credential_cache

    now = [1000.0]
    monkeypatch.setattr(authmw.credential_cache, "time",
                        type("Clock", (), {"monotonic": staticmethod(lambda: now[0])}))
    users = HtpasswdFile(alice_file, cache=CredentialCache(ttl=0.05))
    assert users.check_password("alice", PASSWORD)
    now[0] += 0.049
    assert users.check_password("alice", PASSWORD)  # still cached
    now[0] += 0.002
    assert users.check_password("alice", PASSWORD) is True
    assert passwords(verified) == [PASSWORD, PASSWORD]


def test_the_default_cache_is_60_seconds_and_1024_entries(alice_file):
    cache = HtpasswdFile(alice_file).cache
    assert (cache.ttl, cache.maxsize) == (60.0, 1024)


def test_the_bound_holds_and_the_least_recently_used_goes_first():
    calls = []
    callback = cached(lambda auth: calls.append(auth["username"]) or True,
                      cache=CredentialCache(maxsize=3))
    for name in ("u0", "u1", "u2", "u0", "u3"):  # u0 is used again, so u1 is the oldest
        assert callback(Authorization("basic", username=name, password="p"))
    assert len(callback.cache) == 3
    for name in ("u0", "u2", "u3", "u1"):
        callback(Authorization("basic", username=name, password="p"))
    assert calls == ["u0", "u1", "u2", "u3", "u1"]


OFF_SWITCHES = {"cache-false": False, "ttl-0": CredentialCache(ttl=0),
                "maxsize-0": CredentialCache(maxsize=0)}


@pytest.mark.parametrize("cache", OFF_SWITCHES.values(), ids=OFF_SWITCHES.keys())
def test_the_cache_can_be_turned_off(alice_file, verified, cache):
    users = HtpasswdFile(alice_file, cache=cache)
    for _ in range(3):
        assert users.check_password("alice", PASSWORD) is True
    assert len(verified) == 3
    assert users.cache is None or len(users.cache) == 0


def test_an_empty_cache_passed_in_is_used_not_mistaken_for_off(alice_file):
    cache = CredentialCache()
    assert HtpasswdFile(alice_file, cache=cache).cache is cache


def test_the_cache_holds_no_password_nor_username(alice_file):
    cache = CredentialCache()
    users = HtpasswdFile(alice_file, cache=cache)
    wrapper = cached(lambda auth: True, cache=cache)
    assert users.check_password("alice", PASSWORD)
    assert wrapper(Authorization("basic", username="bob", password=PASSWORD))
    assert len(cache) == 2
    dump = pickle.dumps((cache._entries, {k: v for k, v in vars(cache).items()
                                          if k not in ("_lock", "_entries")}))
    for secret in (PASSWORD, "alice", "bob"):
        for form in (secret.encode(), secret.encode("utf-16-le"),
                     hashlib.sha256(secret.encode()).digest()):
            assert form not in dump
    for key, (expires, verdict) in cache._entries.items():
        assert len(key) == 32 and verdict is True and expires > time.monotonic()


def test_each_cache_has_its_own_random_key():
    first, second = CredentialCache(), CredentialCache()
    fields = ("store", "alice", PASSWORD)
    assert first._digest(fields) != second._digest(fields)
    assert first._digest(("ab", "c")) != first._digest(("a", "bc"))


def test_callbacks_sharing_a_cache_do_not_share_verdicts():
    shared = CredentialCache()
    lenient = cached(lambda auth: True, cache=shared)
    strict = cached(lambda auth: False, cache=shared)
    credentials = Authorization("basic", username="alice", password=PASSWORD)
    assert lenient(credentials) is True
    assert strict(credentials) is False


def test_cached_returns_the_callbacks_user_object_on_every_hit():
    user = {"name": "alice"}
    callback = cached(lambda auth: user)
    credentials = Authorization("basic", username="alice", password=PASSWORD)
    assert callback(credentials) is user and callback(credentials) is user


def test_cached_passes_authorizations_without_credentials_through():
    calls = []
    callback = cached(lambda auth: calls.append(auth) or True)
    token = Authorization("bearer", token="t")
    assert callback(token) and callback(token)
    assert calls == [token, token] and len(callback.cache) == 0


def test_cached_drops_its_entries_on_clear():
    calls = []
    callback = cached(lambda auth: calls.append(1) or True)
    credentials = Authorization("basic", username="alice", password=PASSWORD)
    callback(credentials)
    callback.cache.clear()
    callback(credentials)
    assert calls == [1, 1]


async def _async_callback(auth):
    return True


@pytest.mark.parametrize("callback", [_async_callback, "not callable"], ids=["async", "str"])
def test_cached_refuses_what_the_middleware_would_refuse(callback):
    with pytest.raises(TypeError):
        cached(callback)


def test_the_cached_callback_works_in_the_middleware(recording_app):
    calls = []
    app = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=cached(
        lambda auth: calls.append(1) or auth["password"] == PASSWORD))
    for password, status in ((PASSWORD, 200), (PASSWORD, 200), ("wrong", 401), ("wrong", 401)):
        assert call(app, "/", authorization=basic("alice", password)).status == status
    assert calls == [1, 1, 1]


def test_the_cache_is_thread_safe_and_keeps_its_bound():
    cache = CredentialCache(maxsize=8)
    callback = cached(lambda auth: auth["password"] == "p" + auth["username"], cache=cache)

    def login(offset):  # a failure in a thread fails the test (see filterwarnings in pyproject)
        for number in range(300):
            name = str((number + offset) % 20)
            assert callback(Authorization("basic", username=name, password="p" + name))
            assert not callback(Authorization("basic", username=name, password="wrong"))

    threads = [threading.Thread(target=login, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 8
