"""`funnel seed`'s plan is a pure function of the seed (the run tag only names things)."""

from __future__ import annotations

from datetime import UTC, datetime

from funnel_tools.seed.plan import (
    BREACHES_PER_UNANSWERED,
    DEMO_FORM,
    REPS,
    SLA_POLICIES,
    TEAMS,
    Expect,
    make_plan,
    quarter_of,
)
from metrics.settings import MetricsSettings

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


def test_the_same_seed_plans_the_same_funnel() -> None:
    assert make_plan(7, 200, "r1", NOW) == make_plan(7, 200, "r1", NOW)


def test_another_seed_plans_another_funnel() -> None:
    assert make_plan(7, 200, "r1", NOW) != make_plan(8, 200, "r1", NOW)


def test_the_run_tag_renames_but_decides_nothing() -> None:
    one, two = make_plan(7, 200, "r1", NOW), make_plan(7, 200, "r2", NOW)
    assert [lead.expect for lead in one.leads] == [lead.expect for lead in two.leads]
    assert {lead.email for lead in one.leads}.isdisjoint(lead.email for lead in two.leads)
    assert one.target_cents == two.target_cents


def test_the_plan_is_a_mixed_funnel_inside_the_quarter() -> None:
    plan = make_plan(7, 200, "r1", NOW)
    period, start = quarter_of(NOW)
    assert plan.period == period == "2026-Q4"
    assert len(plan.leads) == 200
    assert 0 < plan.unique_leads < 200  # some repeat touches (merges)
    outcomes: tuple[Expect, ...] = ("qualified", "captured", "disqualified")
    for outcome in outcomes:
        assert plan.expected(outcome) > 0
    decisions = list(plan.decisions.values())
    assert any(d.accept for d in decisions)
    assert any(not d.accept for d in decisions)
    assert all(d.note for d in decisions if d.reason == "other")
    for event in ("opened", "won", "lost"):
        assert plan.count(plan.deals, event) > 0
    for event in ("activated", "arr_changed", "churned"):
        assert plan.count(plan.accounts, event) > 0
    accepted = {email for email, d in plan.decisions.items() if d.accept}
    assert {deal.payload["email"] for deal in plan.deals} <= accepted
    for deal in plan.deals:
        assert start <= datetime.fromisoformat(deal.payload["occurred_at"]) <= NOW
    assert len({w.payload["webhook_id"] for w in plan.deals + plan.accounts}) == len(
        plan.deals + plan.accounts
    )
    assert plan.target_cents > 0


def test_a_share_of_qualified_leads_is_left_to_breach_the_sla() -> None:
    plan = make_plan(7, 200, "r1", NOW, unanswered_share=0.2)

    unanswered = [lead for lead in plan.leads if lead.unanswered and not lead.repeat]
    assert unanswered
    assert all(lead.expect == "qualified" for lead in unanswered)
    assert {lead.email for lead in unanswered}.isdisjoint(plan.decisions)
    assert all(lead.payload["form_id"] == DEMO_FORM["form_id"] for lead in unanswered)
    assert all("form_id" not in lead.payload for lead in plan.leads if not lead.unanswered)
    assert plan.breaches == 2 * len(unanswered)
    share = len(unanswered) / plan.expected("qualified")
    assert 0.1 < share < 0.3


def test_the_same_seed_leaves_the_same_leads_unanswered() -> None:
    one = make_plan(7, 200, "r1", NOW, unanswered_share=0.2)
    again = make_plan(7, 200, "r1", NOW, unanswered_share=0.2)
    other = make_plan(8, 200, "r1", NOW, unanswered_share=0.2)

    assert one.unanswered == again.unanswered
    assert [email.split("@")[0] for email in one.unanswered] != [
        email.split("@")[0] for email in other.unanswered
    ]


def test_a_zero_breach_share_answers_every_qualified_lead() -> None:
    plan = make_plan(7, 200, "r1", NOW, unanswered_share=0)

    assert plan.unanswered == []
    assert plan.breaches == 0
    assert len(plan.decisions) == plan.expected("qualified")


def test_the_hot_policy_breaches_in_seconds_and_reaches_every_team() -> None:
    hot = SLA_POLICIES["seed-hot"]

    assert hot["business_minutes"] * 60 <= 10
    assert hot["on_breach"]["reassign_up_to"] == BREACHES_PER_UNANSWERED - 1
    for team in TEAMS.values():
        assert team["form_type_policies"] == {"demo_request": "seed-hot"}
    for team_id in TEAMS:
        assert sum(rep_team == team_id for rep_team, _ in REPS.values()) >= 2  # one to reassign to


def test_the_target_leaves_room_for_a_finite_coverage_below_the_band() -> None:
    plan = make_plan(7, 200, "r1", NOW)
    by_event = {
        event: {w.payload["deal_id"]: w.payload for w in plan.deals if w.payload["event"] == event}
        for event in ("opened", "won", "lost")
    }
    won = sum(deal["amount_cents"] for deal in by_event["won"].values())
    still_open = sum(
        deal["amount_cents"]
        for deal_id, deal in by_event["opened"].items()
        if deal_id not in by_event["won"] and deal_id not in by_event["lost"]
    )

    assert won < plan.target_cents
    assert 1.5 < still_open / (plan.target_cents - won) < 3


def test_sources_are_ones_metrics_exports_as_labels() -> None:
    plan = make_plan(7, 200, "r1", NOW)

    sources = {lead.payload["source"] for lead in plan.leads}
    assert len(sources) > 3
    assert sources <= set(MetricsSettings().sources)


def test_a_few_mistyped_posts_are_planned_apart_from_the_leads() -> None:
    plan = make_plan(7, 200, "r1", NOW)

    assert len(plan.typos) == 4
    assert all("@" not in typo["email"] for typo in plan.typos)
    assert plan == make_plan(7, 200, "r1", NOW)
    assert len(plan.leads) == 200
