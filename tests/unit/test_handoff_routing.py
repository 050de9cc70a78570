"""Routing decisions: team rules and weighted round robin over eligible reps."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

from handoff.routing import RepState, TeamRule, choose_rep, choose_team, segment_of
from handoff.sla import BusinessCalendar, Span

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday


def rep(rep_id: str, **changes: object) -> RepState:
    base = RepState(
        rep_id=rep_id,
        weight=1,
        capacity=10,
        open_handoffs=0,
        active=True,
        segments=frozenset(),
        hours=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_segments_follow_company_size() -> None:
    assert [segment_of(size) for size in (None, 1, 49, 50, 999, 1000)] == [
        "unknown",
        "smb",
        "smb",
        "mid_market",
        "mid_market",
        "enterprise",
    ]


def test_the_most_specific_matching_team_of_the_best_priority_wins() -> None:
    teams = [
        TeamRule("catch-all", 100, frozenset(), frozenset()),
        TeamRule("dach", 10, frozenset(), frozenset({"DE", "AT", "CH"})),
        TeamRule("dach-enterprise", 10, frozenset({"enterprise"}), frozenset({"DE"})),
    ]

    assert choose_team(teams, segment="enterprise", country="DE") == "dach-enterprise"
    assert choose_team(teams, segment="smb", country="DE") == "dach"
    assert choose_team(teams, segment="smb", country="FR") == "catch-all"
    assert choose_team(teams, segment="smb", country=None) == "catch-all"
    assert choose_team(teams, segment="smb", country="DE", exclude=frozenset({"dach"})) == (
        "catch-all"
    )
    assert choose_team(teams[1:], segment="smb", country="FR") is None


def test_weighted_round_robin_shares_leads_by_weight_and_interleaves() -> None:
    reps = {"ada": rep("ada", weight=3), "bob": rep("bob", weight=1)}
    picks = []

    for _ in range(8):
        choice = choose_rep(list(reps.values()), segment="smb", now=NOW)
        assert choice is not None
        picks.append(choice.rep_id)
        for rep_id, weight in choice.current_weights.items():
            reps[rep_id] = replace(reps[rep_id], current_weight=weight)

    assert Counter(picks) == {"ada": 6, "bob": 2}
    assert picks[:4].count("bob") == 1


def test_only_eligible_reps_are_chosen() -> None:
    office_hours = BusinessCalendar(
        time_zone="Asia/Tokyo", weekly_hours={"tue": [Span(start="09:00", end="17:00")]}
    )
    reps = [
        rep("inactive", active=False, weight=50),
        rep("full", capacity=2, open_handoffs=2, weight=50),
        rep("asleep", hours=office_hours, weight=50),  # 19:00 in Tokyo
        rep("enterprise-only", segments=frozenset({"enterprise"}), weight=50),
        rep("breached-before", weight=50),
        rep("eligible"),
    ]

    choice = choose_rep(reps, segment="smb", now=NOW, exclude=frozenset({"breached-before"}))

    assert choice is not None
    assert choice.rep_id == "eligible"
    assert (
        choose_rep(reps[:5], segment="smb", now=NOW, exclude=frozenset({"breached-before"})) is None
    )
