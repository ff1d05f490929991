"""Fuzz target: ``PrefixMatcher.select`` never raises, stays bounded, and agrees with an oracle.

For every input path (a ``PATH_INFO``, see :func:`path_from`):

- ``PrefixMatcher(["/scheduler"]).select(path)`` does not raise, returns None, () or
  ("/scheduler",), and returns within :data:`TIME_BOUND` seconds;
- a matcher that also holds "/" never answers (), and nested prefixes agree;
- the oracle: if any of a handful of independent readings puts the path under /scheduler,
  ``select()`` is not ``()`` (None, too many readings, is refused by the middleware). The
  readings (:func:`oracle_readings`) are werkzeug's own URL routing against a ``Map`` with the
  ``/scheduler`` rules of ``tests/bypass_apps.py`` (with and without merged slashes, following
  one redirect), and normalisations built from the standard library (``urllib.parse``,
  ``posixpath.normpath``) the way a proxy, a Tomcat-style router or a case-insensitive one
  would read the path.

Run through ``fuzz/run.py`` (atheris), or directly: ``python fuzz/fuzz_paths.py -help=1``.
"""

from __future__ import annotations

import posixpath
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    import atheris
except ImportError:  # the hypothesis fallback of fuzz/run.py imports this module too
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["authmw"]):
        from authmw.paths import PrefixMatcher
else:
    from authmw.paths import PrefixMatcher

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, RequestRedirect, Rule

#: Seconds one select() may take, under coverage instrumentation (uninstrumented it is
#: milliseconds at most: the readings are bounded in number and in characters).
TIME_BOUND = 1.0
MAX_PATH = 4096  # gunicorn refuses a request line over 4094 bytes

MATCHER = PrefixMatcher(["/scheduler"])
NESTED = PrefixMatcher(["/scheduler", "/scheduler/jobs", "/"])

RULES = ["/scheduler", "/scheduler/", "/scheduler/jobs", "/scheduler/jobs/<job_id>"]


def _map(**options: bool) -> Map:
    return Map([*(Rule(rule, endpoint="protected") for rule in RULES),
                Rule("/scheduler-admin", endpoint="public"), Rule("/public", endpoint="public")],
               **options)


MAPS = [_map(), _map(merge_slashes=False, strict_slashes=False)]
PARAMS_RE = re.compile(r";[^/]*")
ABSOLUTE_FORM_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


def werkzeug_routes_to_protected(url_map: Map, path: str) -> bool:
    """Does werkzeug's routing (as a WSGI app binds it) send ``path`` to the protected view?"""
    environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path,
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    for _ in range(2):  # the request, then the one redirect a client would follow
        try:
            try:
                adapter = url_map.bind_to_environ(environ)
            except UnicodeEncodeError:  # not a server's PATH_INFO: werkzeug takes str as is
                adapter = url_map.bind("localhost", path_info=environ["PATH_INFO"])
            endpoint, _ = adapter.match()
        except RequestRedirect as redirect:
            environ = {**environ, "PATH_INFO": unquote_to_bytes(
                urlsplit(redirect.new_url).path).decode("latin-1")}
            continue
        except HTTPException:
            return False
        return endpoint == "protected"
    return False


def decodings(path: str, times: int = 4) -> Iterator[str]:
    """``path`` decoded 0..times times (bytes as latin-1), then also read as UTF-8."""
    current = path
    for _ in range(times + 1):
        yield current
        try:
            raw = current.encode("latin-1")
        except UnicodeEncodeError:
            yield unquote(current, errors="replace")
            return
        yield raw.decode("utf-8", "replace")
        decoded = unquote_to_bytes(raw).decode("latin-1")
        if decoded == current:
            return
        current = decoded


def normalised(path: str) -> str:
    path = path.replace("\\", "/")
    path = re.split(r"[\x00?#]", path, maxsplit=1)[0]
    path = re.sub(r"[\t\r\n]", "", path)
    path = PARAMS_RE.sub("", path)
    path = re.sub(r"/{2,}", "/", "/" + path)
    return posixpath.normpath(path)


def oracle_readings(path: str) -> Iterator[str]:
    """Readings of ``path`` by independent (non-authmw) code, to compare case-insensitively."""
    if "://" in path and ABSOLUTE_FORM_RE.match(path):
        # Only a target that starts with its scheme: urlsplit() (like WHATWG parsers) first
        # strips leading C0 controls and spaces, which no WSGI router does to PATH_INFO and
        # authmw does not promise (werkzeug's dev server does it to the request target, before
        # PATH_INFO exists, so authmw sees the result). See fuzz/README.md.
        try:
            yield urlsplit(path).path or "/"
        except ValueError:  # "Invalid IPv6 URL": no reader routes it
            pass
    for decoded in decodings(path):
        yield decoded
        yield normalised(decoded)
    tomcat = PARAMS_RE.sub("", path)  # ;params first, then one decoding, then dots
    yield posixpath.normpath("/" + unquote(tomcat, errors="replace"))


def under_scheduler(reading: str) -> bool:
    folded = reading.casefold().replace("\u017f", "s")
    return folded == "/scheduler" or folded.startswith("/scheduler/")


def path_from(data: bytes) -> str:
    mode, body = (data[0] % 3, data[1:MAX_PATH + 1]) if data else (0, b"")
    if mode == 0:  # a PATH_INFO as a PEP 3333 server gives it (bytes as latin-1)
        return body.decode("latin-1")
    if mode == 1:  # a raw request target, which the server decodes once
        target = body.decode("latin-1").split("?", 1)[0]
        return target if "://" in target else unquote_to_bytes(target).decode("latin-1")
    return body.decode("utf-8", "surrogateescape")  # any str at all


def check(path: str) -> None:
    started = time.perf_counter()
    selected = MATCHER.select(path)
    elapsed = time.perf_counter() - started
    assert elapsed < TIME_BOUND, f"select() took {elapsed:.3f} s on a {len(path)}-char path"
    assert selected in (None, (), ("/scheduler",)), selected

    nested = NESTED.select(path)
    assert nested != (), "a matcher holding '/' found no reading under any prefix"
    if selected is None:
        assert nested is None, (selected, nested)  # the same readings overflow
    elif selected:
        assert nested and not set(nested) - {"/scheduler", "/scheduler/jobs", "/"}, nested
        assert set(nested) & {"/scheduler", "/scheduler/jobs"}, (selected, nested)
    else:
        for url_map in MAPS:
            assert not werkzeug_routes_to_protected(url_map, path), (
                f"werkzeug routes {path!r} to the protected view; select() said ()")
        for reading in oracle_readings(path):
            assert not under_scheduler(reading), (
                f"{path!r} reads as {reading!r}, under /scheduler; select() said ()")


def TestOneInput(data: bytes) -> None:  # the name atheris and libFuzzer expect
    check(path_from(data))


SEEDS = [
    b"\x00/scheduler", b"\x00//scheduler", b"\x00/x/../scheduler", b"\x00/Scheduler;x=1/jobs",
    b"\x01/%2Fscheduler", b"\x01/%252e%252e/scheduler", b"\x01/%C5%BFcheduler",
    b"\x00/scheduler\x00-admin", b"\x00\\scheduler", b"\x00http://evil.example/scheduler",
    b"\x00/scheduler-admin", b"\x00/public", b"\x01/sched%09uler", b"\x02/\xc5\xbfcheduler",
    b"\x01/x%2f%2e%2e%2fscheduler", b"\x00scheduler/jobs", b"\x01/%" + b"25" * 300 + b"2e",
]


def main() -> None:
    assert atheris is not None, "atheris is not installed: use fuzz/run.py --engine hypothesis"
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
