"""Deal and account state is a fold of the set of deliveries: any order, any duplicate."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from funnel_common.events import Attribution, DealLost, DealUpdated, DealWon
from lead_intake.outcomes import (
    AccountDelivery,
    DealDelivery,
    DealFields,
    deal_event,
    fold_account,
    fold_deal,
)

T0 = datetime(2026, 10, 1, 9, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def deal(webhook_id: str, action: Any, minutes: int, **fields: Any) -> DealDelivery:
    return DealDelivery("crm", webhook_id, "D-1", action, at(minutes), DealFields(**fields))


# Few distinct times, so ties (CRMs send second or day precision) are common.
deliveries = st.lists(
    st.builds(
        DealDelivery,
        integration=st.just("crm"),
        webhook_id=st.text("abc123", min_size=1, max_size=3),
        deal_id=st.just("D-1"),
        action=st.sampled_from(["opened", "updated", "won", "lost"]),
        occurred_at=st.integers(0, 3).map(at),
        fields=st.builds(
            DealFields,
            amount_cents=st.none() | st.integers(0, 10**6),
            stage=st.none() | st.sampled_from(["open", "proposal", "closed_won"]),
            expected_close_date=st.none() | st.dates(date(2026, 1, 1), date(2027, 12, 31)),
            attribution=st.none() | st.just(Attribution(source="ads")),
            reason=st.just("no_budget"),
        ),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda delivery: delivery.webhook_id,
)


@given(deliveries, st.randoms(use_true_random=False), st.integers(0, 3))
def test_any_order_and_any_duplicates_give_the_same_deal(
    history: list[DealDelivery], random: Any, copies: int
) -> None:
    arrived = [*history, *random.sample(history, min(copies, len(history)))]
    random.shuffle(arrived)

    assert fold_deal("D-1", arrived, "USD") == fold_deal("D-1", history, "USD")


def test_a_win_before_the_opening_is_a_won_deal_with_the_opening_amount() -> None:
    won = deal("w2", "won", 10, stage="closed_won")
    opened = deal("w1", "opened", 0, amount_cents=500, stage="open")

    state = fold_deal("D-1", [won, opened], "USD")

    assert (state.status, state.state.amount_cents, state.state.stage) == ("won", 500, "closed_won")
    assert state.closed_on == at(10).date()


def test_an_amount_update_after_the_win_is_the_won_value_and_keeps_it_won() -> None:
    history = [
        deal("w1", "opened", 0, amount_cents=500, stage="open"),
        deal("w2", "won", 10, stage="closed_won"),
        deal("w3", "updated", 20, amount_cents=900),
    ]

    state = fold_deal("D-1", history, "USD")

    assert (state.status, state.state.amount_cents) == ("won", 900)
    assert state.state.stage == "closed_won"  # an update without a stage keeps it


def test_an_opened_after_a_close_is_a_reopen_and_an_older_one_is_not() -> None:
    lost = deal("w2", "lost", 10, stage="closed_lost", reason="no_budget")
    late_first_opening = deal("w1", "opened", 0, amount_cents=1, stage="open")
    reopened = deal("w3", "opened", 30, stage="open")

    assert fold_deal("D-1", [lost, late_first_opening], "USD").status == "lost"
    assert fold_deal("D-1", [lost, reopened, late_first_opening], "USD").status == "open"


def test_same_time_deliveries_are_ordered_by_webhook_id_never_by_arrival() -> None:
    opened = deal("crm-1", "opened", 0, amount_cents=1, stage="open")
    won = deal("crm-2", "won", 0, stage="closed_won")

    assert fold_deal("D-1", [won, opened], "USD").status == "won"
    assert fold_deal("D-1", [opened, won], "USD").status == "won"


def test_an_update_for_an_unknown_deal_makes_an_open_deal_with_what_it_says() -> None:
    state = fold_deal("D-1", [deal("w1", "updated", 0, amount_cents=7)], "USD")

    assert (state.status, state.state.amount_cents, state.state.stage) == ("open", 7, "open")


def test_each_event_says_which_fields_its_delivery_set() -> None:
    history = [
        deal("w1", "opened", 0, amount_cents=500, stage="open"),
        deal("w2", "updated", 5, expected_close_date=date(2026, 12, 1)),
        deal("w3", "lost", 10, stage="closed_lost", reason="no_budget"),
    ]
    state = fold_deal("D-1", history, "USD")

    update = deal_event(history[1], state)
    lost = deal_event(history[2], state)

    assert isinstance(update, DealUpdated)
    assert update.data.fields_set == ["expected_close_date"]
    assert (update.data.delivery_id, update.time) == ("w2", at(5))
    assert isinstance(lost, DealLost)
    assert (lost.data.reason, lost.data.fields_set) == ("no_budget", ["stage"])
    assert not isinstance(lost, DealWon)


accounts = st.lists(
    st.builds(
        AccountDelivery,
        integration=st.just("billing"),
        webhook_id=st.text("xyz789", min_size=1, max_size=3),
        account_id=st.just("A-1"),
        action=st.sampled_from(["activated", "arr_changed", "churned"]),
        occurred_at=st.integers(0, 3).map(at),
        arr_cents=st.none() | st.integers(0, 10**6),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda delivery: delivery.webhook_id,
)


@given(accounts, st.randoms(use_true_random=False))
def test_any_order_of_an_accounts_deliveries_gives_the_same_account(
    history: list[AccountDelivery], random: Any
) -> None:
    arrived = [*history, *history[:2]]
    random.shuffle(arrived)

    assert fold_account(arrived) == fold_account(history)


def test_a_churn_at_the_same_instant_as_a_change_is_ordered_by_delivery_id() -> None:
    changed = AccountDelivery("billing", "b-1", "A-1", "arr_changed", at(0), 900)
    churned = AccountDelivery("billing", "b-2", "A-1", "churned", at(0), None)

    assert fold_account([churned, changed]).status == "churned"
    assert fold_account([changed, churned]) == fold_account([churned, changed])


def test_opened_and_won_at_the_same_instant_is_won_whatever_the_senders_ids() -> None:
    # CRMs send second precision and opaque ids: the lifecycle decides the tie, as in
    # metrics, so the two services never disagree on such a deal.
    for opened_id, won_id in (("a-open", "z-won"), ("z-open", "a-won")):
        history = [
            deal(opened_id, "opened", 0, amount_cents=100),
            deal(won_id, "won", 0, closed_on=date(2026, 10, 1)),
        ]

        assert fold_deal("D-1", history, "USD").status == "won"
