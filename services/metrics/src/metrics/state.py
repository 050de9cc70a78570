"""An account's state from the SET of its events (pure, no I/O).

Billing systems deliver late, twice and out of order (ARCHITECTURE.md, "Order
independence"), so an account's events are put in one total order, the same whatever
order they came in: when it happened, then its place in the lifecycle (at the same
instant an account is activated, then its ARR changes, then it churns), then the
sender's delivery id (none first), then the ARR. ``store.py`` sorts account events
with :func:`account_order` spelt in SQL. Deals follow the same rule, spelt once for
every service in :mod:`funnel_common.deals`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

AccountKind = Literal["activated", "arr_changed", "churned"]

ACCOUNT_LIFECYCLE: dict[str, int] = {"activated": 0, "arr_changed": 1, "churned": 2}


@dataclass(frozen=True)
class AccountEvent:
    """What one account event says: whether the account is a customer, and its ARR."""

    account_id: str
    kind: AccountKind
    occurred_at: datetime
    delivery_id: str | None
    arr_cents: int
    """0 for a churn."""

    @property
    def active(self) -> bool:
        return self.kind != "churned"


def account_order(event: AccountEvent) -> tuple[datetime, int, bool, str, int]:
    """The event's place among its account's events (store.py sorts by the same key)."""
    return (
        event.occurred_at,
        ACCOUNT_LIFECYCLE[event.kind],
        event.delivery_id is not None,
        event.delivery_id or "",
        event.arr_cents,
    )


def account_at(events: Iterable[AccountEvent], instant: datetime) -> AccountEvent | None:
    """The account's state just before ``instant``: its last event before then."""
    before = [event for event in events if event.occurred_at < instant]
    return max(before, key=account_order) if before else None
