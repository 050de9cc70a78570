"""What the inbox shows about each handoff: views computed from rows and the time (no I/O).

The routes (``inbox.py``) load rows and hand them here; the templates (``templates/``)
print what these views say, escaped by Jinja2. Keeping the decisions here (what is on
fire, in which order, why nobody can take a lead) makes them testable without a page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import quote
from uuid import UUID

from funnel_common.auth import Principal
from funnel_common.events import REJECTION_REASONS
from handoff.models import DecisionRecord, Handoff, InboxHandoff, LeadTouch, Rep
from handoff.routing import UNROUTED_TEAM, RepState
from handoff.sla import is_working

Urgency = Literal["on-fire", "at-risk", "on-time", "waiting", "decided"]
URGENCIES: tuple[Urgency, ...] = ("on-fire", "at-risk", "on-time", "waiting", "decided")
URGENCY_TEXT: dict[Urgency, str] = {
    "on-fire": "On fire",
    "at-risk": "At risk",
    "on-time": "On time",
    "waiting": "Waiting for a rep",
    "decided": "Decided",
}
# Filters of the team view: every open state, and "nobody holds it" for the rep filter.
OPEN_URGENCIES: tuple[Urgency, ...] = ("on-fire", "at-risk", "on-time", "waiting")
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


# --- time ---------------------------------------------------------------------------


def duration_text(seconds: float) -> str:
    """A span for people: ``45s``, ``12m 5s``, ``3h 5m``, ``2d 4h`` (inbox.js says the same)."""
    whole = int(abs(seconds))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def utc_text(moment: datetime) -> str:
    """How a time reads before the page's script shows it in the viewer's zone."""
    return f"{moment:%Y-%m-%d %H:%M} UTC"


# --- what is on fire ----------------------------------------------------------------


def urgency(item: InboxHandoff, now: datetime) -> Urgency:
    """Escalated, breached before or past due now: on fire; then at risk, on time, waiting."""
    handoff = item.handoff
    if handoff.status in ("accepted", "rejected"):
        return "decided"
    if handoff.status == "escalated" or handoff.breaches > 0:
        return "on-fire"
    if handoff.due_at is None:
        return "waiting"
    if now >= handoff.due_at:
        return "on-fire"
    if handoff.at_risk_at is not None and now >= handoff.at_risk_at:
        return "at-risk"
    return "on-time"


def missed_since(item: InboxHandoff, now: datetime) -> datetime | None:
    """When the lead first went past due; None while it has not (or is decided)."""
    handoff = item.handoff
    if handoff.status in ("accepted", "rejected"):
        return None
    if item.first_missed_due_at is not None:
        return item.first_missed_due_at
    if handoff.due_at is not None and now >= handoff.due_at:
        return handoff.due_at
    return None


def by_urgency(items: Iterable[InboxHandoff], now: datetime) -> list[InboxHandoff]:
    """On fire (longest past due first), at risk, on time (soonest due first), waiting."""

    def key(item: InboxHandoff) -> tuple[int, float, float, str]:
        handoff = item.handoff
        state = urgency(item, now)
        moment = {
            "on-fire": missed_since(item, now) or handoff.created_at,
            "at-risk": handoff.due_at,
            "on-time": handoff.due_at,
        }.get(state) or handoff.created_at
        return (
            URGENCIES.index(state),
            moment.timestamp(),
            handoff.created_at.timestamp(),
            str(handoff.handoff_id),
        )

    return sorted(items, key=key)


@dataclass(frozen=True)
class Badge:
    """The SLA badge: state as text and an icon (never colour alone), and the times the
    page's script keeps counting from."""

    urgency: Urgency
    label: str
    icon: str
    breaches: int
    due_at: datetime | None
    at_risk_at: datetime | None
    missed_since: datetime | None
    now: datetime

    @property
    def past_due(self) -> str | None:
        if self.missed_since is None:
            return None
        return f"{duration_text((self.now - self.missed_since).total_seconds())} past due"

    @property
    def countdown(self) -> str | None:
        if self.due_at is None:
            return None
        left = (self.due_at - self.now).total_seconds()
        if left <= 0:
            return f"overdue by {duration_text(left)}"
        # Past its SLA already, yet with a new holder's deadline: say which clock this is.
        if self.urgency == "on-fire":
            return f"next deadline in {duration_text(left)}"
        return f"{duration_text(left)} left"


_ICONS: dict[Urgency, str] = {
    "on-fire": "⚠",
    "at-risk": "◔",
    "on-time": "✓",
    "waiting": "…",
    "decided": "●",
}


def badge(item: InboxHandoff, now: datetime) -> Badge:
    handoff = item.handoff
    state = urgency(item, now)
    label = {
        "accepted": "Accepted",
        "rejected": "Rejected",
        "escalated": "Escalated",
    }.get(handoff.status) or ("Breached" if state == "on-fire" else URGENCY_TEXT[state])
    open_dated = handoff.status == "assigned"
    return Badge(
        urgency=state,
        label=label,
        icon=_ICONS[state],
        breaches=handoff.breaches,
        due_at=handoff.due_at if open_dated else None,
        at_risk_at=handoff.at_risk_at if open_dated else None,
        missed_since=missed_since(item, now),
        now=now,
    )


# --- why nobody has it --------------------------------------------------------------


def why_not(rep: RepState, *, segment: str, now: datetime, exclude: frozenset[str]) -> str | None:
    """Why routing passes this rep over (None: eligible); mirrors ``RepState.eligible``."""
    if not rep.active:
        return "inactive"
    if rep.rep_id in exclude:
        return "already had it"
    if rep.open_handoffs >= rep.capacity:
        return f"at capacity ({rep.open_handoffs}/{rep.capacity})"
    if rep.segments and segment not in rep.segments:
        return f"does not cover {segment.replace('_', '-')}"
    if rep.hours is not None and not is_working(rep.hours, now):
        return "outside working hours"
    return None


def why_waiting(handoff: Handoff, team_reps: Sequence[RepState], now: datetime) -> str:
    """Why a queued handoff has no rep, for the manager who can do something about it."""
    if handoff.team_id == UNROUTED_TEAM:
        country = handoff.country or "unknown"
        rejected = ", ".join(handoff.excluded_teams)
        also = f"; rejected as wrong territory by {rejected}" if rejected else ""
        where = f"segment {handoff.segment.replace('_', '-')}, country {country}"
        return f"No team's rules match this lead ({where}){also}."
    if not team_reps:
        return "No eligible rep: the team has no reps."
    exclude = frozenset(handoff.previous_rep_ids)
    reasons = [
        (rep.rep_id, why_not(rep, segment=handoff.segment, now=now, exclude=exclude))
        for rep in sorted(team_reps, key=lambda rep: rep.rep_id)
    ]
    if any(reason is None for _, reason in reasons):
        return "A rep is free now; it is assigned within seconds."
    return "No eligible rep: " + "; ".join(f"{rep} {reason}" for rep, reason in reasons) + "."


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
        can_decide=handoff.rep_id == viewer.subject and handoff.status in ("assigned", "escalated"),
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


# --- where to go after signing in ----------------------------------------------------

_SAFE_NEXT = re.compile(r"^/inbox(/[A-Za-z0-9_-]+)*/?(\?[A-Za-z0-9=&_.%-]*)?$")


def safe_next(path: str | None) -> str | None:
    """A page of the inbox to return to after signing in; anything else (another site,
    ``//evil``, a backslash, the sign-in page itself) is refused: no open redirect."""
    if not path or not _SAFE_NEXT.match(path) or path.startswith("/inbox/sign-"):
        return None
    return path
