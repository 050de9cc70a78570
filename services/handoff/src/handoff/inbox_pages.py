"""The rep inbox's HTML: pages and queue cards, escaped, with no I/O of their own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Literal

from fastapi.responses import HTMLResponse, Response

from funnel_common.auth import Principal
from funnel_common.events import REJECTION_REASONS
from handoff.models import OPEN_STATUSES, Handoff, Rep

BACK = '<p><a href="/inbox">Back to the queue</a></p>'

SlaState = Literal["on-time", "at-risk", "breached", "none"]
_SLA_TEXT: dict[SlaState, str] = {
    "on-time": "On time",
    "at-risk": "At risk",
    "breached": "Breached",
    "none": "Waiting for a rep",
}


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str


def page(title: str, body: str, *, session: Session | None = None, status: int = 200) -> Response:
    header = ""
    if session is not None:
        who = session.principal
        team = f", team {escape(who.team)}" if who.team else ""
        header = (
            f"<header><p>Signed in as <strong>{escape(who.subject)}</strong> "
            f"({escape(who.role)}{team})</p>"
            f'<form method="post" action="/inbox/sign-out">{csrf_field(session)}'
            '<button type="submit">Sign out</button></form></header>'
        )
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Shared Funnel inbox</title>
<link rel="stylesheet" href="/inbox/static/inbox.css">
</head>
<body>
{header}
<main>
<h1>{escape(title)}</h1>
{body}
</main>
<script src="/inbox/static/inbox.js" defer></script>
</body>
</html>"""
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
            "X-Frame-Options": "DENY",
        },
    )


def csrf_field(session: Session) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(session.csrf)}">'


def alert(message: str) -> str:
    return f'<p class="alert" role="alert">{escape(message)}</p>'


def sla_state(handoff: Handoff, now: datetime) -> SlaState:
    """on-time, at-risk (past the policy's at-risk threshold) or breached (past due)."""
    if handoff.due_at is None:
        return "none"
    if now >= handoff.due_at:
        return "breached"
    if handoff.at_risk_at is not None and now >= handoff.at_risk_at:
        return "at-risk"
    return "on-time"


def _text(value: object) -> str:
    return escape(str(value)) if value not in (None, "") else "—"


def lead_name(handoff: Handoff) -> str:
    profile = handoff.profile
    parts = [str(profile[key]) for key in ("first_name", "last_name") if profile.get(key)]
    return " ".join(parts) or str(profile.get("email") or "Unnamed lead")


def sla_badge(handoff: Handoff, now: datetime) -> str:
    state = sla_state(handoff, now)
    if handoff.due_at is None:
        return f'<p class="sla sla-none"><span class="sla-state">{_SLA_TEXT[state]}</span></p>'
    at_risk = handoff.at_risk_at.isoformat() if handoff.at_risk_at else ""
    return (
        f'<p class="sla sla-{state}" data-due="{handoff.due_at.isoformat()}" '
        f'data-at-risk="{at_risk}">SLA: <span class="sla-state">{_SLA_TEXT[state]}</span> · '
        f'<span class="sla-countdown">due {handoff.due_at:%Y-%m-%d %H:%M} UTC</span></p>'
    )


def actions(handoff: Handoff, session: Session, reps: list[Rep]) -> str:
    hid = handoff.handoff_id
    csrf = csrf_field(session)
    parts: list[str] = []
    mine = handoff.rep_id == session.principal.subject
    if mine and handoff.status in ("assigned", "escalated"):
        options = "".join(
            f'<option value="{reason}">{reason.replace("_", " ")}</option>'
            for reason in REJECTION_REASONS
        )
        parts.append(
            f'<form method="post" action="/inbox/handoffs/{hid}/accept" class="inline">{csrf}'
            f'<button type="submit" class="accept">Accept</button></form>'
            f'<form method="post" action="/inbox/handoffs/{hid}/reject" class="reject">{csrf}'
            f'<label for="reason-{hid}">Reason</label>'
            f'<select id="reason-{hid}" name="reason" required>{options}</select>'
            f'<label for="note-{hid}">Note (required for “other”)</label>'
            f'<input id="note-{hid}" name="note" maxlength="2000">'
            f'<button type="submit">Reject</button></form>'
        )
    if session.principal.role in ("manager", "admin") and handoff.status in OPEN_STATUSES:
        choices = "".join(
            f'<option value="{escape(rep.rep_id)}">{escape(rep.rep_id)}</option>'
            for rep in reps
            if rep.rep_id != handoff.rep_id
        )
        parts.append(
            f'<form method="post" action="/inbox/handoffs/{hid}/reassign" class="reassign">'
            f'{csrf}<label for="to-{hid}">Reassign to</label>'
            f'<select id="to-{hid}" name="rep_id"><option value="">next eligible rep</option>'
            f'{choices}</select><button type="submit">Reassign</button></form>'
        )
    return "".join(parts)


def card(handoff: Handoff, session: Session, reps: list[Rep], now: datetime) -> str:
    profile = handoff.profile
    attribution = handoff.attribution
    source = escape(attribution.source) + (
        f" / {escape(attribution.campaign)}" if attribution.campaign else ""
    )
    assigned = f"{handoff.assigned_at:%Y-%m-%d %H:%M} UTC" if handoff.assigned_at else "—"
    reasons = ", ".join(
        f"{reason.get('rule', '?')} {int(reason.get('points', 0)):+d}"
        for reason in handoff.score_reasons
    )
    why = f" ({escape(reasons)})" if reasons else ""
    hid = handoff.handoff_id
    name = escape(lead_name(handoff))
    return f"""<article class="handoff" id="h-{hid}" aria-labelledby="n-{hid}">
<h2 id="n-{hid}"><a href="/inbox/handoffs/{hid}">{name}</a></h2>
{sla_badge(handoff, now)}
<dl>
<dt>Company</dt><dd>{_text(profile.get("company"))}</dd>
<dt>Title</dt><dd>{_text(profile.get("title"))}</dd>
<dt>Source / campaign</dt><dd>{source}</dd>
<dt>Score</dt><dd>{handoff.score}{why}</dd>
<dt>Assigned</dt><dd>{assigned}</dd>
<dt>Holder</dt><dd>{_text(handoff.rep_id)}</dd>
<dt>Status</dt><dd>{escape(handoff.status)}</dd>
<dt>Breaches</dt><dd>{handoff.breaches}</dd>
</dl>
{actions(handoff, session, reps)}
</article>"""
