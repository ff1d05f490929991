"""Error descriptions for the log with every credential of the request taken out.

When an ``authenticate`` callback or a handler raises, the operator needs the reason ("user
database unreachable"), but the exception's message may quote what it was given: a password,
a token, the ``Authorization`` header. :func:`describe_error` logs the frames (no source
lines, no local values), the exception's type and its message, with every credential of the
request (every request header but a few harmless ones, and the parsed credentials but the
username) taken out:

- each form a message could show a credential in (as sent, base64, hex, percent-encoded,
  escaped by ``repr``, JSON or a bytes literal), in any letter case, is replaced by
  ``[redacted]``, and so is every run of :data:`WINDOW` characters of one (a value cut short
  by ``%.200R``, or half percent-encoded by a URL library);
- then the result is decoded once more (percent-escapes): if a run of a credential shows up,
  the message is withheld; so it is when the request carries more than
  :data:`MAX_SECRET_CHARACTERS` of credentials to look for (it costs bounded work), or when
  anything goes wrong while describing::

    logger.error("authentication failed\\n%s",
                 describe_error(exc, lambda: request_secrets(environ, authorization)))
"""

from __future__ import annotations

import base64
import binascii
import json
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MARKER = "[redacted]"
#: Runs this long of a credential are taken out wherever they appear.
WINDOW = 6
#: The most credential text looked for in one request; past it the message is withheld.
MAX_SECRET_CHARACTERS = 4096
#: The longest message read (before redaction) and logged (after), and the causes described.
MAX_SCANNED = 4000
MAX_MESSAGE = 1000
MAX_CAUSES = 5
#: Request headers whose values are never credentials (all others are treated as if).
_HARMLESS_HEADERS = frozenset({
    "HTTP_HOST", "HTTP_USER_AGENT", "HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING",
    "HTTP_ACCEPT_LANGUAGE", "HTTP_CONNECTION", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH",
    "HTTP_ORIGIN", "HTTP_REFERER", "HTTP_CACHE_CONTROL", "HTTP_PRAGMA",
    "HTTP_ACCESS_CONTROL_REQUEST_METHOD", "HTTP_ACCESS_CONTROL_REQUEST_HEADERS",
    "HTTP_SEC_FETCH_SITE", "HTTP_SEC_FETCH_MODE", "HTTP_SEC_FETCH_DEST", "HTTP_SEC_FETCH_USER",
    "HTTP_UPGRADE_INSECURE_REQUESTS", "HTTP_TRANSFER_ENCODING", "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_REAL_IP", "HTTP_X_REQUEST_ID",
})


def request_secrets(environ: Mapping[Any, Any], authorization: object) -> list[str]:
    """Every credential of the request: header values (but the harmless ones) and their
    parts after a scheme with what their base64 decodes to, and the parsed credentials (all
    but the username)."""
    secrets: set[str] = set()
    for name, value in environ.items():
        if (isinstance(name, str) and name.startswith("HTTP_") and isinstance(value, str)
                and name not in _HARMLESS_HEADERS):
            words = value.split()
            if len(words) <= 1:
                secrets.add(value)
            for part in words[1:]:  # after a scheme ("Basic", "Bearer"), which is no secret
                secrets.add(part)
                secrets.update(_decoded_base64(part))
    if isinstance(authorization, Mapping):
        for name, value in list(authorization.items()):
            if name != "username" and isinstance(value, str):
                secrets.add(value)
    return [secret for secret in secrets if secret]


def _decoded_base64(text: str) -> list[str]:
    altchars = b"-_" if "-" in text or "_" in text else None
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars)
    except (binascii.Error, ValueError):
        return []
    decoded = [raw.decode("latin-1")]
    try:
        decoded.append(raw.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    # "user:password": the password alone (the username is no secret: the audit log has it).
    return [value.partition(":")[2] if ":" in value else value for value in decoded]


def _lower(text: str) -> str:
    """Lower case, one character for one (so that positions match the original)."""
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


def _forms(secret: str) -> set[str]:
    """The ways a message may show ``secret``, lower-cased."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret),
             repr(secret)[1:-1], json.dumps(secret)[1:-1],
             json.dumps(secret, ensure_ascii=False)[1:-1],
             secret.encode("unicode_escape").decode("ascii")}
    encodings = [secret.encode("utf-8", "surrogatepass")]
    try:
        encodings.append(secret.encode("latin-1"))
    except UnicodeEncodeError:
        pass
    for raw in encodings:
        forms.update((repr(raw)[2:-1], raw.hex(), raw.hex(" "), raw.hex(":")))
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(raw).decode("ascii")
            forms.update((encoded, encoded.rstrip("=")))
            # After one or two bytes of something else ("CORP\\user:"), base64 groups the
            # secret's bytes differently: the part after the first group is the same.
            for shift in (b"\0", b"\0\0"):
                forms.add(encode(shift + raw).decode("ascii")[4:].rstrip("="))
    return {_lower(form) for form in forms if form}


class _Needles:
    """Strings to find: the short ones whole, the others by their WINDOW-long runs."""

    def __init__(self, forms: Iterable[str]) -> None:
        self.short: set[str] = set()
        self.windows: set[str] = set()
        for form in forms:
            if len(form) < WINDOW:
                self.short.add(form)
            else:
                self.windows.update(form[offset:offset + WINDOW]
                                    for offset in range(len(form) - WINDOW + 1))

    def covered(self, text: str) -> list[bool]:
        """Which characters of ``text`` belong to a needle: linear in ``text``."""
        marks = [False] * len(text)
        for position in range(len(text) - WINDOW + 1):
            if text[position:position + WINDOW] in self.windows:
                marks[position:position + WINDOW] = [True] * WINDOW
        for needle in self.short:
            start = text.find(needle)
            while start != -1:
                marks[start:start + len(needle)] = [True] * len(needle)
                start = text.find(needle, start + 1)
        return marks


class _Redactor:
    def __init__(self, secrets: list[str]) -> None:
        self.plain = _Needles(_lower(secret) for secret in secrets)
        self.forms = _Needles(form for secret in secrets for form in _forms(secret))

    def __call__(self, text: str) -> str:
        text = text[:MAX_SCANNED]
        marks = self.forms.covered(_lower(text))
        redacted = []
        for position, char in enumerate(text):
            if not marks[position]:
                redacted.append(char)
            elif position == 0 or not marks[position - 1]:
                redacted.append(MARKER)
        result = "".join(redacted)
        for decoded in {unquote(result), unquote_plus(result)} - {result}:
            if any(self.plain.covered(_lower(decoded))):
                return "(message withheld: it may hold a credential)"
        return result


def _name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _message(exc: BaseException, redactor: _Redactor | None) -> str:
    if redactor is None:
        return f"{_name(exc)}: (message withheld: too many credentials to look for)"
    message = redactor(str.__str__(str(exc)))
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "... (cut)"
    return f"{_name(exc)}: {message}" if message else _name(exc)


def _frames(exc: BaseException) -> list[str]:
    lines = ["Traceback (most recent call last):\n"]
    for frame in traceback.extract_tb(exc.__traceback__):
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
    return lines


def describe_error(exc: BaseException, secrets: Callable[[], list[str]]) -> str:
    """The traceback of ``exc`` for the log: frames without source lines (a line may hold a
    hard-coded secret), then each exception's type and redacted message, causes included.
    Never raises: past any error, the types alone."""
    try:
        found = secrets()
        redactor = (_Redactor(found) if sum(map(len, found)) <= MAX_SECRET_CHARACTERS
                    else None)
        lines = [*_frames(exc), _message(exc, redactor)]
        cause = exc.__cause__ if exc.__cause__ is not None else exc.__context__
        for _ in range(MAX_CAUSES):
            if cause is None:
                break
            lines.append(f"\n  caused by {_message(cause, redactor)}")
            cause = cause.__cause__ if cause.__cause__ is not None else cause.__context__
        return "".join(lines)
    except Exception:  # noqa: BLE001 - a hostile exception must not lose the record
        return "".join([*_frames(exc), f"{_name(exc)}: (message withheld: it could not be read)"])
