"""JSON bytes in and out of the API: strict on the way in, unbreakable on the way out.

``decode_json`` refuses what ``json.loads`` lets through but is not JSON a job can keep: NaN,
Infinity and numbers too large for a float (``1e400``), which JSON cannot write back, and
unpaired UTF-16 surrogates (``"\\ud800"``), which no UTF-8 answer can carry: one such job would
break every later listing. ``encode_json`` always writes valid JSON, also for what a job holds
through Python (a NaN in its args, a cycle) or from an older version::

    decode_json(b'{"args": [NaN]}')  # ValueError
    encode_json({"name": "\\ud800"})   # b'{"name":"\\\\ud800"}': the JSON escape, not an error
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any


def json_default(value: object) -> object:
    """Keep a listing alive when a job's args hold something JSON cannot encode."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return _safe_repr(value)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__, or an int past the digit limit
        return f"<{type(value).__name__}>"


class UnpairedSurrogate(ValueError):
    """A string of the body holds half of a UTF-16 surrogate pair: not text."""


#: The deepest nesting of arrays and objects a body may have. A job's args are pickled by
#: the SQL store, recursively: args ~500 deep exhausted the stack there (a 500, after the
#: body had been accepted). Flask-APScheduler bodies nest 3 or 4 deep.
MAX_DEPTH = 32


class TooDeep(ValueError):
    """The body nests arrays and objects deeper than :data:`MAX_DEPTH`."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a float")
    return value


# One encoder and one decoder for every request: json.dumps and json.loads build new ones
# whenever they get options, which costs as much as encoding a job.
_ENCODER = json.JSONEncoder(default=json_default, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)
_ASCII_ENCODER = json.JSONEncoder(default=json_default, separators=(",", ":"), allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)

# A \uD800-\uDFFF escape: the only way a strictly decoded body can hold a surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def encode_json(data: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; unpaired surrogates are written as ``\\uXXXX`` escapes.

    A value JSON has no spelling for (NaN, an infinity, a cycle, a key that is not a string,
    nesting deeper than the stack) is written as its ``repr`` string, so that one job cannot
    break a listing.
    """
    try:
        text = _ENCODER.encode(data)
    except (ValueError, TypeError, RecursionError):
        data = {key: _encodable(value) for key, value in data.items()}
        text = _ENCODER.encode(data)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _ASCII_ENCODER.encode(data).encode()


def _encodable(value: Any) -> Any:
    try:
        _ENCODER.encode(value)
    except (ValueError, TypeError, RecursionError):
        return _safe_repr(value)
    return value


def decode_json(raw: bytes) -> Any:
    """Parse a JSON body (UTF-8, -16 or -32); ValueError unless it is JSON text.

    :class:`UnpairedSurrogate` and :class:`TooDeep` (ValueErrors) name those cases;
    RecursionError is raised for nesting deeper than the interpreter's stack.
    """
    text = raw.decode(json.detect_encoding(raw))  # strict: no encoded surrogates either
    value = _DECODER.decode(text)
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth_over(value, MAX_DEPTH):
        raise TooDeep(f"arrays and objects nest more than {MAX_DEPTH} deep")
    if _SURROGATE_ESCAPE.search(text) and _holds_surrogate(value):
        raise UnpairedSurrogate("a string holds an unpaired surrogate (U+D800 to U+DFFF)")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    level = [value] if isinstance(value, (list, dict)) else []
    for _ in range(limit):  # level by level, iteratively: a body nests as deep as parsed
        level = [child for item in level
                 for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, (list, dict))]
        if not level:
            return False
    return True


def _holds_surrogate(value: Any) -> bool:
    pending = [value]  # iterative: a body nests as deep as the parser allowed
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
