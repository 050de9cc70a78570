"""Hypothesis strategies for random funnel histories: plausible, late and out of order.

Each history uses fresh ids, so many histories can share one database and broker; the
oracle then recomputes over everything sent so far. Times are drawn from a few
instants, so events often happen in the same second (as CRMs stamp them), and deal and
account events carry sender delivery ids from a small pool (or none).
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import strategies as st
from pydantic import SecretStr

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
    HandoffAssigned,
    HandoffReassigned,
    HandoffRejected,
    HandoffRejectedV2,
    HandoffSlaBreached,
    LeadCaptured,
    LeadCapturedV2,
    LeadDisqualified,
    LeadQualified,
    LeadQualifiedV2,
    PersonalData,
    TargetSet,
)
from funnel_common.personal import Keyring
from tests.metrics.oracle import DEAL_FIELDS, REASONS

SOURCES = ["web", "webinar", "trade_show"]  # trade_show is not allow-listed: "other"
CAMPAIGNS = [None, "spring", "autumn"]
STAGES = ["discovery", "proposal", "negotiation", "unmapped"]
POLICIES = ["default", "enterprise"]
DEAL_KINDS: list[type[Envelope]] = [DealOpened, DealUpdated, DealWon, DealLost]


def windows(now: datetime) -> tuple[datetime, date, date]:
    """Earliest event time, and the date range deals close in: around the current quarter."""
    year, quarter = now.year, (now.month - 1) // 3 + 1
    index = year * 4 + quarter - 1
    previous = index - 2  # two quarters back, so "previous" has a starting cohort
    first = date(previous // 4, 3 * (previous % 4) + 1, 1)
    after = index + 2
    last = date(after // 4, 3 * (after % 4) + 1, 1) - timedelta(days=1)
    return datetime(first.year, first.month, first.day, tzinfo=UTC), first, last


@functools.cache
def instants(now: datetime) -> st.SearchStrategy[datetime]:
    """Whole seconds from two quarters back to a minute ago (integers are cheaper for
    hypothesis to draw than datetimes, and whole seconds tie as CRM timestamps do)."""
    earliest, _, _ = windows(now)
    span = int((now - timedelta(minutes=1) - earliest).total_seconds())
    return st.integers(0, span).map(lambda offset: earliest + timedelta(seconds=offset))


@functools.cache
def days_between(first: date, last: date) -> st.SearchStrategy[date]:
    return st.integers(0, (last - first).days).map(lambda offset: first + timedelta(days=offset))


# Built once: hypothesis validates a strategy object the first time it draws from it,
# which cost more than the drawing when they were built anew for every event.
ATTRIBUTIONS = st.builds(
    lambda source, campaign: {"source": source, "campaign": campaign},
    st.sampled_from(SOURCES),
    st.sampled_from(CAMPAIGNS),
)
AMOUNTS = st.integers(min_value=0, max_value=5_000_000_00)
ARRS = st.integers(min_value=1, max_value=1_000_000_00)
DEAL_DELIVERIES = st.none() | st.sampled_from(["wh-1", "wh-2", "wh-10", "9"])
ACCOUNT_DELIVERIES = st.none() | st.sampled_from(["evt-a", "evt-b"])
FIELDS = st.lists(st.sampled_from(DEAL_FIELDS), unique=True)
LOSS_REASONS = st.sampled_from(["price", "timing"])


@functools.cache
def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def attributions() -> st.SearchStrategy[dict[str, Any]]:
    return ATTRIBUTIONS


@st.composite
def deal_events(
    draw: st.DrawFn,
    now: datetime,
    *,
    deal_id: str | None = None,
    lead_ids: list[UUID] | None = None,
    max_events: int = 6,
) -> list[Envelope]:
    """One deal's deliveries: any kinds in any order (a won before its opened, an update
    after the win, a reopen), often at the same second, with or without delivery ids,
    each naming the fields it set (or none: all of them)."""
    deal_id = deal_id or f"opp-{uuid4().hex[:12]}"
    _, first_day, last_day = windows(now)
    moments = draw(st.lists(instants(now), min_size=1, max_size=3))
    days = days_between(first_day, last_day)
    maybe_days = maybe(days)
    leads = [None, *(lead_ids or [])]
    events: list[Envelope] = []
    for _ in range(draw(st.integers(1, max_events))):
        kind = DEAL_KINDS[draw(st.integers(0, 3))]
        data: dict[str, Any] = {
            "deal_id": deal_id,
            "lead_id": leads[draw(st.integers(0, len(leads) - 1))],
            "attribution": draw(ATTRIBUTIONS),
            "amount_cents": draw(AMOUNTS),
            "currency": "USD",
            "stage": STAGES[draw(st.integers(0, len(STAGES) - 1))],
            "expected_close_date": draw(maybe_days),
            "delivery_id": draw(DEAL_DELIVERIES),
        }
        if draw(st.booleans()):
            data["fields_set"] = draw(FIELDS)
        if kind in (DealWon, DealLost):
            data["closed_on"] = draw(days)
        if kind is DealLost:
            data["reason"] = draw(LOSS_REASONS)
        at = moments[draw(st.integers(0, len(moments) - 1))]
        events.append(kind.new(source="test", subject=deal_id, data=data, time=at))
    return events


@st.composite
def account_events(draw: st.DrawFn, now: datetime) -> list[Envelope]:
    account_id = f"acct-{uuid4().hex[:12]}"
    moments = draw(st.lists(instants(now), min_size=1, max_size=3))
    kinds: list[type[Envelope]] = [AccountActivated, AccountArrChanged, AccountChurned]
    events: list[Envelope] = []
    for position in range(draw(st.integers(1, 4))):
        kind = AccountActivated if position == 0 else kinds[draw(st.integers(0, 2))]
        data: dict[str, Any] = {"account_id": account_id, "delivery_id": draw(ACCOUNT_DELIVERIES)}
        if kind is not AccountChurned:
            data |= {"arr_cents": draw(ARRS), "currency": "USD"}
        at = moments[draw(st.integers(0, len(moments) - 1))]
        events.append(kind.new(source="test", subject=account_id, data=data, time=at))
    return events


@st.composite
def handoff_events(
    draw: st.DrawFn, now: datetime, lead_id: UUID, attribution: dict[str, Any]
) -> list[Envelope]:
    """A handoff as handoff publishes it, in order: assigned (with a deadline, or queued
    without one), maybe a breach and a reassignment or an escalation, maybe a decision."""
    handoff_id = uuid4()
    assigned_at = draw(instants(now))
    window = timedelta(minutes=draw(st.integers(1, 60 * 24 * 10)))
    due_at = assigned_at + window if draw(st.integers(0, 4)) else None
    policy = draw(st.sampled_from(POLICIES))
    common = {"handoff_id": handoff_id, "lead_id": lead_id, "team": "team-a"}
    events: list[Envelope] = [
        HandoffAssigned.new(
            source="test", subject=handoff_id, time=assigned_at,
            data={**common, "assignee_rep_id": "rep-1" if due_at else None,
                  "assigned_at": assigned_at, "due_at": due_at, "policy": policy,
                  "attribution": attribution},
        )
    ]  # fmt: skip
    when = assigned_at
    if due_at is not None and due_at < now and draw(st.booleans()):
        when = due_at
        events.append(
            HandoffSlaBreached.new(
                source="test", subject=handoff_id, time=due_at,
                data={**common, "rep_id": "rep-1", "due_at": due_at, "policy": policy},
            )
        )  # fmt: skip
        escalated = draw(st.booleans())
        events.append(
            HandoffReassigned.new(
                source="test", subject=handoff_id, time=due_at,
                data={**common, "from_rep_id": "rep-1", "to_rep_id": "rep-2",
                      "reason": "escalation" if escalated else "sla_breach",
                      "due_at": None if escalated else due_at + window},
            )
        )  # fmt: skip
    if draw(st.booleans()):
        decided_at = when + timedelta(minutes=draw(st.integers(0, 60 * 24 * 12)))
        if decided_at < now:
            decision = {
                **common,
                "rep_id": "rep-1",
                "business_seconds_to_decision": draw(st.integers(0, 200_000)),
                "within_sla": due_at is not None and decided_at <= due_at,
                "attribution": attribution,
            }
            if draw(st.booleans()):
                events.append(
                    HandoffAccepted.new(
                        source="test", subject=handoff_id, time=decided_at, data=decision
                    )
                )
            else:
                decision["reason"] = draw(st.sampled_from(REASONS))
                # Topics hold both: notes in clear from before sealing (.v1), sealed after.
                versions: list[type[Envelope]] = [HandoffRejected, HandoffRejectedV2]
                rejected = draw(st.sampled_from(versions))
                events.append(
                    rejected.new(source="test", subject=handoff_id, time=decided_at, data=decision)
                )
    return events


_KEYRING = Keyring(SecretStr("the metrics histories' key-encryption key, 32+ bytes"))


def _sealed_profile(lead_id: UUID) -> dict[str, Any]:
    """A profile as a .v2 lead event carries it (metrics never opens the sealed part)."""
    personal = PersonalData(email="someone@example.com")
    return {"country": "DE", "personal": _KEYRING.new_key(lead_id).seal_model(personal, "profile")}


@st.composite
def histories(draw: st.DrawFn, now: datetime) -> list[Envelope]:
    """Leads, their handoffs and deals, accounts and targets, in time order per entity
    where one service publishes them (leads, handoffs) and in any order for what
    CRMs and billing systems send (deals, accounts)."""
    events: list[Envelope] = []
    lead_ids: list[UUID] = []
    for _ in range(draw(st.integers(0, 5))):
        lead_id = uuid4()
        lead_ids.append(lead_id)
        attribution = draw(attributions())
        common = {"lead_id": lead_id, "attribution": attribution}
        # Topics hold leads published before personal data was sealed (.v1) and after.
        sealed = draw(st.booleans())
        profile = _sealed_profile(lead_id) if sealed else {"email": "someone@example.com"}
        captured_at = draw(instants(now))
        spam = ["disposable_domain"] if not draw(st.integers(0, 5)) else []
        for _ in range(draw(st.integers(1, 2))):  # a second capture of one lead counts once
            events.append(
                (LeadCapturedV2 if sealed else LeadCaptured).new(
                    source="test", subject=lead_id, time=captured_at,
                    data={**common, "form_id": "f", "profile": profile, "spam_reasons": spam},
                )
            )  # fmt: skip
        rules = {"score": 1, "reasons": [], "rules_version": "v1"}
        later = captured_at + timedelta(seconds=draw(st.integers(0, 3600)))
        if draw(st.booleans()) and later < now:
            events.append(
                (LeadQualifiedV2 if sealed else LeadQualified).new(
                    source="test", subject=lead_id, time=later,
                    data={**common, **rules, "profile": profile},
                )
            )  # fmt: skip
            if draw(st.booleans()):
                events += draw(handoff_events(now, lead_id, attribution))
        elif draw(st.booleans()):
            events.append(
                LeadDisqualified.new(
                    source="test", subject=lead_id, time=later, data={**common, **rules}
                )
            )

    for _ in range(draw(st.integers(0, 5))):
        events += draw(deal_events(now, lead_ids=lead_ids))
    for _ in range(draw(st.integers(0, 4))):
        events += draw(account_events(now))

    current = (now.year, (now.month - 1) // 3 + 1)
    periods = [f"{current[0]}-Q{current[1]}", f"{current[0] - 1}-Q{current[1]}"]
    for _ in range(draw(st.integers(0, 2))):
        period = draw(st.sampled_from(periods))
        events.append(
            TargetSet.new(
                source="test", subject=period, time=draw(instants(now)),
                data={"period": period, "amount_cents": draw(st.integers(0, 5_000_000_00)),
                      "currency": "USD", "set_by": "t"},
            )
        )  # fmt: skip
    return events


def keyed_order(events: list[Envelope], order: list[int]) -> list[Envelope]:
    """``events`` delivered in the drawn ``order`` (a permutation of their positions),
    except that each handoff's and lead's events keep their relative order: one
    service publishes them on one partition (the key is the entity id)."""
    ordered = [events[position] for position in order]
    in_sequence = [e for e in events if isinstance(e, _PUBLISHED_IN_ORDER)]
    slots = [index for index, e in enumerate(ordered) if isinstance(e, _PUBLISHED_IN_ORDER)]
    by_subject: dict[str, list[Envelope]] = {}
    for event in in_sequence:
        by_subject.setdefault(event.subject, []).append(event)
    queues = {subject: iter(queue) for subject, queue in by_subject.items()}
    for slot in slots:
        ordered[slot] = next(queues[ordered[slot].subject])
    return ordered


_PUBLISHED_IN_ORDER = (
    LeadCaptured,
    LeadCapturedV2,
    LeadQualified,
    LeadQualifiedV2,
    LeadDisqualified,
    HandoffAssigned,
    HandoffReassigned,
    HandoffSlaBreached,
    HandoffAccepted,
    HandoffRejected,
    HandoffRejectedV2,
)
