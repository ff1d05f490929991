"""An event stream whose client went away gives its place back within about a second, when
the server gives the stream its socket (docs/events.md, Limits)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from scheduler_api import events as events_module
from scheduler_api.events import CLIENT_CHECK_SECONDS

from .api_helpers import AUTH, APIClient, running_api
from .conftest import gunicorn
from .test_cluster import cluster_env


@pytest.fixture
def client(tmp_path):
    """The in-process API, serving one stream at a time, each for a minute; what it recorded
    as it started is written (a stream would get it)."""
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_EVENTS_MAX_SECONDS=60,
                     SCHEDULER_EVENTS_MAX_STREAMS=1) as (scheduler, client):
        assert scheduler.recorder.flush()
        yield client


@contextmanager
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback TCP connection: (the server's end, the client's end)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client_side = socket.create_connection(listener.getsockname())
        server_side, _ = listener.accept()
    with server_side, client_side:
        yield server_side, client_side


@contextmanager
def stream_on(client: APIClient, server_side: socket.socket) -> Iterator[Iterator[bytes]]:
    """A stream served as gunicorn would, on ``server_side``; its greeting read."""
    response = client.get("/events", buffered=False,
                          environ_overrides={"gunicorn.socket": server_side})
    assert response.status_code == 200
    try:
        chunks = iter(response.response)
        assert next(chunks).startswith(b"retry:")
        yield chunks
    finally:
        response.close()


def place_free(client: APIClient) -> bool:
    response = client.get("/events", buffered=False)
    response.close()
    return response.status_code == 200


@pytest.mark.parametrize("how", ["closed", "reset"])
def test_a_stream_ends_within_about_a_second_of_its_client_going(client, how):
    with connection() as (server_side, client_side), stream_on(client, server_side) as chunks:
        assert not place_free(client)
        if how == "reset":
            client_side.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client_side.close()
        gone = time.monotonic()
        assert next(chunks, None) is None  # the end, not a keepalive 15 s later
        assert time.monotonic() - gone < CLIENT_CHECK_SECONDS + 1
        assert place_free(client)


def test_a_client_that_only_shut_down_its_sending_side_is_taken_as_gone(client):
    """A decision (docs/events.md): a half-close (shutdown(SHUT_WR), netcat -N) cannot be told
    from a close without writing to the client, and nginx, which the docs put in front, ends
    a proxied request on it too (proxy_ignore_client_abort off)."""
    with connection() as (server_side, client_side), stream_on(client, server_side) as chunks:
        client_side.shutdown(socket.SHUT_WR)
        gone = time.monotonic()
        assert next(chunks, None) is None
        assert time.monotonic() - gone < CLIENT_CHECK_SECONDS + 1
        assert place_free(client)


def test_a_request_sent_behind_the_stream_is_no_close_and_stays_unread(client, monkeypatch):
    monkeypatch.setattr(events_module, "KEEPALIVE_SECONDS", 2.5)
    pipelined = b"GET /scheduler HTTP/1.1\r\nHost: x\r\n\r\n"
    with connection() as (server_side, client_side):
        with stream_on(client, server_side) as chunks:
            client_side.sendall(pipelined)
            assert next(chunks) == b": keepalive\n\n"  # looked at it twice meanwhile
        assert server_side.recv(1024) == pipelined  # for the server, whole


# -- under gunicorn ---------------------------------------------------------------------------

def open_raw_stream(address: tuple[str, int]) -> tuple[socket.socket, int]:
    """A stream through a new connection, its greeting read; (socket, status)."""
    sock = socket.create_connection(address, timeout=10)
    sock.sendall((f"GET /scheduler/events HTTP/1.1\r\nHost: {address[0]}\r\n"
                  f"Authorization: {AUTH['Authorization']}\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return sock, int(data.split(b" ", 2)[1])


def test_under_gunicorn_a_stream_whose_client_closed_frees_its_place_within_two_seconds(
        tmp_path):
    """gunicorn sends each chunk with one sendall, which the kernel takes after the client's
    FIN; only the write after it fails. A client that read what it got and closed (a browser
    leaving a UI page: each page opens an EventSource) kept its place under
    SCHEDULER_EVENTS_MAX_STREAMS for two keepalives: 29-30 s with the default 15 s on
    gunicorn 27, new streams meanwhile 503s, which an EventSource does not retry. Now the
    waiting stream sees the close on the socket."""
    env = {**cluster_env(tmp_path / "runs.log", f"sqlite:///{tmp_path / 'jobs.sqlite'}"),
           "SCHEDULER_EVENTS_MAX_STREAMS": "1", "SCHEDULER_EVENTS_MAX_SECONDS": "60"}
    with gunicorn("tests.cluster_app:app", "-k", "gthread", "--threads", "4",
                  env=env) as address:
        sock, status = open_raw_stream(address)
        assert status == 200
        sock.settimeout(0.3)
        try:
            while sock.recv(65536):  # all it was sent, so that close() sends a FIN
                pass
        except TimeoutError:
            pass
        sock.close()
        time.sleep(2.0)
        again, status = open_raw_stream(address)
        again.close()
        assert status == 200, "the gone client still holds the only place"
