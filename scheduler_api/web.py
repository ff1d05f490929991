"""HTTP plumbing of the job API: JSON answers, request bodies, query numbers, and the
cross-site check, apart from the route handlers (:mod:`scheduler_api.api`).

Every body the API sends is complete JSON bytes (:class:`JSONResponse`), every error an
:class:`APIError` answered as ``{"error_message": ...}``; bodies are read strictly
(:func:`read_json_body`: declared JSON, at most :data:`MAX_BODY_BYTES`, no framing tricks)::

    body = read_json_body(request)            # a dict, or APIError (400, 413, 415)
    return json_response({"id": "x"})
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from werkzeug.wrappers import Request

from .codec import TooDeep, UnpairedSurrogate, decode_json, encode_json
from .jobs import JSON, InvalidField

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger("scheduler_api")

MAX_BODY_BYTES = 1024 * 1024
MAX_OFFSET = 2**31 - 1
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class APIError(Exception):
    """An error answered as ``{"error_message": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)


_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class JSONResponse:
    """A handler's answer: a status, extra headers and a finished JSON body (none for 204).

    Every body the API sends is complete JSON bytes, so this is all a response needs to be;
    werkzeug's ``Response`` cost about as much per POST as parsing and validating the job.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(self, body: bytes = b"", status: int = 200,
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        self.body = body
        self.status = status
        self.headers = tuple(headers)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if self.status == 204:
            start_response(_STATUS_LINES[204], list(self.headers))
            return []
        start_response(_STATUS_LINES[self.status], [
            ("Content-Type", "application/json"), ("Content-Length", str(len(self.body))),
            *self.headers,
        ])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [self.body]


class TextResponse(JSONResponse):
    """An answer that is not JSON (the metrics' text format), of this content type."""

    __slots__ = ("content_type",)

    def __init__(self, body: bytes, content_type: str) -> None:
        super().__init__(body)
        self.content_type = content_type

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        start_response(_STATUS_LINES[self.status], [
            ("Content-Type", self.content_type), ("Content-Length", str(len(self.body)))])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [self.body]


NO_CONTENT = JSONResponse(status=204)

#: What a route handler answers: a WSGI app for this one request (a JSONResponse, or a
#: streamed body such as the event stream's).
Response = Callable[["WSGIEnvironment", "StartResponse"], Iterable[bytes]]


def json_response(data: Any, status: int = 200,
                  headers: Iterable[tuple[str, str]] = ()) -> JSONResponse:
    return JSONResponse(encode_json(data), status, headers)


def error_response(status: int, message: str,
                   headers: Iterable[tuple[str, str]] = ()) -> JSONResponse:
    return json_response({"error_message": message}, status, headers)


def query_int(request: Request, name: str, default: int, minimum: int,
               maximum: int | None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    maximum = MAX_OFFSET if maximum is None else maximum
    # isdigit() alone admits '²' and '①'; int() refuses more than 4,300 digits (ValueError);
    # the bound keeps a SQL OFFSET within 64 bits.
    digits = raw.lstrip("0") or "0"
    if (not (raw.isascii() and raw.isdigit()) or len(digits) > 19
            or not minimum <= int(digits) <= maximum):
        raise InvalidField(name, f"must be a whole number from {minimum} to {maximum}")
    return int(digits)


def check_query(request: Request, known: set[str]) -> None:
    """Refuse a query parameter this route does not know (a typo would be ignored)."""
    unknown = sorted(set(request.args) - known)
    if unknown:
        raise InvalidField(unknown[0][:60], f"unknown query parameter (known: "
                           f"{', '.join(sorted(known))})")


def store_problem(exc: Exception) -> str:
    """What to tell the client about a job store that failed (nothing stored has changed)."""
    text = str(exc).lower()
    if "disk is full" in text or "no space left" in text:
        return "the job store is out of space; nothing was changed"
    if "readonly" in text or "read-only" in text:
        return "the job store is read-only; nothing was changed"
    return "the job store is unavailable, try again later"


def refuse_cross_site(request: Request) -> None:
    """Refuse what a web page on another site can make a browser send (CSRF).

    A browser holding the API's Basic credentials sends them with any request to it, also
    from a page on another site. Such a page can send, without a preflight, a POST whose
    body is a form or text/plain, or no body at all; browsers mark it with ``Origin`` and
    ``Sec-Fetch-Site``. Clients that are not browsers send neither.
    """
    if request.method in _SAFE_METHODS:
        return
    environ = request.environ
    if environ.get("HTTP_SEC_FETCH_SITE") == "cross-site":
        raise APIError(403, "a cross-site request cannot change jobs or the scheduler")
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and (origin == "null" or _origin_host(origin) != request.host):
        raise APIError(403, f"requests from origin {origin!r} cannot change jobs or the "
                       "scheduler")
    if environ.get("CONTENT_TYPE") and _media_type(environ) != "application/json":
        raise APIError(415, "the body must be JSON, sent as Content-Type: application/json")


def _origin_host(origin: str) -> str | None:
    """The host[:port] of an ``Origin`` header; None when it is not a URL (``http://[``)."""
    try:
        return urlsplit(origin).netloc
    except ValueError:
        return None


def _media_type(environ: WSGIEnvironment) -> str:
    """The body's media type, lower case, without parameters: what ``request.mimetype`` is."""
    return str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip(" \t").lower()


def _content_length(environ: WSGIEnvironment) -> int | None:
    """The declared body length; None when there is none, or it is chunked or malformed."""
    declared = environ.get("CONTENT_LENGTH")
    if (not isinstance(declared, str) or not declared.isascii() or not declared.isdigit()
            or "HTTP_TRANSFER_ENCODING" in environ):
        return None
    digits = declared.lstrip("0")
    # Past 18 digits it is too large anyway, and past 4300 int() refuses to read it.
    return int(digits or "0") if len(digits) <= 18 else sys.maxsize


def _read_exactly(stream: Any, length: int) -> bytes:
    """``length`` bytes of the body; 400 if the client stops sending before the end."""
    chunks = []
    while length:
        chunk = stream.read(length)
        if not chunk:
            raise APIError(400, "the body ended before its Content-Length")
        chunks.append(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def read_json_body(request: Request, required: bool = True) -> JSON:
    """The request's JSON object; 415 unless declared application/json."""
    environ = request.environ
    length = _content_length(environ)
    if not required and not length and "HTTP_TRANSFER_ENCODING" not in environ:
        return {}
    if _media_type(environ) != "application/json":
        raise APIError(415, "the body must be JSON, sent as Content-Type: application/json")
    if length is not None and length > MAX_BODY_BYTES:
        raise APIError(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
    try:
        if length is not None:
            raw = _read_exactly(environ["wsgi.input"], length)
        else:  # chunked: werkzeug's stream ends where the server says the body ends
            raw = request.stream.read(MAX_BODY_BYTES + 1)
    except APIError:
        raise
    except Exception:  # the server's framing errors: a chunk size 'zz'
        # (werkzeug's server: OSError; gunicorn: its ParseException), a closed connection
        logger.info("the body of %s %s could not be read", request.method, request.path,
                    exc_info=True)
        raise APIError(400, "the body could not be read (malformed chunked encoding, or "
                       "the connection closed)") from None
    if len(raw) > MAX_BODY_BYTES:
        raise APIError(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
    if not raw and not required:
        return {}
    try:
        body = decode_json(raw)
    except UnpairedSurrogate as exc:
        raise APIError(400, f"the body is not valid JSON: {exc}") from None
    except TooDeep as exc:
        raise APIError(400, f"the body is too deep: {exc}") from None
    except (ValueError, RecursionError):
        raise APIError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object")
    return body
