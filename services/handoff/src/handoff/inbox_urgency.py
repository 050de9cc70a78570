"""What is on fire: a handoff's urgency, the order of a queue, its SLA badge, and why a
lead waits with no rep. Pure functions of rows and the time (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from handoff.models import Handoff, InboxHandoff
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
# What the team view's state filter offers.
OPEN_URGENCIES: tuple[Urgency, ...] = ("on-fire", "at-risk", "on-time", "waiting")


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
