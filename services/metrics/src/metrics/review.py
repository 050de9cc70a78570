"""The Monday review pack: when each week's pack is due, and what it says (pure: no I/O).

Every week at a configured time in the reporting time zone (default Monday 08:00) the
worker prepares the week's pack from the figures of that moment, the same figures
``/v1/funnel`` gives for the quarter it falls in (``report.read_figures``), and sends
it by email and to Slack; ``/review?week=YYYY-Www`` shows it. Each figure comes with
its change since the last pack of the same quarter. The scheduling and sending are
``review_worker.py``; the SQL, ``review_store.py``; the page, ``review_pages.py``.

The pack holds no personal data: the example notes of the top rejection reasons are
read from ``rejection_notes`` each time the pack is shown or sent (so an erased note is
gone from it too), and the missed deadlines name handoffs, teams and campaigns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from funnel_common.periods import Week, week_of_instant
from funnel_common.types import UtcDatetime
from metrics.campaigns import CampaignRow, ReasonCount, top_reasons
from metrics.documents import FunnelDocument

MISSED_LISTED = 25
"""Missed deadlines a pack lists by name (it counts them all)."""
CAMPAIGNS_LISTED = 3
NOTES_PER_REASON = 2


# --- when ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The weekday (1 = Monday) and time a pack is due, in the reporting time zone."""

    weekday: int
    clock: time
    timezone: str

    def due_at(self, week: Week) -> datetime:
        return week.at(self.weekday, self.clock, self.timezone)

    def next_due(self, now: datetime) -> tuple[Week, datetime]:
        """The first pack due after ``now``: this week's, or next week's once it is past."""
        week = week_of_instant(now, self.timezone)
        if self.due_at(week) <= now:
            week = week.shifted(1)
        return week, self.due_at(week)


def weeks_to_schedule(
    latest: Week | None, now: datetime, schedule: Schedule
) -> list[tuple[Week, datetime]]:
    """The timer rows to add so that every week has one up to the next pack due.

    The first time (no row yet) only the next pack is scheduled: a new installation owes
    no pack for the weeks before it. Afterwards every week since the latest row gets one,
    so a week whose time passed while no worker ran is found due at once (and sent late).
    """
    next_week, next_due = schedule.next_due(now)
    if latest is None:
        return [(next_week, next_due)]
    weeks = []
    week = latest.shifted(1)
    while week <= next_week:
        weeks.append((week, schedule.due_at(week)))
        week = week.shifted(1)
    return weeks


def is_late(due_at: datetime, prepared_at: datetime, late_after: timedelta) -> bool:
    return prepared_at - due_at > late_after


# --- what --------------------------------------------------------------------------------

Number = float | int


class Change(BaseModel):
    """A figure now, at the last pack of the quarter, and the difference."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    now: Number | Literal["+Inf"] | None
    last_week: Number | Literal["+Inf"] | None = None
    change: Number | None = Field(
        default=None, description="now - last_week; null when either is missing or +Inf."
    )


class MissedDeadline(BaseModel):
    """A handoff whose first response deadline passed in the week without a decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    handoff_id: UUID
    team: str
    source: str
    campaign: str | None
    due_at: UtcDatetime
    outcome: Literal["accepted", "rejected", "open"] = Field(
        description="What happened since: decided late, or still undecided."
    )
    decided_at: UtcDatetime | None


class Missed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int
    handoffs: list[MissedDeadline] = Field(description=f"The first {MISSED_LISTED}, oldest first.")


class CampaignLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    campaign: str | None
    won_value_cents: int
    won: int
    captured: int


class ReviewPack(BaseModel):
    """One week's pack, as prepared (stored as it was sent)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    week: str
    period: str = Field(description="The quarter of the figures: the one the pack was made in.")
    as_of: UtcDatetime = Field(description="When the figures were read.")
    due_at: UtcDatetime
    late: bool = Field(description="Prepared later than it was due (a worker was down).")
    currency: str
    compared_with: str | None = Field(
        description="The week of the pack the changes are against (the last of the quarter)."
    )
    coverage: Change
    healthy_coverage_ratio: float
    coverage_healthy: bool | None
    won_value_cents: Change
    target_cents: int | None
    remaining_target_cents: int | None
    win_rate_count: Change
    win_rate_value: Change
    retention_gross: Change
    retention_net: Change
    retention_logo: Change
    sla_attainment: Change
    sla_deadlines: int
    sla_met: int
    leads_needed: Change
    rejected: int = Field(description="Handoffs rejected in the quarter so far.")
    top_rejection_reasons: list[ReasonCount]
    missed_sla: Missed = Field(description="Deadlines of the seven days before as_of missed.")
    best_campaigns: list[CampaignLine] = Field(description="Most won value in the quarter.")
    worst_campaigns: list[CampaignLine] = Field(
        description="Least won value among the campaigns that brought leads this quarter."
    )


def _change(now: Any, before: Any) -> Change:
    finite = all(isinstance(value, int | float) for value in (now, before))
    return Change(now=now, last_week=before, change=now - before if finite else None)


def _line(row: CampaignRow) -> CampaignLine:
    return CampaignLine(
        source=row.source,
        campaign=row.campaign,
        won_value_cents=row.won_value_cents,
        won=row.won,
        captured=row.cohort.captured,
    )


def best_and_worst(rows: Iterable[CampaignRow]) -> tuple[list[CampaignLine], list[CampaignLine]]:
    """The campaigns with the most won value (some), and those with the least among the
    ones that brought leads (most leads first among equals), never both."""
    by_name = sorted(rows, key=lambda row: (row.source, row.campaign or ""))
    earning = [row for row in by_name if row.won_value_cents > 0]
    best = sorted(earning, key=lambda row: -row.won_value_cents)[:CAMPAIGNS_LISTED]
    chosen = {(row.source, row.campaign) for row in best}
    bringing = [
        row
        for row in by_name
        if row.cohort.captured > 0 and (row.source, row.campaign) not in chosen
    ]
    worst = sorted(bringing, key=lambda row: (row.won_value_cents, -row.cohort.captured))
    return [_line(row) for row in best], [_line(row) for row in worst[:CAMPAIGNS_LISTED]]


def build_pack(
    *,
    week: Week,
    due_at: datetime,
    as_of: datetime,
    late: bool,
    funnel: FunnelDocument,
    campaigns: Sequence[CampaignRow],
    missed: Missed,
    previous: ReviewPack | None,
) -> ReviewPack:
    """The pack of ``week`` from the figures read at ``as_of`` (``funnel`` is what
    ``/v1/funnel`` answers for the quarter then), compared with ``previous`` when that is
    a pack of the same quarter."""
    revenue, handoffs, plan = funnel.revenue, funnel.handoffs, funnel.plan
    last = previous if previous is not None and previous.period == funnel.period else None
    retention = funnel.retention

    def then(name: str) -> Any:
        return None if last is None else getattr(last, name).now

    best, worst = best_and_worst(campaigns)
    return ReviewPack(
        week=str(week),
        period=funnel.period,
        as_of=as_of,
        due_at=due_at,
        late=late,
        currency=funnel.currency,
        compared_with=None if last is None else last.week,
        coverage=_change(revenue.coverage_ratio, then("coverage")),
        healthy_coverage_ratio=revenue.healthy_coverage_ratio,
        coverage_healthy=revenue.coverage_healthy,
        won_value_cents=_change(revenue.won_value_cents, then("won_value_cents")),
        target_cents=revenue.target_cents,
        remaining_target_cents=revenue.remaining_target_cents,
        win_rate_count=_change(revenue.win_rate.count, then("win_rate_count")),
        win_rate_value=_change(revenue.win_rate.value, then("win_rate_value")),
        retention_gross=_change(retention and retention.gross, then("retention_gross")),
        retention_net=_change(retention and retention.net, then("retention_net")),
        retention_logo=_change(retention and retention.logo, then("retention_logo")),
        sla_attainment=_change(handoffs.sla.attainment_ratio, then("sla_attainment")),
        sla_deadlines=handoffs.sla.deadlines,
        sla_met=handoffs.sla.met,
        leads_needed=_change(plan.leads_needed, then("leads_needed")),
        rejected=handoffs.rejected,
        top_rejection_reasons=top_reasons(handoffs.rejected_by_reason),
        missed_sla=missed,
        best_campaigns=best,
        worst_campaigns=worst,
    )


def missed_week(as_of: datetime) -> tuple[datetime, datetime]:
    """The window whose missed deadlines a pack lists: the seven days before it."""
    return as_of - timedelta(days=7), as_of
