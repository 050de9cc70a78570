"""Group commit: concurrent requests share one transaction, one commit and one wake-up.

A request hands its prepared work to the committer and waits for its outcome. Up to
``max_in_flight`` batches are written at a time, each on its own connection: work that
arrives while a writer is free is written at once, alone; work that arrives while all
are busy is written together by the next free one. Concurrent batches are isolated from
each other by PostgreSQL's locks, exactly as two replicas' batches are. A request's
outcome is handed back only after its batch committed, so a 2xx still means stored. A
batch that fails for any reason other than PostgreSQL being unavailable is written again
member by member, so one bad submission fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

import asyncpg

from funnel_common import outbox
from funnel_common.db import is_unavailable

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class Deferred:
    """An item that conflicts with an earlier member of its batch: it goes in the next."""


DEFER: Final = Deferred()

WriteBatch = Callable[[asyncpg.Connection, Sequence[Item]], Awaitable[list[Outcome | Deferred]]]
"""Writes a batch inside an open transaction; one outcome (or DEFER) per item, in order.

The first item of a batch is never deferred."""


class CommitterStopped(ConnectionError):
    """The service is shutting down: nothing was stored (answered 503 like an outage)."""


@dataclass
class _Pending(Generic[Item, Outcome]):
    item: Item
    answer: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def resolve(self, outcome: Outcome) -> None:
        if not self.answer.done():  # the request may have been cancelled meanwhile
            self.answer.set_result(outcome)

    def fail(self, error: BaseException) -> None:
        if not self.answer.done():
            self.answer.set_exception(error)


class GroupCommitter(Generic[Item, Outcome]):
    """Writes submitted items in batches, each batch in one transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        write: WriteBatch[Item, Outcome],
        *,
        max_batch: int,
        max_wait_seconds: float,
        max_in_flight: int = 1,
        observe_size: Callable[[int], None] = lambda _: None,
    ) -> None:
        self._pool = pool
        self._write = write
        self._max_batch = max_batch
        self._max_wait = max_wait_seconds
        self._max_in_flight = max_in_flight
        self._observe_size = observe_size
        self._queue: asyncio.Queue[_Pending[Item, Outcome]] = asyncio.Queue()
        self._carried: list[_Pending[Item, Outcome]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Outcome:
        """The item's outcome, once the batch that wrote it has committed."""
        if self._task is None or self._task.done():
            raise CommitterStopped("the lead committer is not running")
        pending: _Pending[Item, Outcome] = _Pending(item)
        self._queue.put_nowait(pending)
        return await pending.answer

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[GroupCommitter[Item, Outcome]]:
        """Runs the commit loop for the lifetime of the block."""
        self._task = asyncio.create_task(self._run(), name="lead-group-commit")
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        in_flight: list[list[_Pending[Item, Outcome]]] = []

        async def worker() -> None:
            while True:
                batch = await self._next_batch()
                in_flight.append(batch)
                try:
                    await self._commit(batch)
                finally:
                    in_flight.remove(batch)

        try:
            await asyncio.gather(*(worker() for _ in range(self._max_in_flight)))
        finally:
            stopped = CommitterStopped("lead-intake is shutting down; nothing was stored")
            for pending in [*(p for batch in in_flight for p in batch), *self._carried]:
                pending.fail(stopped)
            while not self._queue.empty():
                self._queue.get_nowait().fail(stopped)

    async def _next_batch(self) -> list[_Pending[Item, Outcome]]:
        batch, self._carried = self._carried, []
        if not batch:
            batch.append(await self._queue.get())
        if self._max_wait > 0:
            # Linger a little for company, only while there is room and no one waiting.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._max_wait):
                    while len(batch) < self._max_batch:
                        batch.append(await self._queue.get())
        while len(batch) < self._max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return [pending for pending in batch if not pending.answer.done()]

    async def _commit(self, batch: list[_Pending[Item, Outcome]]) -> None:
        if not batch:
            return
        self._observe_size(len(batch))
        try:
            async with outbox.transaction(self._pool) as connection:
                written = await self._write(connection, [p.item for p in batch])
        except Exception as error:
            if is_unavailable(error) or len(batch) == 1:
                for pending in batch:
                    pending.fail(error)
                return
            log.warning(
                "lead batch failed; writing its members one by one",
                extra={"size": len(batch), "error": type(error).__name__},
            )
            for pending in batch:
                await self._commit([pending])
            return
        # Committed: only now may the requests answer.
        self._settle(batch, written)

    def _settle(
        self, batch: list[_Pending[Item, Outcome]], outcomes: list[Outcome | Deferred]
    ) -> None:
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Deferred):
                self._carried.append(pending)
            else:
                pending.resolve(outcome)
