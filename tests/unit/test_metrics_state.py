"""A deal's and an account's state is a function of the SET of their events (funnel_common.deals,
metrics.state),
checked against the oracle's plain walk (tests/metrics/oracle.py) on thousands of
random deliveries, and on the cases issue 14 reproduced."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from funnel_common.deals import Deal, DealEvent, fold_deal
from funnel_common.events import (
    AccountActivated,
    AccountArrChanged,
    AccountChurned,
    DealLost,
    DealOpened,
    DealUpdated,
    DealWon,
    Envelope,
)
from metrics import facts
from metrics.state import AccountEvent, account_at
from tests.metrics.histories import account_events, deal_events
from tests.metrics.oracle import account_place, deal_state

NOW = datetime(2026, 8, 14, 12, tzinfo=UTC)
THOUSANDS = settings(max_examples=1000, deadline=None)


def fold(events: list[Envelope]) -> Deal:
    deliveries = [fact for event in events for fact in facts.deal(event, "USD")]  # type: ignore[arg-type]
    return fold_deal(
        delivery.event for delivery in deliveries if isinstance(delivery, facts.DealDelivery)
    )


def as_oracle_says(deal: Deal) -> dict[str, Any]:
    found = asdict(deal)
    found["attribution"] = (found.pop("source"), found.pop("campaign"))
    del found["deal_id"]
    return found


def oracle(events: list[Envelope]) -> dict[str, Any]:
    state = deal_state(events)  # type: ignore[arg-type]
    attribution = state.pop("attribution")
    state["attribution"] = (attribution.source, attribution.campaign or "")
    return state


@THOUSANDS
@given(deliveries=deal_events(NOW, max_events=7), data=st.data())
def test_any_order_and_duplication_of_a_deals_deliveries_gives_the_oracles_state(
    deliveries: list[Envelope], data: st.DataObject
) -> None:
    arrival = data.draw(st.permutations(deliveries))
    repeated = data.draw(st.lists(st.sampled_from(deliveries), max_size=3))

    state = fold([*arrival, *repeated])

    assert state == fold(deliveries)
    assert as_oracle_says(state) == oracle(deliveries)
    # A reopen or a close never un-happens: counted as deliveries arrive, wherever a late
    # one falls, neither goes down.
    for counted in ("reopens", "wins", "losses"):
        seen = [getattr(fold(arrival[: count + 1]), counted) for count in range(len(arrival))]
        assert seen == sorted(seen), counted


@settings(max_examples=300, deadline=None)
@given(deliveries=account_events(NOW), data=st.data())
def test_an_accounts_state_at_any_instant_is_the_oracles_whatever_the_order(
    deliveries: list[Envelope], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(deliveries))
    instant = data.draw(st.sampled_from([event.time for event in deliveries])) + timedelta(
        seconds=data.draw(st.sampled_from([0, 1]))
    )
    events = [
        fact.event
        for event in shuffled
        for fact in facts.account(event, "USD")  # type: ignore[arg-type]
        if isinstance(fact, facts.AccountDelivery)
    ]

    state = account_at(events, instant)

    known = [event for event in deliveries if event.time < instant]
    expected = max(known, key=account_place) if known else None  # type: ignore[arg-type]
    if expected is None:
        assert state is None
    else:
        assert state is not None
        assert (state.active, state.arr_cents) == (
            (False, 0) if isinstance(expected, AccountChurned) else (True, expected.data.arr_cents)  # type: ignore[attr-defined]
        )


# --- the cases of issue 14 ---------------------------------------------------------------

SECOND = datetime(2026, 8, 3, 9, 30, tzinfo=UTC)


def deal(kind: type[Envelope], at: datetime, **changes: Any) -> Envelope:
    data: dict[str, Any] = {
        "deal_id": "opp-1",
        "attribution": {"source": "web"},
        "amount_cents": 100_00,
        "currency": "USD",
        "stage": "proposal",
        "expected_close_date": date(2026, 9, 30),
        **changes,
    }
    if kind in (DealWon, DealLost):
        data.setdefault("closed_on", date(2026, 8, 3))
    if kind is DealLost:
        data.setdefault("reason", "price")
    return kind.new(source="test", subject="opp-1", data=data, time=at)


def test_a_won_before_its_opened_arrived_is_won_and_the_deal_exists_from_it() -> None:
    won = deal(DealWon, SECOND)

    state = fold([won])

    assert (state.status, state.opened_at, state.closed_on) == ("won", SECOND, date(2026, 8, 3))
    assert fold([won, deal(DealOpened, SECOND - timedelta(days=9))]).status == "won"


def test_opened_and_won_in_the_same_second_is_won_whatever_the_webhook_ids() -> None:
    opened = deal(DealOpened, SECOND, delivery_id="b-2")
    won = deal(DealWon, SECOND, delivery_id="a-1")

    assert fold([won, opened]).status == fold([opened, won]).status == "won"
    assert fold([won, opened]).reopens == 0


def test_an_update_after_the_win_changes_the_amount_never_the_status() -> None:
    won = deal(DealWon, SECOND, amount_cents=100_00)
    later = deal(DealUpdated, SECOND + timedelta(hours=1), amount_cents=150_00)

    state = fold([later, won])

    assert (state.status, state.amount_cents) == ("won", 150_00)


def test_an_update_that_did_not_set_the_stage_keeps_the_known_stage() -> None:
    opened = deal(DealOpened, SECOND, stage="negotiation")
    update = deal(
        DealUpdated, SECOND + timedelta(hours=1), stage="discovery", amount_cents=7_00,
        fields_set=["amount_cents"],
    )  # fmt: skip

    state = fold([update, opened])

    assert (state.stage, state.amount_cents) == ("negotiation", 7_00)


def test_an_opened_after_a_close_is_a_reopen_and_the_deal_is_open_again() -> None:
    events = [
        deal(DealOpened, SECOND),
        deal(DealLost, SECOND + timedelta(days=1)),
        deal(DealOpened, SECOND + timedelta(days=2)),
    ]

    state = fold(list(reversed(events)))

    assert (state.status, state.reopens, state.closed_on, state.opened_at) == (
        "open",
        1,
        None,
        SECOND,
    )


def test_ties_without_delivery_ids_are_broken_by_content_not_by_event_id() -> None:
    first = deal(DealUpdated, SECOND, amount_cents=1_00)
    second = deal(DealUpdated, SECOND, amount_cents=2_00)
    again = [
        type(e).model_validate({**e.model_dump(), "id": e.id.hex[::-1]}) for e in (first, second)
    ]

    assert fold([first, second]).amount_cents == fold(again).amount_cents == 2_00


def test_accounts_changed_and_churned_in_the_same_second_are_churned() -> None:
    events = [
        AccountActivated.new(
            source="t", subject="a", time=SECOND - timedelta(days=30),
            data={"account_id": "a", "arr_cents": 10_00, "currency": "USD"},
        ),
        AccountChurned.new(source="t", subject="a", time=SECOND, data={"account_id": "a"}),
        AccountArrChanged.new(
            source="t", subject="a", time=SECOND,
            data={"account_id": "a", "arr_cents": 20_00, "currency": "USD"},
        ),
    ]  # fmt: skip
    known = [
        fact.event
        for event in events
        for fact in facts.account(event, "USD")  # type: ignore[arg-type]
        if isinstance(fact, facts.AccountDelivery)
    ]

    state = account_at(known, SECOND + timedelta(seconds=1))

    assert state is not None
    assert not state.active


def test_a_deal_event_type_is_a_fixed_set_of_kinds() -> None:
    event = DealEvent(
        deal_id="d", kind="won", occurred_at=SECOND, delivery_id=None, fields_set=None,
        lead_id=None, source="web", campaign="", amount_cents=1, stage="s",
        expected_close_date=None, closed_on=date(2026, 8, 3),
    )  # fmt: skip

    assert fold_deal([event]).status == "won"
    assert AccountEvent("a", "churned", SECOND, None, 0).active is False
