"""Qualification: the rules both teams agreed on (config/qualification.yaml), and scoring.

Pure: a lead's facts and the rules in, a decision out. Loading names the line of a bad
rules file, so a typo stops start-up instead of silently changing who is an MQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from funnel_common.events import ScoreReason
from funnel_common.types import Label
from lead_intake.configfile import load_yaml_model

Outcome = Literal["qualified", "disqualified", "captured"]


class Condition(BaseModel):
    """All given conditions must hold for the rule to match."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: Label
    title_contains_any: list[str] | None = None
    company_size_min: int | None = Field(default=None, ge=0)
    company_size_max: int | None = Field(default=None, ge=0)
    country_in: list[str] | None = None
    form_type_in: list[str] | None = None
    email_domain_in: list[str] | None = None
    email_domain_ends_with: list[str] | None = None

    @model_validator(mode="after")
    def _has_a_condition(self) -> Self:
        conditions = self.model_dump(exclude={"rule", "points"}, exclude_none=True)
        if not conditions:
            raise ValueError(f"rule {self.rule!r} has no condition")
        return self


class ScoringRule(Condition):
    points: int


class Rules(BaseModel):
    """The qualification rules in force."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Label
    mql_threshold: int
    fit: list[ScoringRule] = Field(default_factory=list)
    intent: list[ScoringRule] = Field(default_factory=list)
    disqualifiers: list[Condition] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _version_as_text(cls, data: object) -> object:
        # `version: 3` in YAML is an int; the version is a label either way.
        if isinstance(data, dict) and isinstance(data.get("version"), int | float):
            data = {**data, "version": str(data["version"])}
        return data

    @model_validator(mode="after")
    def _unique_rule_names(self) -> Self:
        names = [rule.rule for rule in [*self.fit, *self.intent, *self.disqualifiers]]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique: {', '.join(duplicates)}")
        return self


@dataclass(frozen=True)
class LeadFacts:
    """What the rules look at; no I/O, no personal data beyond the email domain."""

    email_domain: str
    title: str | None = None
    company_size: int | None = None
    country: str | None = None
    form_type: str | None = None


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    score: int
    reasons: list[ScoreReason]
    rules_version: str


def _matches(condition: Condition, facts: LeadFacts) -> bool:
    checks: list[bool] = []
    if condition.title_contains_any is not None:
        title = (facts.title or "").casefold()
        checks.append(any(word.casefold() in title for word in condition.title_contains_any))
    if condition.company_size_min is not None:
        checks.append(
            facts.company_size is not None and facts.company_size >= condition.company_size_min
        )
    if condition.company_size_max is not None:
        checks.append(
            facts.company_size is not None and facts.company_size <= condition.company_size_max
        )
    if condition.country_in is not None:
        checks.append(facts.country in condition.country_in)
    if condition.form_type_in is not None:
        checks.append(facts.form_type in condition.form_type_in)
    domain = facts.email_domain.casefold()
    if condition.email_domain_in is not None:
        checks.append(domain in {d.casefold() for d in condition.email_domain_in})
    if condition.email_domain_ends_with is not None:
        checks.append(any(domain.endswith(s.casefold()) for s in condition.email_domain_ends_with))
    return all(checks)


def qualify(rules: Rules, facts: LeadFacts) -> Decision:
    """Score ``facts``: disqualified if any disqualifier matches, else MQL at the threshold."""
    scored = [
        ScoreReason(rule=rule.rule, points=rule.points)
        for rule in [*rules.fit, *rules.intent]
        if _matches(rule, facts)
    ]
    score = sum(reason.points for reason in scored)
    blockers = [
        ScoreReason(rule=rule.rule, points=0)
        for rule in rules.disqualifiers
        if _matches(rule, facts)
    ]
    if blockers:
        return Decision("disqualified", score, [*blockers, *scored], rules.version)
    outcome: Outcome = "qualified" if score >= rules.mql_threshold else "captured"
    return Decision(outcome, score, scored, rules.version)


def rescored_event_due(previous: str, decision: Decision) -> bool:
    """On a later touch, only a change of outcome is evented (no repeated handoffs)."""
    if decision.outcome == "captured":
        return False
    return decision.outcome != previous


def load_rules(path: Path) -> Rules:
    return load_yaml_model(path, Rules)
