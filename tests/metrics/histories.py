"""Hypothesis strategies for random funnel histories: plausible, late and out of order.

Each history uses fresh ids, so many histories can share one database and broker; the
oracle then recomputes over everything sent so far.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

from hypothesis import strategies as st

from funnel_common.events import (
    AccountActivated,
    AccountArrChanged,
    AccountChurned,
    DealLost,
    DealOpened,
    DealUpdated,
    DealWon,
    Envelope,
    HandoffAccepted,
    HandoffRejected,
    HandoffSlaBreached,
    LeadCaptured,
    LeadDisqualified,
    LeadQualified,
    TargetSet,
)
from tests.metrics.oracle import REASONS

SOURCES = ["web", "webinar", "trade_show"]  # trade_show is not allow-listed: "other"
CAMPAIGNS = [None, "spring", "autumn"]
STAGES = ["discovery", "proposal", "negotiation", "unmapped"]


def windows(now: datetime) -> tuple[datetime, date, date]:
    """Earliest event time, and the date range deals close in: around the current quarter."""
    year, quarter = now.year, (now.month - 1) // 3 + 1
    index = year * 4 + quarter - 1
    previous = index - 2  # two quarters back, so "previous" has a starting cohort
    first = date(previous // 4, 3 * (previous % 4) + 1, 1)
    after = index + 2
    last = date(after // 4, 3 * (after % 4) + 1, 1) - timedelta(days=1)
    return datetime(first.year, first.month, first.day, tzinfo=UTC), first, last


@st.composite
def histories(draw: st.DrawFn, now: datetime) -> list[Envelope]:
    earliest, first_day, last_day = windows(now)
    times = st.datetimes(
        min_value=earliest.replace(tzinfo=None),
        max_value=(now - timedelta(minutes=1)).replace(tzinfo=None),
        timezones=st.just(UTC),
    )
    days = st.dates(min_value=first_day, max_value=last_day)
    attribution = st.builds(
        lambda source, campaign: {"source": source, "campaign": campaign},
        st.sampled_from(SOURCES),
        st.sampled_from(CAMPAIGNS),
    )
    money = st.integers(min_value=0, max_value=5_000_000_00)
    events: list[Envelope] = []

    def new(cls: type[Envelope], subject: Any, data: dict[str, Any]) -> None:
        events.append(cls.new(source="test", subject=str(subject), data=data, time=draw(times)))

    for _ in range(draw(st.integers(0, 6))):
        lead_id = uuid4()
        common = {"lead_id": lead_id, "attribution": draw(attribution)}
        profile = {"email": "someone@example.com"}
        for _ in range(draw(st.integers(1, 2))):  # a second capture of one lead counts once
            new(LeadCaptured, lead_id, {**common, "form_id": "f", "profile": profile})
        rules = {"score": 1, "reasons": [], "rules_version": "v1"}
        if draw(st.booleans()):
            new(LeadQualified, lead_id, {**common, **rules, "profile": profile})
        elif draw(st.booleans()):
            new(LeadDisqualified, lead_id, {**common, **rules})

    for _ in range(draw(st.integers(0, 5))):
        handoff_id = uuid4()
        for _ in range(draw(st.integers(1, 2))):  # a changed decision: the latest counts
            decision = {
                "handoff_id": handoff_id,
                "lead_id": uuid4(),
                "rep_id": "rep-1",
                "team": "team-a",
                "business_seconds_to_decision": draw(st.integers(0, 200_000)),
                "within_sla": draw(st.booleans()),
                "attribution": draw(attribution),
            }
            if draw(st.booleans()):
                new(HandoffAccepted, handoff_id, decision)
            else:
                new(
                    HandoffRejected,
                    handoff_id,
                    {**decision, "reason": draw(st.sampled_from(REASONS))},
                )
        if draw(st.booleans()):
            breach = {
                "handoff_id": handoff_id,
                "lead_id": uuid4(),
                "team": "team-a",
                "rep_id": None,
                "due_at": draw(times),
                "policy": "default",
            }
            for _ in range(draw(st.integers(1, 2))):  # the same deadline twice is one breach
                new(HandoffSlaBreached, handoff_id, breach)

    for _ in range(draw(st.integers(0, 6))):
        deal_id = f"opp-{uuid4().hex[:12]}"
        deal_attribution = draw(attribution)
        for _ in range(draw(st.integers(1, 4))):
            deal_kinds: list[type[Envelope]] = [DealOpened, DealUpdated, DealWon, DealLost]
            kind = draw(st.sampled_from(deal_kinds))
            state: dict[str, Any] = {
                "deal_id": deal_id,
                "attribution": deal_attribution,
                "amount_cents": draw(money),
                "currency": "USD",
                "stage": draw(st.sampled_from(STAGES)),
                "expected_close_date": draw(st.none() | days),
            }
            if kind in (DealWon, DealLost):
                state["closed_on"] = draw(days)
            if kind is DealLost:
                state["reason"] = "price"
            new(kind, deal_id, state)

    for _ in range(draw(st.integers(0, 5))):
        account_id = f"acct-{uuid4().hex[:12]}"
        arr = st.integers(min_value=1, max_value=1_000_000_00)
        new(
            AccountActivated,
            account_id,
            {"account_id": account_id, "arr_cents": draw(arr), "currency": "USD"},
        )
        for _ in range(draw(st.integers(0, 3))):
            account_kinds: list[type[Envelope]] = [
                AccountArrChanged,
                AccountChurned,
                AccountActivated,
            ]
            kind = draw(st.sampled_from(account_kinds))
            if kind is AccountChurned:
                new(kind, account_id, {"account_id": account_id})
            else:
                new(
                    kind,
                    account_id,
                    {"account_id": account_id, "arr_cents": draw(arr), "currency": "USD"},
                )

    current = (now.year, (now.month - 1) // 3 + 1)
    periods = [f"{current[0]}-Q{current[1]}", f"{current[0] - 1}-Q{current[1]}"]
    for _ in range(draw(st.integers(0, 2))):
        period = draw(st.sampled_from(periods))
        new(
            TargetSet,
            period,
            {"period": period, "amount_cents": draw(money), "currency": "USD", "set_by": "t"},
        )

    # Topics are read in any interleaving anyway; shuffling also sends one entity's
    # events out of time order (a won before its opened, a back-dated change).
    return draw(st.permutations(events))
