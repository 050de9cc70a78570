"""What mapping one vendor event yields: our webhook, a deliberate skip, or a refusal.

HubSpot and Salesforce batch several events in one request, and each is applied on its
own: one refused event does not hide the others, and none is dropped without a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from lead_intake.connectors.errors import ConnectorPayloadError
from lead_intake.models import AccountWebhook, DealWebhook

W = TypeVar("W", DealWebhook, AccountWebhook)


@dataclass(frozen=True, slots=True)
class Mapped(Generic[W]):
    """The vendor event as our own webhook, to apply exactly like a signed one."""

    source_id: str
    webhook: W


@dataclass(frozen=True, slots=True)
class Ignored:
    """An authentic event that means nothing to the funnel (another object type, a
    property we do not track, a trial). ``reason`` is a stable code for metrics."""

    source_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """An authentic event we cannot map exactly; the error names the field and why."""

    source_id: str
    error: ConnectorPayloadError


DealOutcome = Mapped[DealWebhook] | Ignored | Refused
AccountOutcome = Mapped[AccountWebhook] | Ignored
