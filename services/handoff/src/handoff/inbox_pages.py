"""What the inbox shows about each handoff: views computed from rows and the time (no I/O).

The routes (``inbox.py``, ``inbox_team.py``) load rows and hand them here; the templates
(``templates/``) print what these views say, escaped by Jinja2. What is on fire and in
which order is ``inbox_urgency.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote
from uuid import UUID

from funnel_common.auth import Principal
from funnel_common.events import REJECTION_REASONS
from handoff.inbox_urgency import (
    OPEN_URGENCIES,
    URGENCIES,
    URGENCY_TEXT,
    Badge,
    Urgency,
    badge,
)
from handoff.models import DecisionRecord, Handoff, InboxHandoff, LeadTouch, Rep
from handoff.routing import UNROUTED_TEAM

# The team view's holder filter for "nobody holds it" (queued handoffs).
NOBODY = "-"

REASON_CHOICES: tuple[tuple[str, str], ...] = tuple(
    (reason, reason.replace("_", " ").capitalize()) for reason in REJECTION_REASONS
)
_REASON_TEXT = dict(REASON_CHOICES)


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str

    @property
    def manages(self) -> bool:
        """A manager with a team, or an admin: they get the team view."""
        return self.principal.role == "admin" or (
            self.principal.role == "manager" and self.principal.team is not None
        )

    @property
    def reads_feedback(self) -> bool:
        """Marketing, and whoever manages: sales' feedback on marketing's leads."""
        return self.manages or self.principal.role == "marketing"


# --- one handoff, as a card or a table row ------------------------------------------


def mailto(email: str | None) -> str | None:
    return f"mailto:{quote(email, safe='@.+-_')}" if email else None


def tel(phone: str | None) -> str | None:
    """A click-to-call link: the digits and a leading plus, nothing a dialer chokes on."""
    if not phone:
        return None
    digits = re.sub(r"[^0-9]", "", phone)
    if not digits:
        return None
    return f"tel:{'+' if phone.strip().startswith('+') else ''}{digits}"


def lead_name(handoff: Handoff) -> str:
    profile = handoff.profile
    parts = [str(profile[key]) for key in ("first_name", "last_name") if profile.get(key)]
    return " ".join(parts) or str(profile.get("email") or "Unnamed lead")


def reason_text(reason: str | None) -> str:
    return _REASON_TEXT.get(reason or "", reason or "")


@dataclass(frozen=True)
class Touch:
    when: datetime
    source: str
    form_id: str | None
    matched_on: str


def _source(attribution_source: str, campaign: str | None, medium: str | None) -> str:
    text = attribution_source + (f" / {campaign}" if campaign else "")
    return text + (f" ({medium})" if medium else "")


def _touch(touch: LeadTouch) -> Touch:
    attribution = touch.attribution
    return Touch(
        when=touch.touched_at,
        source=_source(attribution.source, attribution.campaign, attribution.utm.get("utm_medium")),
        form_id=touch.form_id,
        matched_on=touch.matched_on,
    )


@dataclass(frozen=True)
class Card:
    """Everything a page says about one handoff."""

    handoff_id: UUID
    team_id: str
    name: str
    email: str | None
    email_href: str | None
    phone: str | None
    phone_href: str | None
    company: str | None
    title: str | None
    country: str | None
    form: str | None
    source: str
    score: int
    score_reasons: str
    badge: Badge
    status: str
    status_at: datetime | None
    holder: str | None
    escalated: bool
    assigned_at: datetime | None
    decision: DecisionRecord | None
    touches: tuple[Touch, ...]
    waiting_reason: str | None
    can_decide: bool
    can_reassign: bool
    reassign_to: tuple[str, ...]

    @property
    def holder_label(self) -> str:
        if self.holder is None:
            return "Nobody"
        return f"{self.holder} (manager)" if self.escalated else self.holder

    @property
    def decision_reason(self) -> str:
        return reason_text(self.decision.reason if self.decision else None)


def _status(item: InboxHandoff, viewer: Principal) -> tuple[str, datetime | None]:
    handoff = item.handoff

    def who(person: str | None) -> str:
        return "you" if person == viewer.subject else (person or "nobody")

    if handoff.status == "queued":
        team = "a team" if handoff.team_id == UNROUTED_TEAM else "a rep"
        return f"Waiting for {team}", None
    if handoff.status == "assigned":
        return f"Assigned to {who(handoff.rep_id)}", handoff.assigned_at
    if handoff.status == "escalated":
        if handoff.rep_id is None:
            return "Escalated, but the team has no manager to hold it", None
        return f"Escalated to {who(handoff.rep_id)}, the team's manager", None
    decided_by = who(handoff.decided_by)
    verb = "Accepted" if handoff.status == "accepted" else "Rejected"
    return f"{verb} by {decided_by}", handoff.decided_at


def card(
    item: InboxHandoff,
    session: Session,
    now: datetime,
    *,
    reps: Sequence[Rep] = (),
    waiting_reason: str | None = None,
) -> Card:
    handoff = item.handoff
    profile = handoff.profile
    attribution = handoff.attribution
    viewer = session.principal
    is_open = handoff.status in ("queued", "assigned", "escalated")
    status, status_at = _status(item, viewer)
    form = " · ".join(part for part in (item.form_id, handoff.form_type) if part) or None

    def text(key: str) -> str | None:
        value = profile.get(key)
        return str(value) if value not in (None, "") else None

    return Card(
        handoff_id=handoff.handoff_id,
        team_id=handoff.team_id,
        name=lead_name(handoff),
        email=text("email"),
        email_href=mailto(text("email")),
        phone=text("phone"),
        phone_href=tel(text("phone")),
        company=text("company"),
        title=text("title"),
        country=text("country"),
        form=form,
        source=_source(attribution.source, attribution.campaign, attribution.utm.get("utm_medium")),
        score=handoff.score,
        score_reasons=", ".join(
            f"{reason.get('rule', '?')} {int(reason.get('points', 0)):+d}"
            for reason in handoff.score_reasons
        ),
        badge=badge(item, now),
        status=status,
        status_at=status_at,
        holder=handoff.rep_id,
        escalated=handoff.status == "escalated",
        assigned_at=handoff.assigned_at,
        decision=item.last_decision if not is_open else None,
        touches=tuple(_touch(touch) for touch in item.touches),
        waiting_reason=waiting_reason if handoff.status == "queued" else None,
        can_decide=viewer.role != "marketing"
        and handoff.rep_id == viewer.subject
        and handoff.status in ("assigned", "escalated"),
        can_reassign=session.manages and is_open,
        reassign_to=tuple(rep.rep_id for rep in reps if rep.rep_id != handoff.rep_id),
    )


@dataclass(frozen=True)
class Group:
    urgency: Urgency
    title: str
    cards: list[Card]


def groups(cards: Sequence[Card]) -> list[Group]:
    """Cards (already in order) under a heading per state: what is on fire first."""
    found: dict[Urgency, list[Card]] = {}
    for item in cards:
        found.setdefault(item.badge.urgency, []).append(item)
    return [
        Group(urgency, URGENCY_TEXT[urgency], found[urgency])
        for urgency in URGENCIES
        if urgency in found
    ]


# --- the team view's filters, and paging --------------------------------------------


@dataclass(frozen=True)
class TeamFilter:
    rep: str | None = None
    """A rep id, ``NOBODY`` for handoffs nobody holds, or None for all."""
    state: Urgency | None = None

    @property
    def active(self) -> bool:
        return self.rep is not None or self.state is not None

    @property
    def query(self) -> dict[str, str | None]:
        return {"rep": self.rep, "state": self.state}

    def keeps(self, item: Card) -> bool:
        if self.state is not None and item.badge.urgency != self.state:
            return False
        if self.rep == NOBODY:
            return item.holder is None
        return self.rep is None or item.holder == self.rep


def team_filter(rep: str | None, state: str | None) -> TeamFilter:
    """The filter a query string asks for; unknown values filter nothing."""
    chosen = next((urgency for urgency in OPEN_URGENCIES if urgency == state), None)
    return TeamFilter(rep=rep or None, state=chosen)


@dataclass(frozen=True)
class Paging:
    number: int
    size: int
    has_next: bool

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def page_number(text: str | None) -> int:
    """``?page=`` as a number from 1; anything else is the first page."""
    return int(text) if text and text.isdigit() and 0 < int(text) < 100_000 else 1


@dataclass(frozen=True)
class HistoryRow:
    handoff_id: UUID
    name: str
    company: str | None
    outcome: str
    reason: str
    note: str | None
    decided_by: str
    decided_at: datetime


def history_row(decision: DecisionRecord, handoff: Handoff) -> HistoryRow:
    return HistoryRow(
        handoff_id=handoff.handoff_id,
        name=lead_name(handoff),
        company=handoff.profile.get("company") or None,
        outcome=decision.outcome.capitalize(),
        reason=reason_text(decision.reason),
        note=decision.note,
        decided_by=decision.decided_by,
        decided_at=decision.decided_at,
    )
