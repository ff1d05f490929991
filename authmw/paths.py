"""Path-prefix matching that a differently-reading app cannot slip past.

The app behind the middleware may read ``PATH_INFO`` differently from a plain string compare:
werkzeug merges slashes, some routers resolve ``..``, Tomcat-style ones drop ``;params``,
others decode percent-escapes once more, fold case, read ``\\`` as ``/`` or stop at a NUL. A
path is protected when *any* combination of those readings falls under a protected prefix,
on a segment boundary (``/scheduler`` covers ``/scheduler/jobs``, not ``/scheduler-admin``)::

    matcher = PrefixMatcher(["/scheduler"])
    matcher.match("//Scheduler;x=1/jobs")  # -> "/scheduler"

Ordinary paths (no ``%``, ``\\``, ``;``, ``//``, ``/.``, control or non-ASCII characters)
can only be read one way up to case, and take a fast path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote_to_bytes

#: A path with none of these has no reading but itself (up to case).
_AMBIGUOUS_RE = re.compile(r"[^!-~]|[%\\;]|//|/\.|^[^/]")
_PARAMS_RE = re.compile(r";[^/]*")
_SLASHES_RE = re.compile(r"/{2,}")
_ABSOLUTE_FORM_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/]*")
_UNSAFE_PREFIX_RE = re.compile(r"[^!-~]|[%\\;?#]")

#: Beyond this many distinct readings a path is treated as protected (fail closed).
MAX_READINGS = 256


def normalize_prefix(prefix: str) -> str:
    """Validate a configured prefix and return it without a trailing slash ("/" stays "/").

    ValueError for anything that does not start with "/", has an empty, "." or ".." segment,
    or contains characters whose meaning depends on the reader (``%``, ``\\``, ``;``, ...).
    """
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ValueError(f"protected prefix {prefix!r} must be a str starting with '/'")
    if _UNSAFE_PREFIX_RE.search(prefix):
        raise ValueError(
            f"protected prefix {prefix!r} must be plain visible ASCII without % \\ ; ? #"
        )
    if prefix == "/":
        return prefix
    trimmed = prefix[:-1] if prefix.endswith("/") else prefix
    if any(segment in ("", ".", "..") for segment in trimmed.split("/")[1:]):
        raise ValueError(f"protected prefix {prefix!r} has an empty, '.' or '..' segment")
    return trimmed


def _decode_once(path: str) -> str:
    # PEP 3333 style: bytes shown as latin-1, as the server did the first time.
    return unquote_to_bytes(path).decode("latin-1") if "%" in path else path


def _as_utf8(path: str) -> str:
    # werkzeug (and so Flask) re-reads PATH_INFO's latin-1 characters as UTF-8.
    try:
        return path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return path


def _resolve_dots(path: str) -> str:
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(output) > 1:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if path.endswith(("/.", "/..")):
        output.append("")
    return "/".join(output) or "/"


def _absolute_form_path(path: str) -> str:
    match = _ABSOLUTE_FORM_RE.match(path)
    return path[match.end() :] or "/" if match else path


_READINGS: tuple[Callable[[str], str], ...] = (
    _decode_once,
    _as_utf8,
    lambda path: path.replace("\\", "/"),
    lambda path: _PARAMS_RE.sub("", path),
    lambda path: _SLASHES_RE.sub("/", path),
    _resolve_dots,
    lambda path: path.split("\0", 1)[0],
    _absolute_form_path,
    lambda path: path if path.startswith("/") else "/" + path,
)


def readings(path: str) -> set[str] | None:
    """Every reading of ``path`` under any combination of the transformations above.

    None when there are more than :data:`MAX_READINGS` (the caller fails closed).
    """
    seen = {path}
    frontier = [path]
    while frontier:
        current = frontier.pop()
        for read in _READINGS:
            reading = read(current)
            if reading not in seen:
                if len(seen) >= MAX_READINGS:
                    return None
                seen.add(reading)
                frontier.append(reading)
    return seen


class PrefixMatcher:
    """Answers which configured prefix, if any, a ``PATH_INFO`` falls under.

    The longest matching prefix over all readings wins, so that per-prefix rules can nest.
    """

    def __init__(self, prefixes: Iterable[str]) -> None:
        normalized = {normalize_prefix(prefix) for prefix in prefixes}
        if not normalized:
            raise ValueError("at least one protected prefix is needed")
        #: Longest first, as (casefolded prefix, configured prefix).
        self.prefixes: tuple[str, ...] = tuple(sorted(normalized, key=len, reverse=True))
        self._folded = tuple((prefix.casefold(), prefix) for prefix in self.prefixes)

    def _match_one(self, path: str) -> str | None:
        folded = path.casefold()
        for candidate, prefix in self._folded:
            if candidate == "/" or (
                folded.startswith(candidate)
                and (len(folded) == len(candidate) or folded[len(candidate)] == "/")
            ):
                return prefix
        return None

    def match(self, path: str) -> str | None:
        """Return the longest configured prefix that some reading of ``path`` falls under."""
        if _AMBIGUOUS_RE.search(path) is None:
            return self._match_one(path)
        all_readings = readings(path)
        if all_readings is None:
            return self.prefixes[0]
        matches = [prefix for prefix in map(self._match_one, all_readings) if prefix]
        return max(matches, key=len) if matches else None
