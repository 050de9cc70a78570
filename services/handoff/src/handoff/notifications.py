"""Who hears about a handoff, on which channel, and what each message says. Pure values.

A happening (assigned, at risk, breached, escalated) becomes notification rows in the
transaction of the change itself (:func:`notifications_for`): one per team webhook
subscribed to it (JSON or Slack), and an email to the person it concerns (the rep on
assignment, at risk and breach; the manager on escalation) when the roster has their
address. A row holds the facts; the notifier renders them when it delivers
(:func:`webhook_body`, :func:`slack_body`, :func:`email_message`), with a link into the
inbox under ``FUNNEL_HANDOFF_PUBLIC_URL``. No webhook, no address: no row, nothing tried.

What leaves: JSON webhooks carry ids and times, never the lead's personal data; Slack
messages and emails, read by people at work, name the lead's company (not the person).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal
from uuid import UUID

from handoff.models import Handoff, NotificationKind, Team

Channel = Literal["webhook", "slack", "email"]
CHANNELS: tuple[Channel, ...] = ("webhook", "slack", "email")

_HEADLINES: dict[NotificationKind, str] = {
    "assigned": "New lead assigned",
    "at_risk": "Lead SLA at risk",
    "breached": "Lead SLA breached",
    "escalated": "Lead escalated to the manager",
}
Audience = Literal["rep", "manager"]
# Who a happening concerns (named in webhooks, mentioned on Slack), and who gets the email.
_CONCERNS: dict[NotificationKind, tuple[Audience, ...]] = {
    "assigned": ("rep",),
    "at_risk": ("rep", "manager"),
    "breached": ("rep", "manager"),
    "escalated": ("manager",),
}
_EMAIL_TO: dict[NotificationKind, Audience] = {
    "assigned": "rep",
    "at_risk": "rep",
    "breached": "rep",
    "escalated": "manager",
}


@dataclass(frozen=True)
class Person:
    """Someone on the roster, as notifications reach them."""

    person_id: str
    email: str | None = None
    slack_member_id: str | None = None


@dataclass(frozen=True)
class Notification:
    """One row of the notification queue: a channel, where to, and the facts to tell."""

    handoff_id: UUID
    kind: NotificationKind
    channel: Channel
    target: str
    facts: dict[str, Any]


def _sla_state(kind: NotificationKind, handoff: Handoff) -> str:
    due = handoff.due_at.strftime("%Y-%m-%d %H:%M UTC") if handoff.due_at else None
    match kind:
        case "assigned":
            return f"on time, due {due}" if due else "waiting in the team queue"
        case "at_risk":
            return f"at risk, due {due}"
        case "breached":
            return f"breached, was due {due}"
        case "escalated":
            breaches = f"{handoff.breaches} breach{'es' if handoff.breaches != 1 else ''}"
            return f"escalated after {breaches}"


def notifications_for(
    team: Team,
    handoff: Handoff,
    kind: NotificationKind,
    *,
    rep: Person | None,
    manager: Person | None,
    now: datetime,
) -> list[Notification]:
    """The rows for one happening: the team's subscribed webhooks and the email."""
    roles: dict[Audience, Person | None] = {"rep": rep, "manager": manager}
    concerned = [(role, person) for role in _CONCERNS[kind] if (person := roles[role])]
    facts: dict[str, Any] = {
        "type": f"handoff.{kind}",
        "handoff_id": str(handoff.handoff_id),
        "lead_id": str(handoff.lead_id),
        "team": handoff.team_id,
        "rep_id": handoff.rep_id,
        "manager_id": team.manager_id,
        "to": [f"{role}:{person.person_id}" for role, person in concerned],
        "status": handoff.status,
        "policy": handoff.policy_name,
        "due_at": handoff.due_at.isoformat() if handoff.due_at else None,
        "sla_state": _sla_state(kind, handoff),
        "breaches": handoff.breaches,
        "occurred_at": now.isoformat(),
        # For the people-facing channels only (Slack, email); never in a JSON webhook.
        "company": _company(handoff),
        "mentions": [person.slack_member_id or person.person_id for _, person in concerned],
    }
    rows: list[Notification] = []
    for hook in team.webhooks:
        if kind in hook.events:
            channel: Channel = "slack" if hook.format == "slack" else "webhook"
            rows.append(Notification(handoff.handoff_id, kind, channel, str(hook.url), facts))
    addressee = roles[_EMAIL_TO[kind]]
    if addressee is not None and addressee.email:
        rows.append(Notification(handoff.handoff_id, kind, "email", addressee.email, facts))
    return rows


def _company(handoff: Handoff) -> str | None:
    company = handoff.profile.get("company")
    return company if isinstance(company, str) and company.strip() else None


def inbox_link(public_url: str, handoff_id: str | UUID) -> str:
    """Where the handoff opens in the rep inbox (signing in first if need be)."""
    return f"{public_url.rstrip('/')}/inbox/handoffs/{handoff_id}"


_PEOPLE_ONLY = ("company", "mentions")


def webhook_body(facts: dict[str, Any], link: str) -> dict[str, Any]:
    """A JSON webhook: ids, times and the inbox link; no personal data."""
    return {
        **{key: value for key, value in facts.items() if key not in _PEOPLE_ONLY},
        "inbox_url": link,
    }


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn control characters; a company named "<!channel>" stays text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SLACK_MEMBER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


def _slack_mention(who: str) -> str:
    # A Slack member id becomes a real mention (a notification on their phone); a rep
    # without one on the roster is named by their id.
    return f"<@{who}>" if _SLACK_MEMBER_ID.match(who) else _slack_escape(who)


def slack_body(facts: dict[str, Any], link: str) -> dict[str, Any]:
    """A Slack incoming-webhook message: who, which company, the SLA state, the link."""
    kind: NotificationKind = facts["type"].removeprefix("handoff.")
    who = ", ".join(_slack_mention(mention) for mention in facts["mentions"])
    company = _slack_escape(facts["company"]) if facts["company"] else "a lead"
    team = _slack_escape(facts["team"])
    text = (
        f"{_HEADLINES[kind]}: {company} (team {team}) for {who or 'the team'}, "
        f"{facts['sla_state']}. <{link}|Open in the inbox>"
    )
    return {"text": text}


def _header_text(text: str) -> str:
    # A header with a line break in it would be refused (or worse, inject a header).
    return " ".join(text.split())


def email_message(facts: dict[str, Any], link: str, *, sender: str, to: str) -> EmailMessage:
    """The email to the rep or manager: what happened, the SLA state, the sign-in link."""
    kind: NotificationKind = facts["type"].removeprefix("handoff.")
    company = _header_text(facts["company"] or "a lead")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"{_HEADLINES[kind]}: {company}"
    message.set_content(
        f"{_HEADLINES[kind]}: {company}, team {facts['team']}.\n"
        f"SLA: {facts['sla_state']}.\n\n"
        f"Open it in the inbox (you will be asked to sign in first if needed):\n{link}\n"
    )
    return message
