"""How every service's HTTP server reads a request head: bounded in size and in time.

uvicorn's httptools protocol reads a request head of any size (a 10 MB header was
answered 200, all of it held in memory) and waits forever for a head that never
completes: its keep-alive timeout runs only between requests, so a client that opens a
connection and sends half a request line (or nothing) holds a socket, its buffers and a
slot of ``--limit-concurrency`` for as long as it likes. uvicorn's own size limit,
``--h11-max-incomplete-event-size``, exists for h11 only and answers 400, not 431.

``BoundedHttpToolsProtocol`` is httptools' protocol with both bounds. uvicorn takes an
import string for ``--http`` as well as a name, so it is selected as
``--http funnel_common.server:BoundedHttpToolsProtocol`` (``funnel dev``, the images,
compose and the manifests alike; ``tests/deploy/test_server_options.py``):

- a request head (request line and header fields) over ``MAX_HEAD_BYTES`` is answered
  431 ``application/problem+json`` and the connection closed;
- a connection whose request head is not complete ``HEAD_TIMEOUT_SECONDS`` after it
  opened (or after the request's first byte, for the next request on a kept-alive
  connection) is answered 408 if part of a head arrived, and closed.

The body is not timed here: the services bound it in size (``BodyLimitMiddleware``), and
a route reads it only after authenticating where it needs a token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from funnel_common.http import PROBLEM_MEDIA_TYPE

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 32 * 1024
"""nginx's default for all of a request's large header buffers (4 x 8 KiB); a browser's
request with the inbox's cookie is well under 2 KiB."""
HEAD_TIMEOUT_SECONDS = 5.0
"""A head is one or two packets; behind the ingress it arrives whole."""
LINGER_SECONDS = 2.0
"""After a refusal, how long what the client still sends is read and dropped (at most
``MAX_HEAD_BYTES`` more), so that closing with unread data does not reset the connection
before the client has read the refusal (nginx's lingering close)."""


class HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing an oversized head."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools' protocol, with the request head bounded in size and in time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True  # from the connection's start, or a request's first byte
        self._head_begun = False  # a request's first byte arrived
        self._head_bytes = 0  # read while the head is incomplete at the end of a read
        self._head_size = 0  # the request line's target and header fields, as parsed
        self._head_too_large = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._dropped_bytes: int | None = None  # counting once refused, lingering

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._dropped_bytes is not None:
            self._dropped_bytes += len(data)
            if self._dropped_bytes > MAX_HEAD_BYTES:
                self.transport.close()
            return
        # Two counts, as one read (up to the event loop's read size, 256 KiB) may carry a
        # whole head and more: the parsed fields (on_url, on_header; httptools hands a
        # header over only once complete), and the bytes of reads that end with the head
        # still incomplete (what httptools buffers meanwhile). A head that began inside a
        # read (after a previous request's body) is counted in bytes from the next read.
        was_reading_head = self._reading_head
        super().data_received(data)
        if not (was_reading_head and self._reading_head) or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse_too_large()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEAD_BYTES:
            # Stops the parser; uvicorn answers a parser error with send_400_response.
            self._head_too_large = True
            raise HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse_too_large()
        else:
            super().send_400_response(msg)

    def _refuse_too_large(self) -> None:
        log.warning("request head over %d bytes; answered 431", MAX_HEAD_BYTES)
        self._refuse(
            431,
            "request-header-fields-too-large",
            "Request header fields too large",
            f"the request line and header fields may take {MAX_HEAD_BYTES} bytes",
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_begun = True
        self._head_bytes = 0
        self._head_size = 0
        # A connection's first request keeps the deadline counted from its opening.
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_begun = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._reading_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a request still being answered: that request's
            # own time is not the head's.
            self._arm_head_timer()
            return
        if self._head_begun:
            self._refuse(
                408,
                "request-timeout",
                "Request timeout",
                f"the request head did not complete within {HEAD_TIMEOUT_SECONDS:g} seconds",
            )
        else:
            # Nothing sent at all (an idle or pre-opened connection): closed silently,
            # as uvicorn closes an idle kept-alive one; a 408 there confuses clients.
            self.transport.close()

    def _refuse(self, status: int, slug: str, title: str, detail: str) -> None:
        body = json.dumps(
            {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
        ).encode()
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                f"content-type: {PROBLEM_MEDIA_TYPE}\r\n".encode(),
                f"content-length: {len(body)}\r\n".encode(),
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self._reading_head = False
        self._cancel_head_timer()
        self.transport.write(b"".join(content))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # Half-closed: the refusal, then our FIN; what still arrives is dropped until the
        # client closes (eof_received closes our side) or the linger ends.
        self.transport.write_eof()
        self._dropped_bytes = 0
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
