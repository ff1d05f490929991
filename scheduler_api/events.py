"""Live events as Server-Sent Events: ``GET {prefix}/events`` (see ``docs/events.md``).

The recorder (:mod:`scheduler_api.recorder`) writes events to the run history's events
table, numbered; here each process keeps one :class:`EventFeed` per history: a thread that
waits for new events (PostgreSQL: ``LISTEN`` on the history's channel; SQLite: a short poll),
reads them once, and wakes every stream of the process. A stream answers
``text/event-stream``, replays from ``Last-Event-ID`` and ends after
``SCHEDULER_EVENTS_MAX_SECONDS`` (the client reconnects)::

    streams = EventStreams()                      # one per API, so one per process
    return streams.open(history, request, EventLimits(max_seconds=120, max_streams=16))
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from werkzeug.wrappers import Request

from .coordination import PostgresListener
from .deadlines import STORE_WAIT_SECONDS, deadline
from .history import RunHistory
from .process import inside_gunicorn_arbiter
from .web import APIError, check_query, error_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger("scheduler_api")

#: Defaults of SCHEDULER_EVENTS_MAX_SECONDS and SCHEDULER_EVENTS_MAX_STREAMS.
DEFAULT_MAX_SECONDS = 120.0
DEFAULT_MAX_STREAMS = 16
#: A comment is sent after this many seconds without an event: proxies keep the connection,
#: and a client that went away is noticed on a server that gives no socket (a write fails;
#: the first after the client's close is still taken by the kernel, the next one fails).
KEEPALIVE_SECONDS = 15.0
#: With the server's socket, a waiting stream looks this often whether its client closed the
#: connection: its place under the cap is free at once, not two keepalives later.
CLIENT_CHECK_SECONDS = 1.0
#: A stream whose client has not taken a chunk for this long is dropped (gunicorn's socket,
#: or werkzeug's server's; on another server a blocked write holds the stream's thread).
SEND_TIMEOUT_SECONDS = 30.0
#: How long a client waits before it reconnects (the stream's ``retry:``), in milliseconds.
RETRY_MILLISECONDS = 2000
#: Events one read returns, at most: what a stream holds at a time.
READ_LIMIT = 100
#: How often the feed looks for new events on SQLite; on PostgreSQL a NOTIFY wakes it, and
#: it looks this often anyway (a NOTIFY lost to a reconnect).
POLL_SECONDS = 0.25
LISTEN_SECONDS = 5.0
#: The recent events a feed keeps for its streams, at most (bytes of their data): a stream
#: further behind reads the database.
RECENT_BYTES = 1024 * 1024
#: The longest Last-Event-ID taken (digits): within a 64-bit integer.
_MAX_ID_DIGITS = 18


@dataclass(frozen=True)
class EventLimits:
    """How long a stream lasts, and how many a process serves at once."""

    max_seconds: float = DEFAULT_MAX_SECONDS
    max_streams: int = DEFAULT_MAX_STREAMS


class Event(NamedTuple):
    seq: int
    kind: str
    data: str


def encode_event(event: Event) -> bytes:
    """One event in the text/event-stream format (a line break in the data: more lines)."""
    kind = "".join(event.kind.split())  # a field ends at a line break
    data = "".join(f"data: {line}\n" for line in event.data.splitlines() or [""])
    return f"id: {event.seq}\nevent: {kind}\n{data}\n".encode()


def parse_last_event_id(request: Request) -> int | None:
    """The id to resume after: ``Last-Event-ID`` (what a reconnecting EventSource sends),
    else ``?last_event_id=``; None when neither is given (or it is empty). 400 when it is
    not a whole number."""
    check_query(request, {"last_event_id"})
    raw = request.headers.get("Last-Event-ID")
    name = "Last-Event-ID"
    if not raw:  # the header wins: a browser reconnects to the same URL with a newer header
        raw, name = request.args.get("last_event_id"), "last_event_id"
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_ID_DIGITS):
        raise APIError(400, f"{name} must be the id of an event: a whole number of at most "
                       f"{_MAX_ID_DIGITS} digits, not {raw!r:.40}")
    return int(raw)


class EventFeed:
    """The events of one history for the streams of one process: one reader thread, however
    many streams."""

    def __init__(self, history: RunHistory) -> None:
        self.history = history
        self.pid = os.getpid()
        self.changed = threading.Condition()
        #: The newest event read; the recent ones kept are all those after ``floor``.
        self.latest = self.floor = history.last_event()
        self.recent: deque[Event] = deque()
        self._seqs: deque[int] = deque()  # the recent events' numbers, for bisection
        self._recent_bytes = 0
        self.streams = 0
        self._listener = (PostgresListener(history.engine, history.channel)
                          if history.engine.dialect.name == "postgresql" else None)
        self._thread: threading.Thread | None = None

    # -- the streams' side -----------------------------------------------------------------

    def acquire(self, max_streams: int) -> bool:
        """Count a new stream; False when ``max_streams`` are open already."""
        with self.changed:
            if self.streams >= max_streams:
                return False
            self.streams += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="scheduler_api-events")
                self._thread.start()
            self.changed.notify_all()  # an idle feed starts reading
            return True

    def release(self) -> None:
        with self.changed:
            self.streams -= 1
            if not self.streams:  # idle: its memory back (it reads afresh when one opens)
                self._forget_recent()
                self.floor = self.latest

    def _forget_recent(self) -> None:
        self.recent.clear()
        self._seqs.clear()
        self._recent_bytes = 0

    def read(self, after: int, timeout: float) -> list[Event]:
        """Up to READ_LIMIT events after ``after``, oldest first; waits up to ``timeout``
        seconds for one ([] if none came)."""
        with self.changed:
            if self.latest <= after:
                self.changed.wait(timeout)
                if self.latest <= after:
                    return []
            if after >= self.floor:
                # Numbers only grow: the first event after ``after`` is found by bisection,
                # so a stream far behind costs a read what one at the front does.
                start = bisect.bisect_right(self._seqs, after)
                return list(itertools.islice(self.recent, start, start + READ_LIMIT))
        # Further back than the feed keeps (a stream resuming): from the database.
        with deadline(STORE_WAIT_SECONDS):
            return [Event(*row) for row in self.history.events_after(after, READ_LIMIT)]

    # -- the reader thread -----------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            with self.changed:
                idle = not self.streams
                while not self.streams:
                    # Idle: no queries, and no LISTEN whose notifications nobody reads
                    # (PostgreSQL's queue of them is shared, and bounded).
                    if self._listener is not None:
                        self._listener.close()
                    self.changed.wait()
            try:
                if idle:
                    self._skip_to_newest()
                self._wait()
                self._read_new()
                failures = 0
            except Exception:
                failures += 1
                logger.warning("event stream: cannot read new events (try %d); trying again",
                               failures, exc_info=failures == 1)
                if self._listener is not None:
                    self._listener.close()
                time.sleep(min(5.0, POLL_SECONDS * 2**failures))

    def _skip_to_newest(self) -> None:
        """After a while without streams: not every event since then (a day's, perhaps) is
        read into the recent ones; a stream that wants them reads the database."""
        newest = self.history.last_event()
        with self.changed:
            if newest > self.latest:
                self._forget_recent()
                self.latest = self.floor = newest

    def _wait(self) -> None:
        if self._listener is None:
            time.sleep(POLL_SECONDS)
        elif self._listener.connected:
            self._listener.wait_for_notify(LISTEN_SECONDS)
        else:
            self._listener.connect()  # LISTEN first, then read: nothing falls between

    def _read_new(self) -> None:
        while True:
            rows = [Event(*row) for row in self.history.events_after(self.latest, READ_LIMIT)]
            if not rows:
                return
            with self.changed:
                for event in rows:
                    self.recent.append(event)
                    self._seqs.append(event.seq)
                    self._recent_bytes += _size(event)
                while self._recent_bytes > RECENT_BYTES and len(self.recent) > 1:
                    dropped = self.recent.popleft()
                    self._seqs.popleft()
                    self._recent_bytes -= _size(dropped)
                    self.floor = dropped.seq
                self.latest = rows[-1].seq
                self.changed.notify_all()
            if len(rows) < READ_LIMIT:
                return


def _size(event: Event) -> int:
    """What an event held in memory costs, about: its data and the tuple, int and strings."""
    return len(event.data) + len(event.kind) + 200


class EventStreams:
    """The event streams of one API in this process, and the feed they share."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feed: EventFeed | None = None

    def feed(self, history: RunHistory) -> EventFeed:
        with self._lock:
            feed = self._feed
            # A feed made before a fork (its thread stayed in the parent) or for another
            # history (the scheduler was set up again) is not this process's.
            if feed is None or feed.pid != os.getpid() or feed.history is not history:
                if inside_gunicorn_arbiter():
                    raise APIError(503, "no events in gunicorn's master process")
                feed = self._feed = EventFeed(history)
            return feed

    def open(self, history: RunHistory | None, request: Request,
             limits: EventLimits) -> EventStreamResponse:
        """The response to ``GET /events``: 400 on a malformed Last-Event-ID, 503 before the
        scheduler has started."""
        last_event_id = parse_last_event_id(request)
        if history is None:
            raise APIError(503, "the event stream is available once the scheduler has started")
        feed = self.feed(history)
        newest = history.last_event()
        # An id past the newest (a database reset): from now, else nothing would ever come.
        start = newest if last_event_id is None else min(last_event_id, newest)
        return EventStreamResponse(feed, start, limits)


_HEADERS = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no")]


class EventStreamResponse:
    """The WSGI answer of one stream: counted against the cap while its body is open."""

    def __init__(self, feed: EventFeed, start: int, limits: EventLimits) -> None:
        self.feed = feed
        self.start = start
        self.limits = limits

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "HEAD":
            start_response("200 OK", list(_HEADERS))
            return []
        if not self.feed.acquire(self.limits.max_streams):
            return error_response(503, f"too many event streams open in this process (at "
                                  f"most {self.limits.max_streams}); try again later",
                                  [("Retry-After", "5")])(environ, start_response)
        body = EventStreamBody(self.feed, self.start, self.limits.max_seconds,
                               environ.get("gunicorn.socket") or environ.get("werkzeug.socket"))
        start_response("200 OK", list(_HEADERS))
        return body


class EventStreamBody:
    """The body of one stream: an iterator of small chunks that the server pulls one at a
    time, so a slow client holds back the stream, never a growing buffer. ``close()`` (the
    server calls it, whatever happened) gives its place back."""

    def __init__(self, feed: EventFeed, after: int, max_seconds: float,
                 sock: socket.socket | None) -> None:
        self.feed = feed
        self._chunks = self._stream(after, time.monotonic() + max_seconds)
        self._closed = False
        self._socket = sock if isinstance(sock, socket.socket) else None
        self._socket_timeout: float | None = None
        self._readable = select.poll()
        if self._socket is not None:
            self._readable.register(self._socket, select.POLLIN)
            # A client that stops reading fills the socket's buffer; a send then fails after
            # this long, instead of holding the worker's thread until the stream's end.
            self._socket_timeout = self._socket.gettimeout()
            self._socket.settimeout(SEND_TIMEOUT_SECONDS)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:  # the end (StopIteration) or a failure: the place is free now,
            self.close()       # also for a server that forgets to call close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._chunks.close()
        if self._socket is not None:
            try:
                self._socket.settimeout(self._socket_timeout)
            except OSError:  # closed already
                pass
        self.feed.release()

    def _stream(self, after: int, end: float) -> Generator[bytes, None, None]:
        yield (f"retry: {RETRY_MILLISECONDS}\n: events of {socket.gethostname().lower()} "
               f"pid {os.getpid()}\n\n").encode()
        keepalive = time.monotonic() + KEEPALIVE_SECONDS
        while True:
            now = time.monotonic()
            if now >= end:
                return  # the client reconnects, with Last-Event-ID
            if now >= keepalive:
                yield b": keepalive\n\n"
                keepalive = now + KEEPALIVE_SECONDS
            wait = min(end, keepalive) - now
            if self._socket is not None:
                wait = min(wait, CLIENT_CHECK_SECONDS)
            try:
                events = self.feed.read(after, wait)
            except Exception:  # the database, while catching up: end; the client comes back
                logger.warning("event stream: cannot read events after %d; the stream ends",
                               after, exc_info=True)
                return
            if not events and self._client_gone():
                return
            for event in events:
                yield encode_event(event)
                after = event.seq
                keepalive = time.monotonic() + KEEPALIVE_SECONDS

    def _client_gone(self) -> bool:
        """Whether the client closed the connection (or reset it): seen without blocking and
        without taking a byte from the socket, which stays the server's."""
        sock = self._socket
        if sock is None or not self._readable.poll(0):
            return False
        try:
            # The TCP connection itself, also under TLS (an SSLSocket's recv takes no flags).
            # Bytes waiting say nothing (a pipelined request, or TLS's close_notify ahead of
            # the FIN): a failing write finds out then.
            return socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:  # nothing to read after all
            return False
        except OSError:  # reset, or closed already
            return True
