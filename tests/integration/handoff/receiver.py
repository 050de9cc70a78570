"""A local webhook receiver: a minimal HTTP/1.1 server that records what it is sent."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    port: int
    failures_left: int = 0
    """Answer 500 to this many requests first (a receiver having trouble)."""
    refusing: dict[str, int] = field(default_factory=dict)
    """Paths answered with this status every time (a hook that was deleted: 404)."""
    refused: list[Received] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            path = request_line.split(" ")[1]
            if path in self.refusing:
                self.refused.append(Received(path, headers, body))
                status = f"{self.refusing[path]} Refused"
            elif self.failures_left > 0:
                self.failures_left -= 1
                status = "500 Internal Server Error"
            else:
                self.received.append(Received(request_line.split(" ")[1], headers, body))
                status = "200 OK"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()
