"""Load generation: a closed loop (as fast as N clients go) and an open loop (fixed rate)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Run:
    requests: int = 0
    failures: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def closed_loop(
    call: Callable[[int], Awaitable[bool]], *, concurrency: int, seconds: float
) -> Run:
    """``concurrency`` workers call ``call(i)`` back to back for ``seconds``."""
    run = Run()
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            ok = await call(next(counter))
            run.latencies.append(time.perf_counter() - started)
            run.requests += ok
            run.failures += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - started
    return run


async def open_loop(
    call: Callable[[int], Coroutine[Any, Any, None]], *, rate: float, seconds: float
) -> None:
    """Start ``call(i)`` every 1/rate seconds, whatever the answers' speed."""
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    for index in range(int(rate * seconds)):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(call(index)))
    await asyncio.gather(*tasks)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
