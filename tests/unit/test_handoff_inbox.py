"""The inbox's pure parts: what is on fire and in which order, why a lead waits, the
links on a card, where sign-in may send a rep back to, and the templates' escaping."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from funnel_common.auth import issue_token
from funnel_common.events import Attribution
from funnel_common.settings import CommonSettings
from handoff.inbox_pages import NOBODY, Session, card, mailto, team_filter, tel
from handoff.inbox_render import TEMPLATES
from handoff.inbox_session import safe_next
from handoff.inbox_urgency import by_urgency, duration_text, urgency, why_not, why_waiting
from handoff.models import DecisionRecord, Handoff, InboxHandoff, LeadTouch
from handoff.notifications import inbox_link
from handoff.routing import UNROUTED_TEAM, RepState
from handoff.settings import HandoffSettings
from handoff.sla import DEFAULT_POLICY, BusinessCalendar, Span

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def handoff(**changes: Any) -> Handoff:
    base = Handoff(
        handoff_id=uuid4(),
        lead_id=uuid4(),
        team_id="emea",
        rep_id="ada",
        status="assigned",
        policy_name="default",
        policy=DEFAULT_POLICY,
        segment="smb",
        country="DE",
        form_type=None,
        attribution=Attribution(source="webinar"),
        profile={"email": "grace@example.com", "first_name": "Grace"},
        score=80,
        created_at=NOW,
        assigned_at=NOW,
        at_risk_at=NOW + timedelta(minutes=30),
        at_risk_fired=False,
        due_at=NOW + timedelta(minutes=60),
        breaches=0,
        previous_rep_ids=(),
        excluded_teams=(),
        decided_at=None,
        decided_by=None,
        reject_reason=None,
    )
    return replace(base, **changes)


def item(missed: datetime | None = None, **changes: Any) -> InboxHandoff:
    return InboxHandoff(
        handoff=handoff(**changes), form_id=None, first_missed_due_at=missed, last_decision=None
    )


def session(subject: str = "ada", role: Any = "rep", team: str | None = None) -> Session:
    principal, _ = issue_token(CommonSettings().auth_secret, subject=subject, role=role, team=team)
    return Session(principal, "csrf-token")


def test_on_fire_means_escalated_breached_before_or_past_due_now() -> None:
    assert urgency(item(), NOW) == "on-time"
    assert urgency(item(), NOW + timedelta(minutes=30)) == "at-risk"
    assert urgency(item(), NOW + timedelta(minutes=60)) == "on-fire"
    # Reassigned after a breach: a fresh deadline, but the lead is still past its SLA.
    assert urgency(item(breaches=1), NOW) == "on-fire"
    assert urgency(item(status="escalated", due_at=None, at_risk_at=None), NOW) == "on-fire"
    queued = item(status="queued", rep_id=None, due_at=None, at_risk_at=None)
    assert urgency(queued, NOW) == "waiting"
    assert urgency(item(status="accepted", due_at=None, breaches=2), NOW) == "decided"


def test_the_queue_puts_the_longest_past_due_first_then_at_risk_then_by_due_time() -> None:
    on_time_later = item(due_at=NOW + timedelta(hours=3), at_risk_at=NOW + timedelta(hours=2))
    on_time_soon = item(due_at=NOW + timedelta(hours=1), at_risk_at=NOW + timedelta(minutes=30))
    at_risk = item(due_at=NOW + timedelta(hours=2), at_risk_at=NOW - timedelta(minutes=1))
    escalated = item(
        missed=NOW - timedelta(hours=5), status="escalated", due_at=None, at_risk_at=None
    )
    breached_once = item(missed=NOW - timedelta(hours=1), breaches=1)
    past_due_now = item(due_at=NOW - timedelta(minutes=2), at_risk_at=NOW - timedelta(hours=1))
    waiting = item(status="queued", rep_id=None, due_at=None, at_risk_at=None)

    ordered = by_urgency(
        [waiting, on_time_later, breached_once, at_risk, past_due_now, on_time_soon, escalated],
        NOW,
    )

    assert ordered == [
        escalated,
        breached_once,
        past_due_now,
        at_risk,
        on_time_soon,
        on_time_later,
        waiting,
    ]


def test_the_badge_says_how_long_past_due_and_how_many_breaches() -> None:
    escalated = item(
        missed=NOW - timedelta(hours=3, minutes=5),
        status="escalated",
        rep_id="mia",
        due_at=None,
        at_risk_at=None,
        breaches=2,
    )
    shown = card(escalated, session("mia", "manager", "emea"), NOW)

    assert (shown.badge.urgency, shown.badge.label) == ("on-fire", "Escalated")
    assert shown.badge.breaches == 2
    assert shown.badge.past_due == "3h 5m past due"
    assert shown.badge.countdown is None
    assert shown.status == "Escalated to you, the team's manager"
    assert shown.holder_label == "mia (manager)"
    other = card(escalated, session("ada"), NOW)
    assert other.status == "Escalated to mia, the team's manager"


def test_decided_handoffs_say_who_decided_and_never_wait_for_a_rep() -> None:
    decided = NOW + timedelta(minutes=5)
    accepted = item(status="accepted", decided_at=decided, decided_by="ada", due_at=None)
    rejection = DecisionRecord(
        accepted.handoff.handoff_id, "bob", "rejected", "no_budget", "Q3", decided
    )
    rejected = replace(
        item(status="rejected", decided_at=decided, decided_by="bob", due_at=None),
        last_decision=rejection,
    )

    mine = card(accepted, session("ada"), NOW + timedelta(days=1))
    theirs = card(rejected, session("ada", "admin"), NOW)

    assert (mine.status, mine.status_at, mine.badge.label) == (
        "Accepted by you",
        decided,
        "Accepted",
    )
    assert mine.badge.past_due is None
    assert mine.badge.countdown is None
    assert (theirs.status, theirs.decision_reason) == ("Rejected by bob", "No budget")
    assert not mine.can_decide
    assert not theirs.can_reassign


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (725, "12m 5s"),
        (11_100, "3h 5m"),
        (187_200, "2d 4h"),
        (-90, "1m 30s"),
    ],
)
def test_durations_read_like_a_person_would_say_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


WORKDAYS = BusinessCalendar(
    weekly_hours={"mon": [Span(start="09:00", end="17:00")]}, time_zone="Europe/Berlin"
)


@given(
    active=st.booleans(),
    capacity=st.integers(0, 3),
    open_handoffs=st.integers(0, 3),
    segments=st.sets(st.sampled_from(["smb", "mid_market", "enterprise"])),
    hours=st.sampled_from([None, WORKDAYS]),
    excluded=st.booleans(),
    at=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
)
def test_why_not_agrees_with_routing_about_who_is_eligible(
    active: bool,
    capacity: int,
    open_handoffs: int,
    segments: set[str],
    hours: BusinessCalendar | None,
    excluded: bool,
    at: datetime,
) -> None:
    rep = RepState("ada", 1, capacity, open_handoffs, active, frozenset(segments), hours)
    exclude = frozenset({"ada"} if excluded else ())

    reason = why_not(rep, segment="smb", now=at, exclude=exclude)

    assert (reason is None) == rep.eligible(segment="smb", now=at, exclude=exclude)


def test_a_waiting_lead_says_why_no_rep_or_team_takes_it() -> None:
    monday_night = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
    reps = [
        RepState("ada", 1, 5, 5, True, frozenset(), None),
        RepState("bob", 1, 5, 0, True, frozenset({"enterprise"}), None),
        RepState("cyd", 1, 5, 0, False, frozenset(), None),
        RepState("dee", 1, 5, 0, True, frozenset(), WORKDAYS),
        RepState("eve", 1, 5, 0, True, frozenset(), None),
    ]
    queued = handoff(status="queued", rep_id=None, due_at=None, previous_rep_ids=("eve",))

    assert why_waiting(queued, reps, monday_night) == (
        "No eligible rep: ada at capacity (5/5); bob does not cover smb; cyd inactive; "
        "dee outside working hours; eve already had it."
    )
    assert why_waiting(queued, [], NOW) == "No eligible rep: the team has no reps."
    unrouted = replace(queued, team_id=UNROUTED_TEAM, country="BR", excluded_teams=("emea",))
    assert why_waiting(unrouted, [], NOW) == (
        "No team's rules match this lead (segment smb, country BR); "
        "rejected as wrong territory by emea."
    )


def test_contact_links_call_and_mail_nothing_else() -> None:
    assert tel("+49 (30) 123-4567") == "tel:+49301234567"
    assert tel("030 1234") == "tel:0301234"
    assert tel("call me") is None
    assert tel(None) is None
    assert mailto("grace+sales@example.com") == "mailto:grace+sales@example.com"
    assert mailto('x"><script>@example.com') == "mailto:x%22%3E%3Cscript%3E@example.com"


@pytest.mark.parametrize(
    "path", ["/inbox", "/inbox/handoffs/6f0a", "/inbox/team?rep=ada&state=on-fire"]
)
def test_sign_in_returns_to_pages_of_the_inbox(path: str) -> None:
    assert safe_next(path) == path


@pytest.mark.parametrize(
    "path",
    [
        None,
        "",
        "https://evil.example/inbox",
        "//evil.example",
        "/inbox//evil.example",
        "/\\evil.example",
        "/inbox/../v1/handoffs",
        "/inbox/sign-in",
        "/inbox/sign-out",
        "/v1/handoffs",
        "/inbox/x?y=<script>",
        "/inbox\r\nSet-Cookie: x=1",
    ],
)
def test_sign_in_refuses_to_send_anyone_elsewhere(path: str | None) -> None:
    assert safe_next(path) is None


def test_team_filters_by_holder_and_state_and_ignore_unknown_values() -> None:
    cards = [
        card(item(), session("mia", "manager", "emea"), NOW),
        card(item(rep_id="bob", breaches=1), session("mia", "manager", "emea"), NOW),
        card(
            item(status="queued", rep_id=None, due_at=None, at_risk_at=None),
            session("mia", "manager", "emea"),
            NOW,
        ),
    ]

    def kept(rep: str | None, state: str | None) -> list[str | None]:
        chosen = team_filter(rep, state)
        return [shown.holder for shown in cards if chosen.keeps(shown)]

    assert kept(None, None) == ["ada", "bob", None]
    assert kept("bob", None) == ["bob"]
    assert kept(NOBODY, None) == [None]
    assert kept(None, "on-fire") == ["bob"]
    assert kept(None, "bogus") == ["ada", "bob", None]


def _render_card(shown: Any, viewer: Session) -> str:
    template = TEMPLATES.env.from_string(
        '{% import "macros.html" as m with context %}{{ m.card(c) }}'
    )
    return template.render(c=shown, session=viewer, current="")


def test_templates_escape_what_leads_wrote_and_preselect_no_reason() -> None:
    hostile = '<script>alert(1)</script>"'
    lead = replace(
        item(),
        touches=(
            LeadTouch(NOW, "email", hostile, Attribution(source="ads", campaign="x<b>y</b>")),
        ),
    )
    lead = replace(
        lead,
        handoff=replace(
            lead.handoff,
            profile={"email": "g@example.com", "first_name": hostile, "company": hostile},
        ),
    )

    html = _render_card(card(lead, session("ada"), NOW), session("ada"))

    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in html
    assert "x&lt;b&gt;y&lt;/b&gt;" in html
    assert '<option value="" selected>Choose a reason…</option>' in html
    assert html.count(" selected") == 1
    assert 'name="csrf" value="csrf-token"' in html


def test_notifications_link_into_the_inbox_under_the_public_url() -> None:
    handoff_id = uuid4()

    default = inbox_link(HandoffSettings().public_url, handoff_id)
    deployed = inbox_link("https://handoff.example.com/", handoff_id)

    assert default == f"http://127.0.0.1:8002/inbox/handoffs/{handoff_id}"
    assert deployed == f"https://handoff.example.com/inbox/handoffs/{handoff_id}"
