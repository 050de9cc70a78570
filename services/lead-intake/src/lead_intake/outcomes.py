"""Deal and account lifecycles from CRM and billing webhooks: pure transition rules."""

from __future__ import annotations

from typing import Literal

DealStatus = Literal["open", "won", "lost"]
DealAction = Literal["opened", "updated", "won", "lost"]
AccountStatus = Literal["active", "churned"]
AccountAction = Literal["activated", "arr_changed", "churned"]


class IllegalTransition(ValueError):
    """The entity's current state does not allow this event (answered 409)."""


def next_deal_status(current: DealStatus | None, action: DealAction) -> DealStatus:
    """The deal's status after ``action``. Closed deals must be reopened ("opened") first."""
    if action == "opened":
        if current == "open":
            raise IllegalTransition("the deal is already open")
        return "open"
    if current is None:
        raise IllegalTransition("the deal was never opened")
    if current != "open":
        raise IllegalTransition(f"the deal is {current}; reopen it first")
    return "open" if action == "updated" else action


def next_account_status(current: AccountStatus | None, action: AccountAction) -> AccountStatus:
    """The account's status after ``action``; a churned customer can be activated again."""
    if action == "activated":
        if current == "active":
            raise IllegalTransition("the account is already active")
        return "active"
    if current != "active":
        raise IllegalTransition("the account is not active" if current else "unknown account")
    return "active" if action == "arr_changed" else "churned"
