"""A request head is bounded in size and in time, in the server every deployment runs.

metrics' web process is started as `funnel dev`, the images and the manifests start it
(uvicorn with ``SERVER_OPTIONS``, a real process on a real socket), and raw sockets play
the hostile clients: an oversized head is answered 431 and the process stays healthy; a
head that never completes, or a connection that sends nothing, is closed within the
timeout; ordinary requests, kept-alive ones included, still pass.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from funnel_common.server import HEAD_TIMEOUT_SECONDS, MAX_HEAD_BYTES
from funnel_tools.dev import SERVER_OPTIONS
from funnel_tools.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, wait_until

# How long past the head timeout a disconnection may take on a loaded 2-core box.
SLACK_SECONDS = 10.0


@pytest.fixture(scope="module")
def server(postgres: EmbeddedPostgres, tansu_broker: EmbeddedBroker) -> Iterator[tuple[str, int]]:
    """One server for the module: what one test does to it must not harm the next."""
    port = free_port()
    database = f"limits_{os.getpid()}"
    postgres.create_database(database)
    env = {
        **os.environ,
        "FUNNEL_METRICS_DATABASE_URL": postgres.dsn(database),
        "FUNNEL_ENVIRONMENT": "test",
        "FUNNEL_KAFKA_BOOTSTRAP_SERVERS": tansu_broker.bootstrap_servers,
        **{f"FUNNEL_{k.upper()}": str(v) for k, v in EmbeddedBroker.CLIENT_SETTINGS.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "metrics.web:create_app",
         "--host", "127.0.0.1", "--port", str(port), *SERVER_OPTIONS],
        env=env,
    )  # fmt: skip
    try:
        wait_until(lambda: _healthy(port), timeout=60, what="metrics' /healthz", interval=0.2)
        yield ("127.0.0.1", port)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _exchange(address: tuple[str, int], request: bytes) -> bytes:
    """Send ``request``; everything the server answers until it closes."""
    with socket.create_connection(address, timeout=HEAD_TIMEOUT_SECONDS + SLACK_SECONDS) as conn:
        conn.sendall(request)
        return _read_to_close(conn)


def _read_to_close(conn: socket.socket) -> bytes:
    received = b""
    while chunk := conn.recv(65536):  # a socket timeout fails the test: never closed
        received += chunk
    return received


def _read_response(conn: socket.socket) -> bytes:
    """One response on a kept-alive connection: its head, then content-length bytes."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += conn.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


def _head(*fields: str, target: str = "/healthz") -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: metrics", *fields, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


BIG = 64 * 1024 + 1


@pytest.mark.parametrize(
    "request_head",
    [
        _head(f"X-Big: {'a' * BIG}"),
        _head(*(f"X-Many-{n}: {'b' * 60}" for n in range(BIG // 70))),
        _head(target="/healthz?" + "c" * BIG),
    ],
    ids=["one-big-header", "many-headers", "long-target"],
)
def test_an_oversized_head_is_431_and_the_server_stays_healthy(
    server: tuple[str, int], request_head: bytes
) -> None:
    assert len(request_head) > MAX_HEAD_BYTES

    answer = _exchange(server, request_head)

    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower()
    assert b'"status": 431' in body
    assert _healthy(server[1])


def test_a_head_that_does_not_complete_is_answered_408_and_closed(
    server: tuple[str, int],
) -> None:
    half = b"GET /healthz HTTP/1.1\r\nHost: metrics\r\nX-Slow: "

    answer = _exchange(server, half)

    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"application/problem+json" in answer
    assert _healthy(server[1])


def test_a_connection_that_sends_nothing_is_closed(server: tuple[str, int]) -> None:
    assert _exchange(server, b"") == b""


def test_ordinary_requests_pass_kept_alive_and_with_large_headers(
    server: tuple[str, int],
) -> None:
    keep_alive = b"GET /healthz HTTP/1.1\r\nHost: metrics\r\nX-Cookieish: " + b"d" * 16384
    with socket.create_connection(server, timeout=HEAD_TIMEOUT_SECONDS + SLACK_SECONDS) as conn:
        for _ in range(2):
            conn.sendall(keep_alive + b"\r\n\r\n")
            assert _read_response(conn).startswith(b"HTTP/1.1 200 OK\r\n")
        # Past a first request, the next head is bounded in time too.
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert _read_to_close(conn).startswith(b"HTTP/1.1 408 ")
