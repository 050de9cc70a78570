"""Background workers (the outbox relay, the consumer) on an event loop of their own.

On the request event loop, the relay and the consumer waited behind every request and
every ``/metrics`` scrape: under 200 leads/s a lone event that is published in 6-20 ms
took hundreds of ms, and the metrics consumer's fetch and apply waited behind scrapes
that each read the database. A :class:`WorkerThread` runs them on a loop in a thread
of their own, so their waits are their own. The GIL still shares the CPU; what this
buys is loop latency.

asyncpg pools and Kafka clients belong to the loop that created them: whatever a
worker uses is created inside the worker loop (:meth:`WorkerThread.call`), never
shared with the request loop.

A worker that ends with an error is logged with its traceback and listed in
:attr:`WorkerThread.stopped`, which ``/healthz`` reports (a liveness failure: the
process answers but no longer does its work).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncpg

log = logging.getLogger(__name__)

T = TypeVar("T")


class WorkerThread:
    """An event loop in a daemon thread, running named worker tasks until stopped."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._tasks: list[asyncio.Task[None]] = []
        self._pools: list[asyncpg.Pool] = []
        self.stopped: list[str] = []
        """Names of workers that ended on their own (they are meant to run until stopped)."""

    def start(self) -> None:
        """Start the thread and its loop."""
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the worker loop and wait for its result from the caller's
        loop (e.g. to open a pool that belongs to the worker loop)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def spawn(self, worker: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Run ``worker()`` as a task on the worker loop until :meth:`stop`."""

        def create() -> None:
            task = self._loop.create_task(worker(), name=name)
            task.add_done_callback(self._ended)
            self._tasks.append(task)

        self._loop.call_soon_threadsafe(create)

    def close_on_stop(self, pool: asyncpg.Pool) -> None:
        """Close ``pool`` (opened on the worker loop) once the workers have stopped."""
        self._pools.append(pool)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        self.stopped.append(task.get_name())
        error = task.exception()
        log.error(
            "worker stopped",
            extra={"worker": task.get_name()},
            exc_info=(type(error), error, error.__traceback__) if error is not None else None,
        )

    async def stop(self, *, grace_seconds: float) -> None:
        """Cancel the workers, give them ``grace_seconds`` to close their clients, then
        close their pools and end the thread.

        A Kafka client closing against a broker that is slow or gone can wait out its
        whole request timeout; a shutdown must not wait that long. Nothing is lost by
        not waiting: offsets are committed and outbox rows marked only after the work
        they stand for is done.
        """
        try:
            await asyncio.wait_for(self.call(self._shutdown(grace_seconds)), 3 * grace_seconds)
        except TimeoutError:
            log.warning("worker loop did not stop in time; leaving it", extra={"loop": self.name})
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, grace_seconds)

    async def _shutdown(self, grace_seconds: float) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, still_running = await asyncio.wait(self._tasks, timeout=grace_seconds)
            if still_running:
                log.warning(
                    "workers did not stop in time; leaving them",
                    extra={"workers": sorted(task.get_name() for task in still_running)},
                )
        for pool in self._pools:
            try:
                await asyncio.wait_for(pool.close(), grace_seconds)
            except TimeoutError:
                pool.terminate()
