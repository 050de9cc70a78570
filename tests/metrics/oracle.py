"""An independent, deliberately plain recomputation of every funnel figure from a list
of events, straight from the definitions in ARCHITECTURE.md and docs/metrics.md. It
shares no code with the service: if both agree on random histories, the service
computes what the contract says.

Order: a deal's or an account's events are walked in the order of (when it happened,
lifecycle step, the sender's delivery id with none first, what the event says): a
deal opened < updated < won or lost; an account activated < ARR changed < churned.
"""

from __future__ import annotations

import math
import statistics
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
    HandoffAssigned,
    HandoffReassigned,
    HandoffRejected,
    HandoffRejectedV2,
    HandoffSlaBreached,
    LeadCaptured,
    LeadCapturedV2,
    LeadDisqualified,
    LeadQualified,
    LeadQualifiedV2,
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
DEAL_FIELDS = ["lead_id", "attribution", "amount_cents", "stage", "expected_close_date"]
HEALTHY = 3.0
EVER = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
EVER_DAYS = (date.min, date.max)
DealEvent = DealOpened | DealUpdated | DealWon | DealLost
AccountEvent = AccountActivated | AccountArrChanged | AccountChurned


def quarter_of(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def quarter_days(period: str) -> tuple[date, date]:
    year, quarter = int(period[:4]), int(period[-1])
    first = date(year, 3 * quarter - 2, 1)
    after = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return first, after


def quarter_bounds(period: str) -> tuple[datetime, datetime]:
    """UTC is the reporting time zone in these tests."""
    first, after = quarter_days(period)
    return (
        datetime(first.year, first.month, first.day, tzinfo=UTC),
        datetime(after.year, after.month, after.day, tzinfo=UTC),
    )


def div(a: int, b: int) -> float | None:
    return a / b if b else None


def ceil_div(a: int, b: int) -> int:
    return math.ceil(Fraction(a, b))


# --- deals and accounts: the state a set of events gives --------------------------------


def _deal_step(event: DealEvent) -> int:
    return 0 if isinstance(event, DealOpened) else 1 if isinstance(event, DealUpdated) else 2


def _deal_kind(event: DealEvent) -> str:
    return {DealOpened: "opened", DealUpdated: "updated", DealWon: "won", DealLost: "lost"}[
        type(event)
    ]


def _blank(value: object) -> str:
    return "" if value is None else str(value)


def deal_place(event: DealEvent) -> tuple[Any, ...]:
    data = event.data
    says = (
        _deal_kind(event),
        _blank(data.lead_id),
        data.attribution.source,
        data.attribution.campaign or "",
        f"{data.amount_cents:020d}",
        data.stage,
        _blank(data.expected_close_date),
        "*" if data.fields_set is None else ",".join(sorted(set(data.fields_set))),
        _blank(getattr(data, "closed_on", None)),
        _blank(getattr(data, "reason", None)),
    )
    return (
        event.time,
        _deal_step(event),
        data.delivery_id is not None,
        data.delivery_id or "",
        says,
    )


def deal_state(events: list[DealEvent]) -> dict[str, Any]:
    """Walk the deal's events in their place: fields overwrite, statuses move."""
    walk = sorted(events, key=deal_place)
    values: dict[str, Any] = {}
    status, closed_on, reason, reopens = "open", None, None, 0
    wins = losses = 0
    for event in walk:
        named = DEAL_FIELDS if event.data.fields_set is None else event.data.fields_set
        for name in named:
            values[name] = getattr(event.data, name)
        if isinstance(event, DealOpened):
            if status != "open":
                reopens += 1
            status, closed_on, reason = "open", None, None
        elif isinstance(event, DealWon):
            wins += status != "won"
            status, closed_on, reason = "won", event.data.closed_on, None
        elif isinstance(event, DealLost):
            losses += status != "lost"
            status, closed_on, reason = "lost", event.data.closed_on, event.data.reason
    for name in DEAL_FIELDS:  # nobody set it: the last event carries the known value
        values.setdefault(name, getattr(walk[-1].data, name))
    openings = [event.time for event in walk if isinstance(event, DealOpened)]
    return {
        **values,
        "status": status,
        "closed_on": closed_on,
        "lost_reason": reason,
        "opened_at": openings[0] if openings else walk[0].time,
        "reopens": reopens,
        "wins": wins,
        "losses": losses,
    }


def account_place(event: AccountEvent) -> tuple[Any, ...]:
    step = (
        0
        if isinstance(event, AccountActivated)
        else 1
        if isinstance(event, AccountArrChanged)
        else 2
    )
    arr = 0 if isinstance(event, AccountChurned) else event.data.arr_cents
    delivery = event.data.delivery_id
    return (event.time, step, delivery is not None, delivery or "", arr)


class Oracle:
    def __init__(
        self,
        events: list[Envelope],
        probabilities: dict[str, int],
        default_probability: int,
        *,
        now: datetime | None = None,
        sources: list[str] | None = None,
    ) -> None:
        unique = {event.id: event for event in events}  # duplicates are one event
        self.events = sorted(unique.values(), key=lambda event: (event.time, str(event.id)))
        self.probabilities = probabilities
        self.default_probability = default_probability
        self.now = now or datetime.now(UTC)
        self.sources = sources or []

    # -- facts ------------------------------------------------------------------------

    def lead_stages(self) -> dict[tuple[str, Any], Any]:
        """(stage, lead) -> the earliest event that put the lead in that stage."""
        found: dict[tuple[str, Any], Any] = {}
        for event in self.events:  # sorted by time: the first one seen is the earliest
            # A .v2 lead event is its .v1 with the personal data sealed.
            if isinstance(event, LeadCaptured | LeadCapturedV2):
                stage = "spam" if event.data.spam_reasons else "captured"
            elif isinstance(event, LeadQualified | LeadQualifiedV2):
                stage = "qualified"
            elif isinstance(event, LeadDisqualified):
                stage = "disqualified"
            else:
                continue
            found.setdefault((stage, event.data.lead_id), event)
        return found

    def decisions(self) -> dict[Any, Any]:
        latest: dict[Any, Any] = {}
        for event in self.events:
            if isinstance(event, HandoffAccepted | HandoffRejected | HandoffRejectedV2):
                latest[event.data.handoff_id] = event
        return latest

    def deadlines(self) -> dict[Any, datetime]:
        """Each handoff's first response deadline: set by its earliest assignment."""
        first: dict[Any, tuple[datetime, datetime]] = {}
        for event in self.events:
            if isinstance(event, HandoffAssigned | HandoffReassigned) and event.data.due_at:
                candidate = (event.time, event.data.due_at)
                handoff = event.data.handoff_id
                first[handoff] = min(first.get(handoff, candidate), candidate)
        return {handoff: due for handoff, (_, due) in first.items()}

    def deals(self) -> dict[str, dict[str, Any]]:
        by_deal: dict[str, list[DealEvent]] = {}
        for event in self.events:
            if isinstance(event, DealOpened | DealUpdated | DealWon | DealLost):
                by_deal.setdefault(event.data.deal_id, []).append(event)
        return {deal: deal_state(events) for deal, events in by_deal.items()}

    def targets(self) -> dict[str, int]:
        latest: dict[str, int] = {}
        for event in self.events:
            if isinstance(event, TargetSet):
                latest[event.data.period] = event.data.amount_cents
        return latest

    def account_state(self, account: str, before: datetime) -> tuple[bool, int] | None:
        known = [
            event
            for event in self.events
            if isinstance(event, AccountActivated | AccountArrChanged | AccountChurned)
            and event.data.account_id == account
            and event.time < before
        ]
        if not known:
            return None
        last = max(known, key=account_place)
        return (False, 0) if isinstance(last, AccountChurned) else (True, last.data.arr_cents)

    # -- stages within a window ---------------------------------------------------------

    def window(
        self, start: datetime, end: datetime, first_day: date, after_day: date
    ) -> dict[tuple[str, str], dict[str, Any]]:
        rows: dict[tuple[str, str], dict[str, Any]] = {}

        def row(source: str, campaign: str | None) -> dict[str, Any]:
            return rows.setdefault(
                (source, campaign or ""),
                {
                    **dict.fromkeys(
                        "captured spam qualified disqualified accepted rejected opened won "
                        "lost opened_value_cents won_value_cents lost_value_cents".split(),
                        0,
                    ),
                    "rejected_by_reason": {},
                    "cohort": dict.fromkeys(
                        ["captured", "qualified", "accepted", "opened", "won"], 0
                    ),
                },
            )

        def inside(when: datetime) -> bool:
            return start <= when < end

        stages = self.lead_stages()
        decisions = self.decisions()
        deals = self.deals()
        for (stage, _), event in stages.items():
            if inside(event.time):
                row(event.data.attribution.source, event.data.attribution.campaign)[stage] += 1
        for event in decisions.values():
            if not inside(event.time):
                continue
            entry = row(event.data.attribution.source, event.data.attribution.campaign)
            if isinstance(event, HandoffAccepted):
                entry["accepted"] += 1
            else:
                entry["rejected"] += 1
                reasons = entry["rejected_by_reason"]
                reasons[event.data.reason] = reasons.get(event.data.reason, 0) + 1
        for deal in deals.values():
            attribution = deal["attribution"]
            if inside(deal["opened_at"]):
                entry = row(attribution.source, attribution.campaign)
                entry["opened"] += 1
                entry["opened_value_cents"] += deal["amount_cents"]
            if deal["status"] != "open" and first_day <= deal["closed_on"] < after_day:
                entry = row(attribution.source, attribution.campaign)
                entry[deal["status"]] += 1
                entry[f"{deal['status']}_value_cents"] += deal["amount_cents"]
        # The cohort: leads captured in the window, followed wherever they went since.
        accepted_leads = {
            event.data.lead_id for event in decisions.values() if isinstance(event, HandoffAccepted)
        }
        for (stage, lead), event in stages.items():
            if stage != "captured" or not inside(event.time):
                continue
            cohort = row(event.data.attribution.source, event.data.attribution.campaign)["cohort"]
            lead_deals = [deal for deal in deals.values() if deal["lead_id"] == lead]
            cohort["captured"] += 1
            cohort["qualified"] += ("qualified", lead) in stages
            cohort["accepted"] += lead in accepted_leads
            cohort["opened"] += bool(lead_deals)
            cohort["won"] += any(deal["status"] == "won" for deal in lead_deals)
        return rows

    @staticmethod
    def entry(row: dict[str, Any]) -> dict[str, Any]:
        cohort = row["cohort"]
        return {
            **row,
            "rejected_by_reason": dict(sorted(row["rejected_by_reason"].items())),
            "conversion": {
                "captured_to_qualified": div(cohort["qualified"], cohort["captured"]),
                "captured_to_accepted": div(cohort["accepted"], cohort["captured"]),
                "captured_to_opened": div(cohort["opened"], cohort["captured"]),
                "captured_to_won": div(cohort["won"], cohort["captured"]),
            },
        }

    @staticmethod
    def summed(rows: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {
            **dict.fromkeys(
                "captured spam qualified disqualified accepted rejected opened won lost "
                "opened_value_cents won_value_cents lost_value_cents".split(),
                0,
            ),
            "rejected_by_reason": dict.fromkeys(REASONS, 0),
            "cohort": dict.fromkeys(["captured", "qualified", "accepted", "opened", "won"], 0),
        }
        for row in rows.values():
            for name, value in row.items():
                if name in ("rejected_by_reason", "cohort"):
                    for key, count in value.items():
                        result[name][key] = result[name].get(key, 0) + count
                else:
                    result[name] += value
        return result

    def view(self, rows: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
        return {
            "total": self.entry(self.summed(rows)),
            "by_source": [
                {"source": source, "campaign": campaign or None, **self.entry(row)}
                for (source, campaign), row in sorted(rows.items())
            ],
        }

    def all_time(self) -> dict[tuple[str, str], dict[str, Any]]:
        return self.window(*EVER, *EVER_DAYS)

    def in_period(self, period: str) -> dict[tuple[str, str], dict[str, Any]]:
        return self.window(*quarter_bounds(period), *quarter_days(period))

    # -- handoffs ---------------------------------------------------------------------

    def sla(self, start: datetime, end: datetime) -> dict[str, Any]:
        decisions = self.decisions()
        deadlines = met = 0
        for handoff, due in self.deadlines().items():
            if start <= due < end and due <= self.now:
                deadlines += 1
                decided = decisions.get(handoff)
                met += decided is not None and decided.time <= due
        breaches: dict[str, int] = {}
        seen = set()
        for event in self.events:
            if isinstance(event, HandoffSlaBreached) and start <= event.data.due_at < end:
                key = (event.data.handoff_id, event.data.due_at)
                if key not in seen:
                    seen.add(key)
                    breaches[event.data.policy] = breaches.get(event.data.policy, 0) + 1
        escalations = sum(
            1
            for event in self.events
            if isinstance(event, HandoffReassigned)
            and event.data.reason == "escalation"
            and start <= event.time < end
        )
        return {
            "deadlines": deadlines,
            "met": met,
            "missed": deadlines - met,
            "attainment_ratio": div(met, deadlines),
            "breaches": sum(breaches.values()),
            "breaches_by_policy": dict(sorted(breaches.items())),
            "escalations": escalations,
        }

    def attribution_of_handoffs(self) -> dict[Any, tuple[str, str]]:
        """Each handoff's lead attribution, as its (first) assignment carries it."""
        found: dict[Any, tuple[str, str]] = {}
        for event in self.events:
            if isinstance(event, HandoffAssigned):
                attribution = event.data.attribution
                found.setdefault(
                    event.data.handoff_id, (attribution.source, attribution.campaign or "")
                )
        return found

    def sla_by_source(self, start: datetime, end: datetime) -> dict[tuple[str, str], list[int]]:
        """[deadlines, met] per (source, campaign) of the handoffs' first deadlines."""
        decisions = self.decisions()
        attribution = self.attribution_of_handoffs()
        found: dict[tuple[str, str], list[int]] = {}
        for handoff, due in self.deadlines().items():
            if start <= due < end and due <= self.now:
                entry = found.setdefault(attribution.get(handoff, ("", "")), [0, 0])
                decided = decisions.get(handoff)
                entry[0] += 1
                entry[1] += decided is not None and decided.time <= due
        return found

    def accept_seconds(self, start: datetime, end: datetime) -> list[int]:
        return [
            event.data.business_seconds_to_decision
            for event in self.decisions().values()
            if isinstance(event, HandoffAccepted) and start <= event.time < end
        ]

    def reopens(self) -> int:
        return sum(deal["reopens"] for deal in self.deals().values())

    # -- one period -------------------------------------------------------------------

    def period(self, period: str) -> dict[str, Any]:
        deals = self.deals().values()
        first, after = quarter_days(period)
        won = [d for d in deals if d["status"] == "won" and first <= d["closed_on"] < after]
        lost = [d for d in deals if d["status"] == "lost" and first <= d["closed_on"] < after]
        open_deals = [
            d
            for d in deals
            if d["status"] == "open"
            and d["expected_close_date"] is not None
            and first <= d["expected_close_date"] < after
        ]
        won_value = sum(d["amount_cents"] for d in won)
        lost_value = sum(d["amount_cents"] for d in lost)
        open_value = sum(d["amount_cents"] for d in open_deals)
        weighted = (
            sum(
                d["amount_cents"] * self.probabilities.get(d["stage"], self.default_probability)
                for d in open_deals
            )
            // 100
        )
        target = self.targets().get(period)
        remaining = None if target is None else target - won_value
        coverage: float | str | None = None
        if remaining is not None:
            coverage = "+Inf" if remaining <= 0 else open_value / remaining

        start, end = quarter_bounds(period)
        retention: dict[str, Any] | None = None
        if start <= self.now:  # a quarter that has not started has no cohort yet
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
            retention = {
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
            }

        history = self.summed(self.all_time())
        all_won, all_won_value = history["won"], history["won_value_cents"]
        deals_needed = leads_needed = pipeline_needed = still_needed = None
        if remaining is not None and all_won_value > 0:
            left = max(0, remaining)
            deals_needed = ceil_div(left * all_won, all_won_value)
            if history["captured"]:
                leads_needed = ceil_div(left * history["captured"], all_won_value)
            pipeline_needed = ceil_div(
                left * (all_won_value + history["lost_value_cents"]), all_won_value
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
                "remaining_target_cents": remaining,
                "coverage_ratio": coverage,
                "healthy_coverage_ratio": HEALTHY,
                "coverage_healthy": None
                if coverage is None
                else (coverage == "+Inf" or coverage >= HEALTHY),  # type: ignore[operator]
                "win_rate": {
                    "count": div(len(won), len(won) + len(lost)),
                    "value": div(won_value, won_value + lost_value),
                },
                "weighted_forecast_cents": weighted,
            },
            "retention": retention,
            "plan": {
                "target_cents": target,
                "won_value_cents": won_value,
                "remaining_cents": remaining,
                "open_pipeline_cents": open_value,
                "average_won_deal_cents": ceil_div(all_won_value, all_won) if all_won else None,
                "lead_to_won_rate": div(all_won, history["captured"]),
                "win_rate_by_value": div(
                    all_won_value, all_won_value + history["lost_value_cents"]
                ),
                "deals_needed": deals_needed,
                "leads_needed": leads_needed,
                "pipeline_needed_cents": pipeline_needed,
                "pipeline_still_needed_cents": still_needed,
            },
        }

    def funnel(self, period: str) -> dict[str, Any]:
        """What GET /v1/funnel?period= must answer."""
        start, end = quarter_bounds(period)
        in_period = self.summed(self.in_period(period))
        seconds = self.accept_seconds(start, end)
        return {
            "period": period,
            "currency": "USD",
            "stages": {
                "period": self.view(self.in_period(period)),
                "all_time": self.view(self.all_time()),
            },
            "handoffs": {
                "accepted": in_period["accepted"],
                "rejected": in_period["rejected"],
                "decided": in_period["accepted"] + in_period["rejected"],
                "rejected_by_reason": dict(sorted(in_period["rejected_by_reason"].items())),
                "sla": self.sla(start, end),
                "accept_seconds": histogram(seconds),
            },
            **self.period(period),
        }

    def campaigns(self, period: str) -> list[dict[str, Any]]:
        """What GET /v1/campaigns?period= must answer (its default order: won value,
        most first; ties by source and campaign)."""
        start, end = quarter_bounds(period)
        rows = self.in_period(period)
        sla = self.sla_by_source(start, end)
        seconds: dict[tuple[str, str], list[int]] = {}
        for event in self.decisions().values():
            if isinstance(event, HandoffAccepted) and start <= event.time < end:
                key = (event.data.attribution.source, event.data.attribution.campaign or "")
                seconds.setdefault(key, []).append(event.data.business_seconds_to_decision)
        items = []
        for key in sorted(set(rows) | set(sla) | set(seconds)):
            row = self.entry(rows[key]) if key in rows else self.entry(self.summed({}))
            deadlines, met = sla.get(key, [0, 0])
            reasons = sorted(
                ((reason, count) for reason, count in row["rejected_by_reason"].items() if count),
                key=lambda pair: (-pair[1], pair[0]),
            )
            won, lost = row["won_value_cents"], row["lost_value_cents"]
            items.append(
                {
                    "source": key[0],
                    "campaign": key[1] or None,
                    "cohort": row["cohort"],
                    "conversion": row["conversion"],
                    "won": row["won"],
                    "lost": row["lost"],
                    "won_value_cents": won,
                    "lost_value_cents": lost,
                    "win_rate": {
                        "count": div(row["won"], row["won"] + row["lost"]),
                        "value": div(won, won + lost),
                    },
                    "median_accept_seconds": float(statistics.median(seconds[key]))
                    if seconds.get(key)
                    else None,
                    "sla": {
                        "deadlines": deadlines,
                        "met": met,
                        "attainment_ratio": div(met, deadlines),
                    },
                    "rejected": row["rejected"],
                    "top_rejection_reasons": [
                        {"reason": reason, "count": count} for reason, count in reasons[:3]
                    ],
                }
            )
        # Stable sorts: by name, then by won value (most first).
        items.sort(key=lambda item: (item["source"], item["campaign"] or ""))
        items.sort(key=lambda item: item["won_value_cents"], reverse=True)
        return items

    def plan(self, period: str) -> dict[str, Any]:
        """What GET /v1/plan?period= must answer."""
        return {"period": period, "currency": "USD", **self.period(period)["plan"]}

    # -- Prometheus -------------------------------------------------------------------

    def label(self, source: str) -> str:
        return source if source in self.sources else "other"

    def counters(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every counter sample /metrics must show (they only ever grow)."""
        everything = self.all_time()
        total = self.summed(everything)
        sla = self.sla(*EVER)
        found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {
            series("funnel_leads_captured_total"): total["captured"],
            series("funnel_leads_spam_total"): total["spam"],
            series("funnel_leads_qualified_total"): total["qualified"],
            series("funnel_handoffs_total", outcome="accepted"): total["accepted"],
            series("funnel_handoffs_total", outcome="rejected"): total["rejected"],
            series("funnel_handoff_sla_deadlines_total"): sla["deadlines"],
            series("funnel_handoff_sla_deadlines_met_total"): sla["met"],
            series("funnel_handoff_escalations_total"): sla["escalations"],
            series("funnel_deals_opened_total"): total["opened"],
            series("funnel_deals_reopened_total"): self.reopens(),
            series("funnel_deals_closed_total", outcome="won"): sum(
                deal["wins"] for deal in self.deals().values()
            ),
            series("funnel_deals_closed_total", outcome="lost"): sum(
                deal["losses"] for deal in self.deals().values()
            ),
        }
        for policy, count in sla["breaches_by_policy"].items():
            found[series("funnel_handoff_sla_breaches_total", policy=policy)] = count
        for reason, count in total["rejected_by_reason"].items():
            found[series("funnel_handoff_rejections_total", reason=reason)] = count
        by_label: dict[tuple[str, str], int] = {}
        for (source, _), row in everything.items():
            for stage in ("captured", "qualified", "disqualified", "accepted", "rejected"):
                key = (stage, self.label(source))
                by_label[key] = by_label.get(key, 0) + row[stage]
        for (stage, label), count in by_label.items():
            found[series("funnel_stage_reached_total", stage=stage, source=label)] = count
        for name, value in histogram(self.accept_seconds(*EVER), prometheus=True).items():
            found[name] = value
        return found

    def gauges(self, period: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float | None]:
        """Every per-period sample of an exported quarter (None: no sample)."""
        figures = self.period(period)
        revenue, retention, plan = figures["revenue"], figures["retention"], figures["plan"]
        coverage = revenue["coverage_ratio"]
        start, end = quarter_bounds(period)
        rows = self.in_period(period)
        cohort = self.summed(rows)["cohort"]
        found: dict[tuple[str, frozenset[tuple[str, str]]], float | None] = {
            series("funnel_pipeline_open_value", period=period): revenue["open_pipeline_cents"],
            series("funnel_won_value", period=period): revenue["won_value_cents"],
            series("funnel_revenue_target", period=period): revenue["target_cents"],
            series("funnel_pipeline_coverage_ratio", period=period): math.inf
            if coverage == "+Inf"
            else coverage,
            series("funnel_forecast_weighted_value", period=period): revenue[
                "weighted_forecast_cents"
            ],
            series("funnel_win_rate_ratio", period=period, basis="count"): revenue["win_rate"][
                "count"
            ],
            series("funnel_win_rate_ratio", period=period, basis="value"): revenue["win_rate"][
                "value"
            ],
            series("funnel_plan_leads_needed", period=period): plan["leads_needed"],
            series("funnel_plan_pipeline_still_needed_value", period=period): plan[
                "pipeline_still_needed_cents"
            ],
            series("funnel_period_end_timestamp_seconds", period=period): end.timestamp(),
            series("funnel_deals_closed", period=period, outcome="won"): revenue["won"],
            series("funnel_deals_closed", period=period, outcome="lost"): revenue["lost"],
            series("funnel_handoff_sla_attainment_ratio", period=period): self.sla(start, end)[
                "attainment_ratio"
            ],
        }
        for kind in ("gross", "net", "logo"):
            found[series("funnel_retention_ratio", period=period, kind=kind)] = (
                None if retention is None else retention[kind]
            )
        for stage in ("qualified", "accepted", "opened", "won"):
            found[series("funnel_cohort_conversion_ratio", period=period, stage=stage)] = div(
                cohort[stage], cohort["captured"]
            )
        attainment: dict[str, list[int]] = {}
        for (source, _), (deadlines, met) in self.sla_by_source(start, end).items():
            entry = attainment.setdefault(self.label(source), [0, 0])
            entry[0] += deadlines
            entry[1] += met
        for label, (deadlines, met) in attainment.items():
            name = "funnel_handoff_sla_attainment_by_source_ratio"
            found[series(name, period=period, source=label)] = div(met, deadlines)
        by_label: dict[tuple[str, str], dict[str, int]] = {}
        for (source, _), row in rows.items():
            label = self.label(source)
            for stage in ("opened", "won", "lost"):
                counts = by_label.setdefault(("funnel_stage_value_in_period", label), {})
                counts[stage] = counts.get(stage, 0) + row[f"{stage}_value_cents"]
            for stage in ("captured", "spam", "qualified", "disqualified", "accepted",
                          "rejected", "opened", "won", "lost"):  # fmt: skip
                key = ("funnel_stage_reached_in_period", label)
                counts = by_label.setdefault(key, {})
                counts[stage] = counts.get(stage, 0) + row[stage]
            for stage, count in row["cohort"].items():
                counts = by_label.setdefault(("funnel_cohort_reached", label), {})
                counts[stage] = counts.get(stage, 0) + count
        for (name, label), counts in by_label.items():
            for stage, count in counts.items():
                found[series(name, period=period, stage=stage, source=label)] = count
        return found


def histogram(seconds: list[int], *, prometheus: bool = False) -> Any:
    buckets = {repr(float(bound)): len([s for s in seconds if s <= bound]) for bound in BUCKETS}
    buckets["+Inf"] = len(seconds)
    if not prometheus:
        return {"count": len(seconds), "sum": sum(seconds), "buckets": buckets}
    found = {
        series("funnel_handoff_accept_seconds_bucket", le=bound): count
        for bound, count in buckets.items()
    }
    found[series("funnel_handoff_accept_seconds_count")] = len(seconds)
    found[series("funnel_handoff_accept_seconds_sum")] = sum(seconds)
    return found


def series(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


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
