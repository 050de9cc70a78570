"""What each campaign earned in a quarter (pure: figures in, rows out).

A campaign's row is its slice of the quarter's figures, exactly as ``/v1/funnel``
computes them (``report.read_figures``, ``figures.py``), so every campaign row adds up
to the funnel's totals:

- the cohort funnel: of the leads captured in the quarter from this source and
  campaign, how many have since been qualified, accepted, had a deal opened and won
  (``stages.period.by_source[].cohort``), and each as a share of those captured;
- deals won and lost with a close date in the quarter, attributed to the campaign (the
  deal's attribution), their value and the win rate by count and by value;
- the median business time to accept of its handoffs accepted in the quarter;
- SLA attainment of its handoffs whose first deadline fell in the quarter (as
  ``handoffs.sla``);
- its handoffs rejected in the quarter and the top three reasons.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from funnel_common.spreadsheet import Cell
from metrics import figures
from metrics.documents import Cohort, Conversion, WinRate

TOP_REASONS = 3

SortKey = Literal[
    "source", "campaign", "captured", "qualified", "accepted", "opened", "won_leads",
    "conversion", "won", "lost", "won_value_cents", "win_rate", "median_accept_seconds",
    "sla_attainment", "rejected",
]  # fmt: skip
Order = Literal["asc", "desc"]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReasonCount(_Row):
    reason: str
    count: int


class SlaSlice(_Row):
    deadlines: int = Field(description="First response deadlines in the quarter, up to now.")
    met: int
    attainment_ratio: float | None


class CampaignRow(_Row):
    source: str
    campaign: str | None
    cohort: Cohort = Field(description="Of the leads captured in the quarter, each stage since.")
    conversion: Conversion
    won: int = Field(description="Deals won with a close date in the quarter.")
    lost: int
    won_value_cents: int
    lost_value_cents: int
    win_rate: WinRate
    median_accept_seconds: float | None = Field(
        description="Business seconds to accept, median of the handoffs accepted in the quarter."
    )
    sla: SlaSlice
    rejected: int = Field(description="Handoffs rejected in the quarter.")
    top_rejection_reasons: list[ReasonCount] = Field(
        description="The three most frequent, most first (ties by name)."
    )


class CampaignsDocument(_Row):
    period: str
    currency: str
    sort: SortKey
    order: Order
    items: list[CampaignRow]


def top_reasons(counts: Mapping[str, int], limit: int = TOP_REASONS) -> list[ReasonCount]:
    """The most frequent reasons with a count, most first, ties by name."""
    found = sorted(
        ((reason, count) for reason, count in counts.items() if count), key=lambda x: (-x[1], x[0])
    )
    return [ReasonCount(reason=reason, count=count) for reason, count in found[:limit]]


def rows(
    window: figures.WindowFigures, accept_rows: Iterable[Mapping[str, Any]]
) -> list[CampaignRow]:
    """One row per source and campaign that had anything in the quarter."""
    seconds: dict[figures.SourceKey, list[tuple[int, int]]] = {}
    for row in accept_rows:
        key = (row["source"], row["campaign"])
        seconds.setdefault(key, []).append((row["seconds"], row["handoffs"]))
    keys = set(window.by_source) | set(window.attainment_by_source) | set(seconds)
    result = []
    for source, campaign in sorted(keys):
        counts = window.by_source.get((source, campaign), figures.StageCounts())
        sla = window.attainment_by_source.get((source, campaign), figures.Attainment())
        result.append(
            CampaignRow(
                source=source,
                campaign=campaign or None,
                cohort=Cohort(**counts.as_json()["cohort"]),
                conversion=Conversion(**counts.cohort.conversion()),
                won=counts.won,
                lost=counts.lost,
                won_value_cents=counts.won_value_cents,
                lost_value_cents=counts.lost_value_cents,
                win_rate=WinRate(
                    count=figures.ratio(counts.won, counts.won + counts.lost),
                    value=figures.ratio(
                        counts.won_value_cents, counts.won_value_cents + counts.lost_value_cents
                    ),
                ),
                median_accept_seconds=figures.median(seconds.get((source, campaign), [])),
                sla=SlaSlice(deadlines=sla.deadlines, met=sla.met, attainment_ratio=sla.ratio),
                rejected=counts.rejected,
                top_rejection_reasons=top_reasons(counts.rejected_by_reason),
            )
        )
    return result


def _key(row: CampaignRow, sort: SortKey) -> float | str | None:
    match sort:
        case "source":
            return row.source
        case "campaign":
            return row.campaign or ""
        case "won_leads":
            return row.cohort.won
        case "conversion":
            return row.conversion.captured_to_won
        case "win_rate":
            return row.win_rate.value
        case "sla_attainment":
            return row.sla.attainment_ratio
        case "captured" | "qualified" | "accepted" | "opened":
            value: int = getattr(row.cohort, sort)
            return value
        case _:
            found: float | None = getattr(row, sort)
            return found


def sorted_rows(found: list[CampaignRow], sort: SortKey, order: Order) -> list[CampaignRow]:
    """Sorted by ``sort``; a row without a value (no ratio yet) last either way; ties by
    source and campaign."""
    by_name = sorted(found, key=lambda row: (row.source, row.campaign or ""))
    valued = [row for row in by_name if _key(row, sort) is not None]
    empty = [row for row in by_name if _key(row, sort) is None]
    valued.sort(key=lambda row: _key(row, sort), reverse=order == "desc")  # type: ignore[arg-type, return-value]
    return valued + empty


# --- the CSV export ----------------------------------------------------------------------

CSV_HEADER = (
    "source", "campaign", "captured", "qualified", "accepted", "opened", "won_leads",
    "captured_to_qualified", "captured_to_accepted", "captured_to_opened", "captured_to_won",
    "deals_won", "deals_lost", "won_value_cents", "lost_value_cents", "win_rate_count",
    "win_rate_value", "median_accept_seconds", "sla_deadlines", "sla_met", "sla_attainment",
    "rejected", "top_rejection_reasons",
)  # fmt: skip


def csv_row(row: CampaignRow) -> list[Cell]:
    cohort, conversion = row.cohort, row.conversion
    return [
        row.source,
        row.campaign,
        cohort.captured,
        cohort.qualified,
        cohort.accepted,
        cohort.opened,
        cohort.won,
        conversion.captured_to_qualified,
        conversion.captured_to_accepted,
        conversion.captured_to_opened,
        conversion.captured_to_won,
        row.won,
        row.lost,
        row.won_value_cents,
        row.lost_value_cents,
        row.win_rate.count,
        row.win_rate.value,
        row.median_accept_seconds,
        row.sla.deadlines,
        row.sla.met,
        row.sla.attainment_ratio,
        row.rejected,
        ", ".join(f"{reason.reason} ({reason.count})" for reason in row.top_rejection_reasons),
    ]
