"""Qualification rules: loading (errors name the line) and scoring (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lead_intake.configfile import ConfigFileError
from lead_intake.qualification import (
    Decision,
    LeadFacts,
    load_rules,
    qualify,
    rescored_event_due,
)
from lead_intake.settings import REPO_CONFIG

RULES = load_rules(REPO_CONFIG / "qualification.yaml")


def test_the_shipped_rules_load_with_a_version() -> None:
    assert RULES.version == "2026-11-24.1"
    assert RULES.mql_threshold == 50


def test_a_senior_buyer_at_a_large_company_from_a_demo_request_qualifies() -> None:
    facts = LeadFacts(
        email_domain="acme.example", title="Head of Sales", company_size=350,
        country="DE", form_type="demo_request",
    )  # fmt: skip

    decision = qualify(RULES, facts)

    assert decision.outcome == "qualified"
    assert decision.score == 30 + 25 + 10 + 40
    assert [r.rule for r in decision.reasons] == [
        "senior_title",
        "company_size_200_plus",
        "core_market",
        "demo_request",
    ]


def test_below_the_threshold_a_lead_stays_captured_for_nurture() -> None:
    decision = qualify(RULES, LeadFacts(email_domain="acme.example", form_type="contact"))

    assert (decision.outcome, decision.score) == ("captured", 10)


@pytest.mark.parametrize("domain", ["rivalfunnel.com", "mit.edu", "ox.ac.uk"])
def test_competitor_and_student_domains_disqualify_whatever_the_score(domain: str) -> None:
    facts = LeadFacts(email_domain=domain, title="CEO", company_size=9000, form_type="demo_request")

    decision = qualify(RULES, facts)

    assert decision.outcome == "disqualified"
    assert decision.reasons[0].points == 0
    assert decision.score >= RULES.mql_threshold


@given(
    title=st.none() | st.sampled_from(["CEO", "Engineering Manager", "intern", "VP Sales"]),
    size=st.none() | st.integers(min_value=0, max_value=100_000),
    country=st.none() | st.sampled_from(["US", "FR", "BR", "JP"]),
    form_type=st.none() | st.sampled_from(["demo_request", "pricing", "contact", "newsletter"]),
)
def test_the_score_is_the_sum_of_the_reasons_and_decides_the_outcome(
    title: str | None, size: int | None, country: str | None, form_type: str | None
) -> None:
    facts = LeadFacts("acme.example", title, size, country, form_type)

    decision = qualify(RULES, facts)

    assert decision.score == sum(reason.points for reason in decision.reasons)
    assert (decision.outcome == "qualified") == (decision.score >= RULES.mql_threshold)
    assert decision.rules_version == RULES.version


def test_only_a_changed_outcome_is_evented_on_a_later_touch() -> None:
    qualified = Decision("qualified", 60, [], "v")
    captured = Decision("captured", 20, [], "v")

    assert rescored_event_due("captured", qualified)
    assert not rescored_event_due("qualified", qualified)
    assert not rescored_event_due("qualified", captured)
    assert rescored_event_due("qualified", Decision("disqualified", 0, [], "v"))


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("version: 1\nmql_threshold: 50\nfit:\n  - rule: a\n    points: 5\n", 4, "no condition"),
        ("version: 1\nmql_threshold: fifty\n", 2, "mql_threshold"),
        ("version: 1\nmql_threshold: 5\nfit:\n  - rule: a\n    country_in: [US]\n"
         "    points: 1\n    pionts: 2\n", 7, "pionts"),
        ("version: 1\nmql_threshold: 5\nfit: [\n", 4, "line 4"),
        ("version: 1\nmql_threshold: 5\nintent:\n  - rule: x\n    form_type_in: [a]\n"
         "    points: 1\ndisqualifiers:\n  - rule: x\n    email_domain_in: [b]\n", 1, "unique"),
    ],
)  # fmt: skip
def test_a_bad_rules_file_is_refused_naming_the_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)

    with pytest.raises(ConfigFileError) as refused:
        load_rules(path)

    assert f"line {line}" in str(refused.value)
    assert message in str(refused.value)
