"""How long to wait before trying again: one rule for every loop that retries.

An outage (PostgreSQL restarting, the broker gone, a webhook receiver down) makes every
replica's outbox relay, consumer and notifier fail at the same moment. With plain
doubling they would all come back at the same moments too, and meet the recovering
server as one wave each time. The delays here double from ``first`` up to ``cap`` and
are "equal jitter": half of each delay is fixed and half is random, so replicas spread
out while every delay still grows (a retry never comes sooner than half the doubled
delay). The arithmetic is tenacity's (``wait_exponential`` plus
``wait_random_exponential``), so it is the maintained library's, not ours.
"""

from __future__ import annotations

import asyncio

from tenacity import RetryCallState, Retrying, wait_exponential, wait_random_exponential


class Backoff:
    """Delays for successive failures; :meth:`reset` after a success.

    ``first`` is the delay after the first failure (between ``first / 2`` and
    ``first``), ``cap`` the largest delay (between ``cap / 2`` and ``cap``).
    """

    def __init__(self, *, first: float, cap: float) -> None:
        if first < 0 or cap < first:
            raise ValueError("backoff needs 0 <= first <= cap")
        half_first, half_cap = first / 2, cap / 2
        self._fixed = wait_exponential(multiplier=half_first, max=half_cap)
        self._random = wait_random_exponential(multiplier=half_first, max=half_cap)
        # tenacity's wait strategies read the attempt number from a call state; this one
        # only ever carries that number.
        self._state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
        self.failures = 0

    def delay(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failures (1 for the first)."""
        self._state.attempt_number = max(1, failures)
        return float(self._fixed(self._state) + self._random(self._state))

    def next_delay(self) -> float:
        """Count one more failure; the delay to wait before the next try."""
        self.failures += 1
        return self.delay(self.failures)

    async def wait(self) -> None:
        """Count one more failure and sleep its delay."""
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        """After a success: the next failure waits ``first`` again."""
        self.failures = 0
