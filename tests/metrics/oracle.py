"""An independent, deliberately plain recomputation of every funnel figure from a list
of events, straight from the definitions in ARCHITECTURE.md. It shares no code with the
service: if both agree on random histories, the service computes what the contract says.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any

from funnel_common.events import (
    AccountActivated,
    AccountArrChanged,
    AccountChurned,
    DealLost,
    DealOpened,
    DealUpdated,
    DealWon,
    Envelope,
    HandoffAccepted,
    HandoffRejected,
    HandoffSlaBreached,
    LeadCaptured,
    LeadDisqualified,
    LeadQualified,
    TargetSet,
)

REASONS = [
    "not_a_fit",
    "no_budget",
    "bad_contact_data",
    "duplicate",
    "wrong_territory",
    "student_or_competitor",
    "other",
]
BUCKETS = [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800]


def order(event: Envelope) -> tuple[datetime, str]:
    return (event.time, str(event.id))


def quarter_of(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def quarter_bounds(period: str) -> tuple[datetime, datetime]:
    """UTC is the reporting time zone in these tests."""
    year, quarter = int(period[:4]), int(period[-1])
    start = datetime(year, 3 * quarter - 2, 1, tzinfo=UTC)
    end = (
        datetime(year + 1, 1, 1, tzinfo=UTC)
        if quarter == 4
        else datetime(year, 3 * quarter + 1, 1, tzinfo=UTC)
    )
    return start, end


def div(a: int, b: int) -> float | None:
    return a / b if b else None


def ceil_div(a: int, b: int) -> int:
    return math.ceil(Fraction(a, b))


class Oracle:
    def __init__(
        self, events: list[Envelope], probabilities: dict[str, int], default_probability: int
    ) -> None:
        unique = {event.id: event for event in events}  # duplicates are one event
        self.events = sorted(unique.values(), key=order)
        self.probabilities = probabilities
        self.default_probability = default_probability

    # -- facts ------------------------------------------------------------------------

    def lead_stages(self) -> dict[tuple[str, Any], Any]:
        """(stage, lead) -> the earliest event that put the lead in that stage."""
        found: dict[tuple[str, Any], Any] = {}
        for event in self.events:  # sorted by time: the first one seen is the earliest
            if isinstance(event, LeadCaptured | LeadQualified | LeadDisqualified):
                stage = {
                    LeadCaptured: "captured",
                    LeadQualified: "qualified",
                    LeadDisqualified: "disqualified",
                }[type(event)]
                found.setdefault((stage, event.data.lead_id), event)
        return found

    def decisions(self) -> dict[Any, Any]:
        latest: dict[Any, Any] = {}
        for event in self.events:
            if isinstance(event, HandoffAccepted | HandoffRejected):
                latest[event.data.handoff_id] = event
        return latest

    def deals(self) -> dict[str, Any]:
        latest: dict[str, Any] = {}
        for event in self.events:
            if isinstance(event, DealOpened | DealUpdated | DealWon | DealLost):
                latest[event.data.deal_id] = event
        return latest

    def targets(self) -> dict[str, int]:
        latest: dict[str, int] = {}
        for event in self.events:
            if isinstance(event, TargetSet):
                latest[event.data.period] = event.data.amount_cents
        return latest

    def account_state(self, account: str, before: datetime) -> tuple[bool, int] | None:
        state = None
        for event in self.events:
            if event.time >= before:
                break
            if isinstance(event, AccountActivated | AccountArrChanged) and (
                event.data.account_id == account
            ):
                state = (True, event.data.arr_cents)
            if isinstance(event, AccountChurned) and event.data.account_id == account:
                state = (False, 0)
        return state

    # -- stages -----------------------------------------------------------------------

    def stages(self) -> dict[tuple[str, str], dict[str, Any]]:
        rows: dict[tuple[str, str], dict[str, Any]] = {}

        def row(attribution: Any) -> dict[str, Any]:
            key = (attribution.source, attribution.campaign or "")
            return rows.setdefault(
                key,
                {
                    "captured": 0,
                    "qualified": 0,
                    "disqualified": 0,
                    "accepted": 0,
                    "rejected": 0,
                    "rejected_by_reason": {},
                    "within_sla": 0,
                    "opened": 0,
                    "won": 0,
                    "lost": 0,
                    "opened_value_cents": 0,
                    "open_value_cents": 0,
                    "won_value_cents": 0,
                    "lost_value_cents": 0,
                },
            )

        for (stage, _), event in self.lead_stages().items():
            row(event.data.attribution)[stage] += 1
        for event in self.decisions().values():
            entry = row(event.data.attribution)
            entry["within_sla"] += event.data.within_sla
            if isinstance(event, HandoffAccepted):
                entry["accepted"] += 1
            else:
                entry["rejected"] += 1
                reasons = entry["rejected_by_reason"]
                reasons[event.data.reason] = reasons.get(event.data.reason, 0) + 1
        for event in self.deals().values():
            entry = row(event.data.attribution)
            entry["opened"] += 1
            entry["opened_value_cents"] += event.data.amount_cents
            if isinstance(event, DealWon):
                entry["won"] += 1
                entry["won_value_cents"] += event.data.amount_cents
            elif isinstance(event, DealLost):
                entry["lost"] += 1
                entry["lost_value_cents"] += event.data.amount_cents
            else:
                entry["open_value_cents"] += event.data.amount_cents
        return rows

    def total(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for entry in self.stages().values():
            for name, value in entry.items():
                if name == "rejected_by_reason":
                    reasons = result.setdefault(name, dict.fromkeys(REASONS, 0))
                    for reason, count in value.items():
                        reasons[reason] += count
                else:
                    result[name] = result.get(name, 0) + value
        if not result:
            result = dict.fromkeys(
                "captured qualified disqualified accepted rejected within_sla opened won lost "
                "opened_value_cents open_value_cents won_value_cents lost_value_cents".split(),
                0,
            )
        result.setdefault("rejected_by_reason", dict.fromkeys(REASONS, 0))
        return result

    @staticmethod
    def derived(entry: dict[str, Any]) -> dict[str, Any]:
        """Conversions and drop-offs of one stage row, written out one by one."""
        return {
            **entry,
            "decided": entry["accepted"] + entry["rejected"],
            "sla_attainment_ratio": div(entry["within_sla"], entry["accepted"] + entry["rejected"]),
            "conversion": {
                "captured_to_qualified": div(entry["qualified"], entry["captured"]),
                "qualified_to_accepted": div(entry["accepted"], entry["qualified"]),
                "accepted_to_opened": div(entry["opened"], entry["accepted"]),
                "opened_to_won": div(entry["won"], entry["opened"]),
            },
            "drop_off": {
                "captured_to_qualified": entry["captured"] - entry["qualified"],
                "qualified_to_accepted": entry["qualified"] - entry["accepted"],
                "accepted_to_opened": entry["accepted"] - entry["opened"],
                "opened_to_won": entry["opened"] - entry["won"],
            },
            "drop_off_value_cents": {
                "opened_to_won": entry["opened_value_cents"] - entry["won_value_cents"]
            },
        }

    def breaches(self) -> int:
        return len(
            {
                (event.data.handoff_id, event.data.due_at)
                for event in self.events
                if isinstance(event, HandoffSlaBreached)
            }
        )

    def accept_seconds(self) -> list[int]:
        return [
            event.data.business_seconds_to_decision
            for event in self.decisions().values()
            if isinstance(event, HandoffAccepted)
        ]

    # -- one period -------------------------------------------------------------------

    def period(self, period: str) -> dict[str, Any]:
        deals = self.deals().values()
        won = [
            d for d in deals if isinstance(d, DealWon) and quarter_of(d.data.closed_on) == period
        ]
        lost = [
            d for d in deals if isinstance(d, DealLost) and quarter_of(d.data.closed_on) == period
        ]
        open_deals = [
            d
            for d in deals
            if isinstance(d, DealOpened | DealUpdated)
            and d.data.expected_close_date is not None
            and quarter_of(d.data.expected_close_date) == period
        ]
        won_value = sum(d.data.amount_cents for d in won)
        lost_value = sum(d.data.amount_cents for d in lost)
        open_value = sum(d.data.amount_cents for d in open_deals)
        weighted = (
            sum(
                d.data.amount_cents * self.probabilities.get(d.data.stage, self.default_probability)
                for d in open_deals
            )
            // 100
        )
        target = self.targets().get(period)
        coverage: float | str | None = None
        if target is not None:
            remaining = target - won_value
            coverage = "+Inf" if remaining <= 0 else open_value / remaining

        start, end = quarter_bounds(period)
        accounts = {
            event.data.account_id
            for event in self.events
            if isinstance(event, AccountActivated | AccountArrChanged | AccountChurned)
        }
        cohort = start_arr = end_arr = active_end = expansion = contraction = churned = 0
        for account in sorted(accounts):
            at_start = self.account_state(account, start)
            if at_start is None or not at_start[0]:
                continue  # not a customer when the period began (e.g. won during it)
            at_end = self.account_state(account, end)
            assert at_end is not None
            cohort += 1
            start_arr += at_start[1]
            end_value = at_end[1] if at_end[0] else 0
            end_arr += end_value
            active_end += 1 if at_end[0] else 0
            if end_value == 0:
                churned += at_start[1]
            elif end_value < at_start[1]:
                contraction += at_start[1] - end_value
            else:
                expansion += end_value - at_start[1]

        total = self.total()
        all_won_value = total["won_value_cents"]
        remaining_target = None if target is None else max(0, target - won_value)
        deals_needed = leads_needed = pipeline_needed = still_needed = None
        if remaining_target is not None and all_won_value > 0:
            deals_needed = ceil_div(remaining_target * total["won"], all_won_value)
            if total["captured"]:
                leads_needed = ceil_div(remaining_target * total["captured"], all_won_value)
            pipeline_needed = ceil_div(
                remaining_target * (all_won_value + total["lost_value_cents"]), all_won_value
            )
            still_needed = max(0, pipeline_needed - open_value)
        return {
            "revenue": {
                "target_cents": target,
                "won_value_cents": won_value,
                "won": len(won),
                "lost": len(lost),
                "lost_value_cents": lost_value,
                "open_pipeline_cents": open_value,
                "remaining_target_cents": remaining_target,
                "coverage_ratio": coverage,
                "healthy_coverage_ratio": 3.0,
                "coverage_healthy": None
                if coverage is None
                else (coverage == "+Inf" or coverage >= 3.0),  # type: ignore[operator]
                "win_rate": {
                    "count": div(len(won), len(won) + len(lost)),
                    "value": div(won_value, won_value + lost_value),
                },
                "weighted_forecast_cents": weighted,
            },
            "retention": {
                "cohort_size": cohort,
                "active_at_end": active_end,
                "start_arr_cents": start_arr,
                "end_arr_cents": end_arr,
                "expansion_cents": expansion,
                "contraction_cents": contraction,
                "churned_arr_cents": churned,
                "gross": div(start_arr - contraction - churned, start_arr),
                "net": div(end_arr, start_arr),
                "logo": div(active_end, cohort),
            },
            "plan": {
                "target_cents": target,
                "won_value_cents": won_value,
                "remaining_cents": remaining_target,
                "open_pipeline_cents": open_value,
                "average_won_deal_cents": all_won_value // total["won"] if total["won"] else None,
                "lead_to_won_rate": div(total["won"], total["captured"]),
                "win_rate_by_value": div(all_won_value, all_won_value + total["lost_value_cents"]),
                "deals_needed": deals_needed,
                "leads_needed": leads_needed,
                "pipeline_needed_cents": pipeline_needed,
                "pipeline_still_needed_cents": still_needed,
            },
        }

    def funnel(self, period: str) -> dict[str, Any]:
        """What GET /v1/funnel?period= must answer."""
        total = self.derived(self.total())
        stages = self.stages()
        seconds = self.accept_seconds()
        figures = self.period(period)
        return {
            "period": period,
            "currency": "USD",
            "stages": {
                "total": total,
                "by_source": [
                    {"source": source, "campaign": campaign or None, **self.derived(entry)}
                    for (source, campaign), entry in sorted(stages.items())
                ],
            },
            "handoffs": {
                "accepted": total["accepted"],
                "rejected": total["rejected"],
                "rejected_by_reason": total["rejected_by_reason"],
                "decided": total["decided"],
                "within_sla": total["within_sla"],
                "sla_attainment_ratio": total["sla_attainment_ratio"],
                "sla_breaches": self.breaches(),
                "accept_seconds": {
                    "count": len(seconds),
                    "sum": sum(seconds),
                    "buckets": {
                        **{
                            repr(float(bound)): len([s for s in seconds if s <= bound])
                            for bound in BUCKETS
                        },
                        "+Inf": len(seconds),
                    },
                },
            },
            **figures,
        }


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where two JSON documents differ: ints and strings exactly, floats to 1e-9."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual), key=str):
            if key not in actual or key not in expected:
                found.append(
                    f"{path}.{key}: expected {expected.get(key)!r}, got {actual.get(key)!r}"
                )
            else:
                found += differences(expected[key], actual[key], f"{path}.{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: expected {len(expected)} items, got {len(actual)}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in differences(e, a, f"{path}[{i}]")
        ]
    if (
        isinstance(expected, float)
        and isinstance(actual, int | float)
        and not isinstance(actual, bool)
    ):
        return [] if abs(expected - actual) <= 1e-9 else [f"{path}: {expected!r} != {actual!r}"]
    if type(expected) is not type(actual) or expected != actual:
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []
