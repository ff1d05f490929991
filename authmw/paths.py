"""Path-prefix matching that a differently-reading app cannot slip past.

The app behind the middleware may read ``PATH_INFO`` differently from a plain string compare:
werkzeug merges slashes, some routers resolve ``..``, Tomcat-style ones drop ``;params``,
others decode percent-escapes once more (strictly or leniently), fold case, read ``\\`` as
``/``, stop at a NUL, ``?`` or ``#``, or drop tabs and newlines. A path is protected when
*any* combination of those readings falls under a protected prefix, on a segment boundary
(``/scheduler`` covers ``/scheduler/jobs``, not ``/scheduler-admin``). Each reading selects
its own prefix, the longest it falls under, and the matcher answers with all of them, so that
the caller can hold the request to every rule an app might apply::

    matcher = PrefixMatcher(["/scheduler", "/api"])
    matcher.select("//Scheduler;x=1/jobs")  # -> ("/scheduler",)
    matcher.select("/scheduler/../api/x")   # -> ("/scheduler", "/api")

Ordinary paths (no ``%``, ``\\``, ``;``, ``?``, ``#``, ``//``, ``/.``, control or non-ASCII
characters) can only be read one way up to case, and take a fast path. The readings of a
hostile path are bounded in number and in work: past either bound the answer is None, and the
caller must refuse the request (which rule would apply cannot be known).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote, unquote_to_bytes

#: A path with none of these has no reading but itself (up to case).
_AMBIGUOUS_RE = re.compile(r"[^!-~]|[%\\;?#]|//|/\.|^[^/]")
_PARAMS_RE = re.compile(r";[^/]*")
_SLASHES_RE = re.compile(r"/{2,}")
_ABSOLUTE_FORM_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/]*")
_UNSAFE_PREFIX_RE = re.compile(r"[^!-~]|[%\\;?#]")
_QUERY_OR_FRAGMENT_RE = re.compile(r"[?#]")
_TAB_OR_NEWLINE_RE = re.compile(r"[\t\r\n]")
#: Characters that case-insensitive matchers (``re.IGNORECASE`` included) take for ASCII
#: letters but ``str.casefold()`` does not map to them.
_ASCII_LOOKALIKES = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})

#: Beyond this many distinct readings a path cannot be matched (the caller refuses it).
MAX_READINGS = 256
#: Beyond this many characters of readings produced, likewise (bounds the CPU per request).
MAX_READING_CHARACTERS = 1 << 17
#: Answers remembered per matcher (paths repeat: the same few routes, static files...).
MEMO_SIZE = 4096
MEMO_MAX_PATH = 1024


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


def _latin1_bytes(path: str) -> bytes | None:
    try:
        return path.encode("latin-1")
    except UnicodeEncodeError:  # already read as UTF-8 once
        return None


def _decode_once(path: str) -> str:
    # PEP 3333 style: bytes shown as latin-1, as the server did the first time.
    raw = _latin1_bytes(path)
    return path if raw is None else unquote_to_bytes(raw).decode("latin-1")


def _as_utf8(path: str) -> str:
    # werkzeug (and so Flask) re-reads PATH_INFO's latin-1 characters as UTF-8, leniently.
    raw = _latin1_bytes(path)
    return path if raw is None else raw.decode("utf-8", "replace")


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


#: (applies to the path?, reading). Each reading makes a path no longer, but for the "/" added
#: in front of a relative one, so that readings cannot grow.
_READINGS: tuple[tuple[Callable[[str], bool], Callable[[str], str]], ...] = (
    (lambda path: "%" in path, _decode_once),
    (lambda path: "%" in path, lambda path: unquote(path, errors="replace")),
    (lambda path: not path.isascii(), _as_utf8),
    (lambda path: "\\" in path, lambda path: path.replace("\\", "/")),
    (lambda path: ";" in path, lambda path: _PARAMS_RE.sub("", path)),
    (lambda path: "//" in path, lambda path: _SLASHES_RE.sub("/", path)),
    (lambda path: "/." in path, _resolve_dots),
    (lambda path: "\0" in path, lambda path: path.split("\0", 1)[0]),
    (lambda path: "?" in path or "#" in path, lambda path: _QUERY_OR_FRAGMENT_RE.split(path)[0]),
    (lambda path: _TAB_OR_NEWLINE_RE.search(path) is not None,
     lambda path: _TAB_OR_NEWLINE_RE.sub("", path)),
    (lambda path: "://" in path, _absolute_form_path),
    (lambda path: not path.startswith("/"), lambda path: "/" + path),
)


def readings(path: str) -> set[str] | None:
    """Every reading of ``path`` under any combination of the transformations above.

    None when there are more than :data:`MAX_READINGS`, or producing them would take more
    than :data:`MAX_READING_CHARACTERS` (the caller fails closed).
    """
    seen = {path}
    frontier = [path]
    produced = 0
    longest = len(path) + 1
    while frontier:
        current = frontier.pop()
        for applies, read in _READINGS:
            if not applies(current):
                continue
            reading = read(current)
            produced += len(reading)
            if produced > MAX_READING_CHARACTERS or len(reading) > longest:
                return None
            if reading not in seen:
                if len(seen) >= MAX_READINGS:
                    return None
                seen.add(reading)
                frontier.append(reading)
    return seen


def fold_case(path: str) -> str:
    """Case-fold as generously as any case-insensitive router would."""
    return path.translate(_ASCII_LOOKALIKES).casefold()


class PrefixMatcher:
    """Answers which configured prefixes the readings of a ``PATH_INFO`` fall under.

    Each reading selects the longest prefix it falls under, once as written (for routers that
    match case exactly) and once case-folded (for those that do not), so that per-prefix
    rules can nest; :meth:`select` returns every prefix some reading selects.
    """

    def __init__(self, prefixes: Iterable[str]) -> None:
        normalized = {normalize_prefix(prefix) for prefix in prefixes}
        if not normalized:
            raise ValueError("at least one protected prefix is needed")
        by_folded: dict[str, str] = {}
        for prefix in sorted(normalized):
            other = by_folded.setdefault(fold_case(prefix), prefix)
            if other != prefix:
                raise ValueError(f"prefixes {other!r} and {prefix!r} differ only in case: "
                                 "which one a request falls under would depend on the router")
        #: Longest first, as (casefolded prefix, configured prefix).
        self.prefixes: tuple[str, ...] = tuple(sorted(normalized, key=len, reverse=True))
        self._folded = tuple((fold_case(prefix), prefix) for prefix in self.prefixes)
        #: With every prefix in folded form, a path in folded form matches the same either way.
        self._all_folded = all(folded == prefix for folded, prefix in self._folded)
        #: The answers for a path with one reading: shared tuples, nothing built per request.
        self._single: dict[str | None, tuple[str, ...]] = {None: ()}
        self._single.update((prefix, (prefix,)) for prefix in self.prefixes)
        #: path -> answer; a pure function of the path, so remembering it changes nothing.
        self.memo: dict[str, tuple[str, ...] | None] = {}

    def _longest(self, path: str, folded: bool) -> str | None:
        for candidate, prefix in self._folded:
            candidate = candidate if folded else prefix
            if candidate == "/" or (
                path.startswith(candidate)
                and (len(path) == len(candidate) or path[len(candidate)] == "/")
            ):
                return prefix
        return None

    def _match_one(self, path: str) -> tuple[str | None, str | None]:
        """The longest prefix ``path`` falls under as written, and case-folded."""
        folded = fold_case(path)
        exact = self._longest(path, folded=False)
        if folded == path and self._all_folded:
            return exact, exact
        return exact, self._longest(folded, folded=True)

    def select(self, path: str) -> tuple[str, ...] | None:
        """The prefixes that the readings of ``path`` select, longest first.

        Each reading selects the longest prefix it falls under; readings under none add
        nothing. ``()``: no reading is protected. None: ``path`` has too many readings to
        know (see :func:`readings`).
        """
        try:
            return self.memo[path]
        except KeyError:
            pass
        answer = self._select(path)
        if len(path) <= MEMO_MAX_PATH:
            if len(self.memo) >= MEMO_SIZE:
                self.memo.clear()  # bounded; clearing is cheaper than tracking recency
            self.memo[path] = answer
        return answer

    def _select(self, path: str) -> tuple[str, ...] | None:
        if _AMBIGUOUS_RE.search(path) is None:
            exact, folded = self._match_one(path)
            if exact == folded or exact is None:
                return self._single[folded]
            if folded is None:
                return self._single[exact]
            return tuple(sorted({exact, folded}, key=len, reverse=True))
        all_readings = readings(path)
        if all_readings is None:
            return None
        selected = {prefix for reading in all_readings for prefix in self._match_one(reading)
                    if prefix}
        if len(selected) <= 1:
            return self._single[selected.pop() if selected else None]
        return tuple(sorted(selected, key=len, reverse=True))
