"""The JSON documents of ``GET /v1/funnel`` and ``GET /v1/plan``: their OpenAPI schema,
and the shape ``funnel replay`` compares live against rebuilt. Money is in cents of the
reporting currency; a ratio with nothing to divide by is null."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Cohort(_Document):
    captured: int = Field(description="Leads captured (not spam) in the window.")
    qualified: int = Field(description="Of those, how many were qualified (MQL), ever since.")
    accepted: int = Field(description="... whose handoff a rep accepted (SAL).")
    opened: int = Field(description="... with a deal opened from them.")
    won: int = Field(description="... with a deal won.")


class Conversion(_Document):
    captured_to_qualified: float | None
    captured_to_accepted: float | None
    captured_to_opened: float | None
    captured_to_won: float | None


class StageFigures(_Document):
    """Each stage counted in the window in which it happened; deals won and lost by
    their close date. ``cohort`` and ``conversion`` follow the window's captured leads."""

    captured: int = Field(description="Leads captured, spam excluded.")
    spam: int = Field(description="Leads captured and flagged as spam.")
    qualified: int
    disqualified: int
    accepted: int
    rejected: int
    opened: int = Field(description="Deals opened (a deal exists from its first event).")
    won: int
    lost: int
    rejected_by_reason: dict[str, int]
    opened_value_cents: int
    won_value_cents: int
    lost_value_cents: int
    cohort: Cohort
    conversion: Conversion = Field(
        description="Share of the window's captured leads that reached each stage (≤ 1)."
    )


class SourceStageFigures(StageFigures):
    source: str
    campaign: str | None


class StageView(_Document):
    total: StageFigures
    by_source: list[SourceStageFigures]


class Stages(_Document):
    period: StageView = Field(description="What happened within the quarter.")
    all_time: StageView = Field(description="Everything so far.")


class Histogram(_Document):
    count: int
    sum: int
    buckets: dict[str, int] = Field(description="Cumulative counts by upper bound (seconds).")


class Sla(_Document):
    deadlines: int = Field(
        description="Handoffs whose first response deadline fell in the quarter, up to now."
    )
    met: int = Field(description="Of those, decided (accepted or rejected) by the deadline.")
    missed: int = Field(description="Decided late, or still undecided past the deadline.")
    attainment_ratio: float | None = Field(description="met / deadlines.")
    breaches: int = Field(description="SLA breaches of deadlines in the quarter.")
    breaches_by_policy: dict[str, int]
    escalations: int = Field(description="Handoffs escalated to a manager in the quarter.")


class Handoffs(_Document):
    """Handoffs decided within the quarter, and the quarter's SLA attainment."""

    accepted: int
    rejected: int
    decided: int
    rejected_by_reason: dict[str, int]
    sla: Sla
    accept_seconds: Histogram = Field(
        description="Business seconds to accept, of the handoffs accepted in the quarter."
    )


class WinRate(_Document):
    count: float | None
    value: float | None


class Revenue(_Document):
    target_cents: int | None
    won_value_cents: int
    won: int
    lost: int
    lost_value_cents: int
    open_pipeline_cents: int
    remaining_target_cents: int | None = Field(
        description="target - won value (negative once the target is beaten)."
    )
    coverage_ratio: float | Literal["+Inf"] | None
    healthy_coverage_ratio: float
    coverage_healthy: bool | None
    win_rate: WinRate
    weighted_forecast_cents: int


class Retention(_Document):
    cohort_size: int
    active_at_end: int
    start_arr_cents: int
    end_arr_cents: int
    expansion_cents: int
    contraction_cents: int
    churned_arr_cents: int
    gross: float | None
    net: float | None
    logo: float | None


class PlanFigures(_Document):
    target_cents: int | None
    won_value_cents: int
    remaining_cents: int | None = Field(description="target - won value, as in revenue.")
    open_pipeline_cents: int
    average_won_deal_cents: int | None = Field(description="Rounded up to a cent.")
    lead_to_won_rate: float | None
    win_rate_by_value: float | None
    deals_needed: int | None
    leads_needed: int | None
    pipeline_needed_cents: int | None = Field(
        description="Pipeline the remaining target needs in all, at the win rate by value."
    )
    pipeline_still_needed_cents: int | None = Field(
        description="pipeline_needed_cents - the quarter's open pipeline (at least 0)."
    )


class FunnelDocument(_Document):
    period: str
    currency: str
    stages: Stages
    handoffs: Handoffs
    revenue: Revenue
    retention: Retention | None = Field(description="null for a quarter not yet started.")
    plan: PlanFigures


class PlanDocument(PlanFigures):
    period: str
    currency: str
