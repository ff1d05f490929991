"""Error descriptions for the log with every credential of the request taken out.

When an ``authenticate`` callback or a handler raises, the operator needs the reason ("user
database unreachable"), but the exception's message may quote what it was given: a password,
a token, the ``Authorization`` header. :func:`describe_error` logs the frames (no source
lines, no local values), the exception's type and its message, with every credential the
middleware saw for the request replaced by ``[redacted]`` in each form a message could
show it: as sent, base64, percent-encoded, or escaped by ``repr``, JSON or a bytes literal::

    secrets = request_secrets(environ, authorization)
    logger.error("authentication failed\\n%s", describe_error(exc, secrets))
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MARKER = "[redacted]"
#: The longest message logged (after redaction), and how many chained causes are described.
MAX_MESSAGE = 1000
MAX_CAUSES = 5
#: Request headers whose values are credentials whatever the handler: ``HTTP_X_API_KEY``,
#: ``HTTP_AUTHORIZATION``, ``HTTP_PROXY_AUTHORIZATION``, ``HTTP_X_AUTH_TOKEN``, cookies...
_SECRET_HEADER_RE = re.compile(r"HTTP_.*(AUTH|KEY|TOKEN|SECRET|PASS|COOKIE|SESSION)")


def request_secrets(environ: Mapping[str, Any], authorization: object) -> set[str]:
    """Every credential of the request: headers that carry one, the parsed credentials
    (all but the username), and what the ``Authorization`` header's base64 decodes to."""
    secrets: set[str] = set()
    for name, value in environ.items():
        if isinstance(value, str) and _SECRET_HEADER_RE.match(name):
            secrets.add(value)
            for part in value.split()[1:]:  # after the scheme ("Basic", "Bearer")
                secrets.add(part)
                secrets.update(_decoded_base64(part))
    if isinstance(authorization, Mapping):
        try:
            secrets.update(value for name, value in authorization.items()
                           if name != "username" and isinstance(value, str))
        except Exception:  # noqa: BLE001, S110 - a broken handler's object: log what is known
            pass
    return {secret for secret in secrets if secret}


def _decoded_base64(text: str) -> list[str]:
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_"
                               if "-" in text or "_" in text else None)
    except (binascii.Error, ValueError):
        return []
    decoded = [raw.decode("latin-1")]
    try:
        decoded.append(raw.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    # "user:password": the password alone may be quoted too.
    return decoded + [value.partition(":")[2] for value in decoded]


def _forms(secret: str) -> set[str]:
    """The ways a message may show ``secret``."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret),
             repr(secret)[1:-1], json.dumps(secret)[1:-1], repr(raw)[2:-1],
             secret.encode("unicode_escape").decode("ascii")}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode("ascii")
        forms.update((encoded, encoded.rstrip("=")))
    return {form for form in forms if form}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret replaced by :data:`MARKER`."""
    forms = {form for secret in secrets for form in _forms(secret)}
    for form in sorted(forms, key=len, reverse=True):  # longest first: no half-replaced secret
        if form in text:
            text = text.replace(form, MARKER)
    return text


def _message(exc: BaseException, secrets: Iterable[str]) -> str:
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        message = redact(str(exc), secrets)
    except Exception:  # noqa: BLE001 - a raising __str__ must not lose the record
        message = "(the message could not be read)"
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "... (cut)"
    return f"{name}: {message}" if message else name


def describe_error(exc: BaseException, secrets: Iterable[str]) -> str:
    """The traceback of ``exc`` for the log: frames without source lines (a line may hold a
    hard-coded secret), then each exception's type and redacted message, causes included."""
    secrets = list(secrets)
    lines = ["Traceback (most recent call last):\n"]
    for frame in traceback.extract_tb(exc.__traceback__):
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
    lines.append(_message(exc, secrets))
    cause = exc.__cause__ or exc.__context__
    for _ in range(MAX_CAUSES):
        if cause is None:
            break
        lines.append(f"\n  caused by {_message(cause, secrets)}")
        cause = cause.__cause__ or cause.__context__
    return "".join(lines)
