"""A deal's state from the SET of its events (pure, no I/O): the order-independent rule
of ARCHITECTURE.md, spelt once for every service that keeps deal state (metrics for
the figures, handoff for the outcome of the leads it handed over).

CRMs deliver late, twice and out of order, so nothing here looks at arrival order.
Every event gets a place in one total order, the same whatever order the events came in:

1. when it happened (the envelope ``time``);
2. its place in the lifecycle: at the same instant a deal is opened before it is
   updated, and updated before it is won or lost (senders often stamp whole seconds,
   and an opening and a close in the same second happened in that order);
3. the sender's delivery id (a webhook id); an event without one comes first;
4. what the event says, so that two events equal in all of the above give the same
   result in either order. The random event id is never used: it would decide a tie
   differently on every replay of the same deliveries.

A deal's field takes its value from the last event (in that order) whose
``fields_set`` names it (absent: every field); its status is that of the last
status-changing event (``opened``, ``won``, ``lost``), so an update never changes it,
and an ``opened`` after a close is a reopen. A deal exists from its first event, even
if that is a ``won`` whose ``opened`` has not arrived.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from uuid import UUID

from funnel_common.events import DealLost, DealOpened, DealUpdated, DealWon, Envelope

DealKind = Literal["opened", "updated", "won", "lost"]
DealStatus = Literal["open", "won", "lost"]

DEAL_FIELDS = ("lead_id", "attribution", "amount_cents", "stage", "expected_close_date")
DEAL_LIFECYCLE: dict[str, int] = {"opened": 0, "updated": 1, "won": 2, "lost": 2}


@dataclass(frozen=True)
class DealEvent:
    """What one deal event says, as a service keeps it."""

    deal_id: str
    kind: DealKind
    occurred_at: datetime
    delivery_id: str | None
    fields_set: tuple[str, ...] | None
    """The fields this delivery set; None: every field."""
    lead_id: UUID | None
    source: str
    campaign: str
    amount_cents: int
    stage: str
    expected_close_date: date | None
    closed_on: date | None = None
    lost_reason: str | None = None

    def sets(self, name: str) -> bool:
        return self.fields_set is None or name in self.fields_set


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _when(event: DealEvent) -> tuple[datetime, int, bool, str]:
    return (
        event.occurred_at,
        DEAL_LIFECYCLE[event.kind],
        event.delivery_id is not None,
        event.delivery_id or "",
    )


def _says(event: DealEvent) -> tuple[str, ...]:
    return (
        event.kind,
        _text(event.lead_id),
        event.source,
        event.campaign,
        f"{event.amount_cents:020d}",
        event.stage,
        _text(event.expected_close_date),
        ",".join(sorted(event.fields_set)) if event.fields_set is not None else "*",
        _text(event.closed_on),
        _text(event.lost_reason),
    )


def deal_order(event: DealEvent) -> tuple[datetime, int, bool, str, tuple[str, ...]]:
    """The event's place among its deal's events (see the module docstring)."""
    return (*_when(event), _says(event))


def in_order(events: Iterable[DealEvent]) -> list[DealEvent]:
    """The distinct events, sorted by :func:`deal_order`: by the first four parts, and
    by what they say only where those tie (rare, and the costly part to build)."""
    ordered = sorted(events, key=_when)
    keys = [_when(event) for event in ordered]
    result: list[DealEvent] = []
    start = 0
    while start < len(ordered):
        end = start + 1
        while end < len(ordered) and keys[end] == keys[start]:
            end += 1
        if end - start == 1:
            result.append(ordered[start])
        else:
            result.extend(sorted(set(ordered[start:end]), key=_says))
        start = end
    return result


@dataclass(frozen=True)
class Deal:
    """A deal's state as the set of its events says."""

    deal_id: str
    status: DealStatus
    lead_id: UUID | None
    source: str
    campaign: str
    amount_cents: int
    stage: str
    expected_close_date: date | None
    closed_on: date | None
    lost_reason: str | None
    opened_at: datetime
    """Its ``opened`` event's time (the earliest, if several), else its first event's."""
    reopens: int
    """How many times an ``opened`` follows a close: never fewer as more events come."""
    wins: int
    """How many times the deal became won (a ``won`` after any other status): never fewer
    as more events come, wherever a late one falls."""
    losses: int
    """The same for ``lost``."""


def fold_deal(events: Iterable[DealEvent]) -> Deal:
    """One deal's state from its events, in any order and with any duplicates."""
    ordered = in_order(events)
    if not ordered:
        raise ValueError("a deal needs at least one event")
    last = ordered[-1]
    # Walking backwards, the first event to set a field is the last to have set it.
    setting: dict[str, DealEvent] = {}
    last_status: DealEvent | None = None
    for event in reversed(ordered):
        if last_status is None and event.kind != "updated":
            last_status = event
        if event.fields_set is None:
            for name in DEAL_FIELDS:
                setting.setdefault(name, event)
        else:
            for name in event.fields_set:
                setting.setdefault(name, event)
        if last_status is not None and len(setting) == len(DEAL_FIELDS):
            break

    def of(name: str) -> DealEvent:
        # No delivery set it (each named other fields): the last one carries what was
        # known of it when it was recorded.
        return setting.get(name, last)

    statuses = [event.kind for event in ordered if event.kind != "updated"]
    closed = last_status is not None and last_status.kind in ("won", "lost")
    status: DealStatus = last_status.kind if closed else "open"  # type: ignore[assignment, union-attr]
    reopens = sum(
        1
        for before, after in itertools.pairwise(statuses)
        if before in ("won", "lost") and after == "opened"
    )
    changes = list(itertools.pairwise(["opened", *statuses]))
    wins = sum(1 for before, after in changes if after == "won" and before != "won")
    losses = sum(1 for before, after in changes if after == "lost" and before != "lost")
    opening = next((event for event in ordered if event.kind == "opened"), ordered[0])
    attribution = of("attribution")
    return Deal(
        deal_id=last.deal_id,
        status=status,
        lead_id=of("lead_id").lead_id,
        source=attribution.source,
        campaign=attribution.campaign,
        amount_cents=of("amount_cents").amount_cents,
        stage=of("stage").stage,
        expected_close_date=of("expected_close_date").expected_close_date,
        closed_on=last_status.closed_on if closed and last_status else None,
        lost_reason=last_status.lost_reason if status == "lost" and last_status else None,
        opened_at=opening.occurred_at,
        reopens=reopens,
        wins=wins,
        losses=losses,
    )


DealEnvelope = DealOpened | DealUpdated | DealWon | DealLost
_DEAL_KINDS: dict[type[Envelope], DealKind] = {
    DealOpened: "opened",
    DealUpdated: "updated",
    DealWon: "won",
    DealLost: "lost",
}


def deal_event(event: DealEnvelope) -> DealEvent:
    """What a deal event on ``funnel.deals`` says, as :func:`fold_deal` takes it."""
    data = event.data
    kind = _DEAL_KINDS[type(event)]
    closes = kind in ("won", "lost")
    return DealEvent(
        deal_id=data.deal_id,
        kind=kind,
        occurred_at=event.time,
        delivery_id=data.delivery_id,
        fields_set=None if data.fields_set is None else tuple(sorted(set(data.fields_set))),
        lead_id=data.lead_id,
        source=data.attribution.source,
        campaign=data.attribution.campaign or "",
        amount_cents=data.amount_cents,
        stage=data.stage,
        expected_close_date=data.expected_close_date,
        # Only the won and lost payloads (DealWonData, DealLostData) carry these.
        closed_on=getattr(data, "closed_on", None) if closes else None,
        lost_reason=getattr(data, "reason", None) if kind == "lost" else None,
    )
