"""Who hears about a handoff on which channel, and what the messages say (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime

from funnel_common.delivery import Outcome, http_outcome
from handoff.models import Team
from handoff.notifications import (
    Person,
    email_message,
    notifications_for,
    slack_body,
    webhook_body,
)
from tests.unit.test_handoff_inbox import handoff

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LINK = "http://127.0.0.1:8002/inbox/handoffs/6f0"
ADA = Person("ada", "ada@sales.example", "U024BE7LH")
MIA = Person("mia", "mia@sales.example", None)


def team(*webhooks: dict[str, object]) -> Team:
    return Team.model_validate({"team_id": "emea", "manager_id": "mia", "webhooks": webhooks})


def test_nothing_configured_means_no_notification_at_all() -> None:
    rows = notifications_for(
        team(), handoff(), "assigned", rep=Person("ada"), manager=Person("mia"), now=NOW
    )

    assert rows == []


def test_the_rep_is_emailed_on_assignment_at_risk_and_breach_the_manager_on_escalation() -> None:
    recipients = {
        kind: [row.target for row in notifications_for(
            team(), handoff(), kind, rep=ADA, manager=MIA, now=NOW
        ) if row.channel == "email"]
        for kind in ("assigned", "at_risk", "breached", "escalated")
    }  # fmt: skip

    assert recipients == {
        "assigned": ["ada@sales.example"],
        "at_risk": ["ada@sales.example"],
        "breached": ["ada@sales.example"],
        "escalated": ["mia@sales.example"],
    }


def test_team_webhooks_get_only_the_happenings_they_subscribed_to() -> None:
    hooks = team(
        {"url": "https://crm.test/hook", "events": ["breached"]},
        {"url": "https://hooks.slack.test/T/B/x", "format": "slack"},
    )

    assigned = notifications_for(hooks, handoff(), "assigned", rep=ADA, manager=MIA, now=NOW)
    breached = notifications_for(hooks, handoff(), "breached", rep=ADA, manager=MIA, now=NOW)

    assert [row.channel for row in assigned] == ["slack", "email"]
    assert [row.channel for row in breached] == ["webhook", "slack", "email"]


def test_slack_names_the_rep_with_a_mention_the_company_the_sla_state_and_links() -> None:
    lead = handoff(profile={"company": "Analytical <Engines> & Co"})
    [row] = notifications_for(
        team({"url": "https://hooks.slack.test/x", "format": "slack"}),
        lead,
        "assigned",
        rep=ADA,
        manager=MIA,
        now=NOW,
    )[:1]

    text = slack_body(row.facts, LINK)["text"]

    assert "<@U024BE7LH>" in text
    assert "Analytical &lt;Engines&gt; &amp; Co" in text  # escaped: no injected mentions
    assert "on time, due 2026-11-24 13:00 UTC" in text
    assert text.endswith(f"<{LINK}|Open in the inbox>")


def test_json_webhooks_carry_ids_and_the_link_but_no_personal_data() -> None:
    lead = handoff(profile={"company": "Analytical Engines", "email": "ada@lead.example"})
    [row] = notifications_for(
        team({"url": "https://crm.test/hook"}), lead, "breached", rep=ADA, manager=MIA, now=NOW
    )[:1]

    body = webhook_body(row.facts, LINK)

    assert body["to"] == ["rep:ada", "manager:mia"]
    assert body["inbox_url"] == LINK
    assert "Analytical" not in str(body)
    assert "company" not in body


def test_an_email_says_what_happened_and_links_into_the_handoff() -> None:
    lead = handoff(profile={"company": "Evil\r\nBcc: everyone@example.org"})
    [row] = [
        row
        for row in notifications_for(team(), lead, "at_risk", rep=ADA, manager=MIA, now=NOW)
        if row.channel == "email"
    ]

    message = email_message(row.facts, LINK, sender="funnel@sales.example", to=row.target)

    assert message["To"] == "ada@sales.example"
    assert message["Subject"] == "Lead SLA at risk: Evil Bcc: everyone@example.org"
    assert message["Bcc"] is None
    assert LINK in message.get_content()
    assert "at risk, due 2026-11-24 13:00 UTC" in message.get_content()


def test_http_answers_that_will_not_change_are_parked_at_once() -> None:
    assert http_outcome(204) == Outcome()
    assert http_outcome(404) == Outcome("HTTP 404", park=True)
    assert http_outcome(301) == Outcome("HTTP 301", park=True)
    assert http_outcome(429) == Outcome("HTTP 429", park=False)
    assert http_outcome(503) == Outcome("HTTP 503", park=False)
