"""Fuzz target: authmw's Authorization header parsing must never raise, and be exact.

Runs ``get_authorization_header()`` and ``HTTPBasicAuth().get_authorization()`` under a bound
environ (as the middleware binds it) for every input, and checks:

- neither raises;
- ``get_authorization_header()`` gives None or (lower-case token scheme, non-empty visible
  ASCII bytes without a comma), never for a value over 8 KiB;
- a Basic ``Authorization`` is the canonical base64 of ``username:password`` (UTF-8, or
  latin-1 when the bytes are not UTF-8), without control characters (C0, DEL, C1), the
  username without ':';
- completeness: ``Basic <canonical base64 of bytes with a ':' and no controls>`` is accepted
  with exactly the pair those bytes spell.

The first input byte picks how the rest becomes a header value (see :func:`header_value`).
Run through ``fuzz/run.py`` (atheris), or directly: ``python fuzz/fuzz_header.py -help=1``.
"""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    import atheris
except ImportError:  # the hypothesis fallback of fuzz/run.py imports this module too
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["authmw"]):
        from authmw.auth import MAX_HEADER_LENGTH, HTTPBasicAuth, get_authorization_header
        from authmw.context import current_environ_var
else:
    from authmw.auth import MAX_HEADER_LENGTH, HTTPBasicAuth, get_authorization_header
    from authmw.context import current_environ_var

HANDLER = HTTPBasicAuth()
TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: category Cc
SCHEMES = ["Basic ", "basic ", "BASIC ", "bAsIc  ", " Basic ", "Basic\t", "Bearer ", "Basic,"]
MAX_INPUT = 9000


def header_value(data: bytes) -> tuple[str, bytes | None]:
    """(the header value, the raw credentials when the value is a well-formed Basic header)."""
    mode, body = (data[0] % 6, data[1:]) if data else (0, b"")
    if mode == 0:  # what a PEP 3333 server can put in HTTP_AUTHORIZATION
        return body.decode("latin-1"), None
    if mode == 1:  # any str at all, lone surrogates included
        return body.decode("utf-8", "surrogateescape"), None
    if mode == 2:  # a well-formed Basic header around arbitrary bytes
        return "Basic " + base64.b64encode(body).decode(), body
    if mode == 3:  # a scheme, then arbitrary latin-1
        scheme = SCHEMES[body[0] % len(SCHEMES)] if body else ""
        return scheme + body[1:].decode("latin-1"), None
    if mode == 4:  # a scheme, then base64 of arbitrary bytes, then a tail of arbitrary bytes
        split = body[0] if body else 0
        raw, tail = body[1:1 + split], body[1 + split:]
        return "Basic " + base64.b64encode(raw).decode() + tail.decode("latin-1"), None
    # a mutated base64 token: the input's own bytes, read as its alphabet
    return "Basic " + body.decode("latin-1"), None


def expected_pair(raw: bytes) -> tuple[str, str] | None:
    """What a well-formed Basic token of ``raw`` must give (README: Header parsing)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if ":" not in text or CONTROL_RE.search(text):
        return None
    username, _, password = text.partition(":")
    return username, password


def check(value: str, raw: bytes | None) -> None:
    token = current_environ_var.set({"HTTP_AUTHORIZATION": value})
    try:
        header = get_authorization_header()
        authorization = HANDLER.get_authorization()
    finally:
        current_environ_var.reset(token)

    if header is not None:
        scheme, credentials = header
        assert len(value) <= MAX_HEADER_LENGTH, "an over-long header was parsed"
        assert TOKEN_RE.fullmatch(scheme), scheme
        assert isinstance(credentials, bytes) and credentials, credentials
        assert all(0x21 <= byte <= 0x7E and byte != 0x2C for byte in credentials), credentials

    if authorization is not None:
        assert header is not None and header[0] == "basic"
        username, password = authorization["username"], authorization["password"]
        text = f"{username}:{password}"
        assert ":" not in username
        assert not CONTROL_RE.search(text), "a control character got through"
        encodings = [text.encode("utf-8", "surrogatepass")]
        try:
            encodings.append(text.encode("latin-1"))
        except UnicodeEncodeError:
            pass
        assert header[1] in {base64.b64encode(raw_bytes) for raw_bytes in encodings}, (
            "accepted credentials that are not the canonical base64 of what was decoded")
        assert repr(authorization) == "<Authorization 'basic' fields=['password', 'username']>"

    if raw is not None and len(value) <= MAX_HEADER_LENGTH:
        expected = expected_pair(raw)
        got = (None if authorization is None
               else (authorization["username"], authorization["password"]))
        assert got == expected, (raw, expected, got)


def TestOneInput(data: bytes) -> None:  # the name atheris and libFuzzer expect
    check(*header_value(data[:MAX_INPUT]))


SEEDS = [
    b"\x02admin:secret", b"\x02admin:p\xc3\xa4:ss w\xc3\xb6rd", b"\x02admin:p\xe4ss",
    b"\x00Basic YWRtaW46c2VjcmV0", b"\x00basic  YWRtaW46c2VjcmV0 ", b"\x00Basic YWRtaW46c2VjcmV0,",
    b"\x00Basic YWRtaW46c2VjcmV1", b"\x00Basic YWRtaW46c2VjcmV0=", b"\x00Basic YWRtaW4=",
    b"\x05YWRtaW46c2VjcmV0", b"\x05YQ==", b"\x05YR==", b"\x05YWI", b"\x03\x00YWRtaW46",
    b"\x04\x06admin:secret\t", b"\x01Basic \xed\xb3\xbf",
]


def main() -> None:
    assert atheris is not None, "atheris is not installed: use fuzz/run.py --engine hypothesis"
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
