"""Sales' feedback on marketing's leads: what the feedback list holds, who may read it,
and how it is filtered and exported (pure: no I/O).

A lead is on the list when sales sent it back (its handoff was **rejected**, with the
reason and the rep's note), when its SLA was **breached** (nobody answered it in time),
or when, accepted, it became a **won** or **lost** deal. Each item says when that
happened (``at``: the rejection; the deal's close date; the first missed deadline),
which form and campaign the lead came from, the rep, and the score with its reasons.
The routes are ``feedback_api.py`` (JSON, CSV) and ``feedback_pages.py`` (the page);
the SQL is ``feedback_store.py``. Personal data (the rep's note, the lead's company) is
read from handoff's own tables when the list is asked for, never copied elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from funnel_common.auth import Forbidden, Principal
from funnel_common.events import RejectionReason
from funnel_common.http import DomainError
from funnel_common.periods import BadPeriod, BadWeek, parse_period, parse_week
from funnel_common.personal import PersonKey, open_note
from funnel_common.spreadsheet import Cell
from funnel_common.types import Label, UtcDatetime

Outcome = Literal["rejected", "breached", "won", "lost"]
OUTCOMES: tuple[Outcome, ...] = ("rejected", "breached", "won", "lost")
PERIOD_PATTERN = r"^[0-9]{4}-(Q[1-4]|W[0-9]{2})$"


class InvalidPeriod(DomainError):
    status = 422
    slug = "invalid-period"
    title = "The period must be a calendar quarter like 2026-Q3 or an ISO week like 2026-W48"


class NotForReps(Forbidden):
    title = "The feedback list is for marketing, managers (with a team) and admins"


class FeedbackQuery(BaseModel):
    """The list's filters and page; an unknown parameter is a 422, not silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    period: str | None = Field(
        default=None,
        pattern=PERIOD_PATTERN,
        description="A quarter (2026-Q4) or an ISO week (2026-W48) in the reporting time "
        "zone: when the feedback happened. Default: everything.",
    )
    source: Label | None = None
    campaign: Label | None = None
    form: Label | None = Field(default=None, description="The form of the lead's first submission.")
    reason: RejectionReason | None = Field(default=None, description="Rejections with it only.")
    team: Label | None = Field(default=None, description="A manager always sees their own team.")
    outcome: Outcome | None = None
    page: int = Field(default=1, ge=1, le=100_000)
    limit: int = Field(default=50, ge=1, le=200)


@dataclass(frozen=True)
class Filters:
    """What the store filters on: the query, resolved to instants and to the caller."""

    start: datetime | None = None
    end: datetime | None = None
    source: str | None = None
    campaign: str | None = None
    form: str | None = None
    reason: str | None = None
    team: str | None = None
    outcome: Outcome | None = None


def may_read(principal: Principal) -> None:
    """Marketing, admins and managers with a team read feedback; reps do not."""
    if principal.role in ("marketing", "admin"):
        return
    if principal.role == "manager" and principal.team is not None:
        return
    raise NotForReps()


def period_bounds(text: str, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of a quarter or an ISO week, or :class:`InvalidPeriod`."""
    try:
        period = parse_week(text) if "-W" in text else parse_period(text)
    except (BadPeriod, BadWeek) as error:
        raise InvalidPeriod(
            str(error),
            # Named as the request's other query errors are (FastAPI's "query.<name>").
            errors=[{"field": "query.period", "message": str(error), "code": "invalid_period"}],
        ) from error
    return period.bounds(timezone)


def filters_of(query: FeedbackQuery, principal: Principal, timezone: str) -> Filters:
    """The filters the caller gets: a manager's team is always their own."""
    may_read(principal)
    start, end = period_bounds(query.period, timezone) if query.period else (None, None)
    return Filters(
        start=start,
        end=end,
        source=query.source,
        campaign=query.campaign,
        form=query.form,
        reason=query.reason,
        team=principal.team if principal.role == "manager" else query.team,
        outcome=query.outcome,
    )


# --- what one item says ----------------------------------------------------------------


class ScoreReasonOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str
    points: int


class DealOutcome(BaseModel):
    """What the lead's deals came to: won if any was won, lost if every one was lost."""

    model_config = ConfigDict(frozen=True)

    outcome: Literal["won", "lost"]
    value_cents: int = Field(description="Σ last known amount of the won (or lost) deals.")
    closed_on: date = Field(description="The latest close date among them.")


class FeedbackItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    handoff_id: UUID
    lead_id: UUID
    outcome: Outcome = Field(
        description="rejected (sent back), won or lost (its deals), else breached."
    )
    at: UtcDatetime = Field(
        description="When: the rejection; the deal's close date (midnight, reporting time "
        "zone); the first missed deadline."
    )
    status: str = Field(description="The handoff's status now.")
    captured_at: UtcDatetime | None
    form_id: str | None
    form_type: str | None
    source: str
    campaign: str | None
    team_id: str
    rep_id: str | None = Field(
        description="Who rejected it, accepted it, or held it when it was first breached."
    )
    reason: RejectionReason | None
    note: str | None = Field(description="The rep's note on the rejection.")
    breaches: int
    first_breached_at: UtcDatetime | None
    score: int
    score_reasons: list[ScoreReasonOut]
    company: str | None
    deal: DealOutcome | None


class FeedbackList(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[FeedbackItem]
    page: int
    limit: int
    has_next: bool
    currency: str = Field(description="The currency of every deal value (cents of it).")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def note_of(row: Any, key: PersonKey | None) -> str | None:
    """The rep's note on the rejection, as the list shows and exports it: the one place
    the feedback reads a note (selected by ``feedback_store``'s rejection join). It is
    stored sealed with the lead's key and opened here (None once the person was erased:
    docs/privacy.md)."""
    return open_note(row["note"], key)


def item_of(row: Any, key: PersonKey | None = None) -> FeedbackItem:
    """One row of ``feedback_store``'s list as an item."""
    attribution = row["attribution"]
    deal = None
    if row["deal_outcome"] is not None:
        deal = DealOutcome(
            outcome=row["deal_outcome"],
            value_cents=row["deal_value_cents"],
            closed_on=row["deal_closed_on"],
        )
    return FeedbackItem(
        handoff_id=row["handoff_id"],
        lead_id=row["lead_id"],
        outcome=row["outcome"],
        at=row["at"],
        status=row["status"],
        captured_at=row["captured_at"],
        form_id=row["form_id"],
        form_type=row["form_type"],
        source=attribution["source"],
        campaign=attribution.get("campaign") or None,
        team_id=row["team_id"],
        rep_id=row["rep_id"],
        reason=row["reason"],
        note=note_of(row, key),
        breaches=row["breaches"],
        first_breached_at=row["first_breached_at"],
        score=row["score"],
        score_reasons=[
            ScoreReasonOut(rule=str(reason.get("rule", "?")), points=int(reason.get("points", 0)))
            for reason in row["score_reasons"]
        ],
        company=_text(row["company"]),
        deal=deal,
    )


# --- the CSV export ----------------------------------------------------------------------

CSV_HEADER = (
    "at", "outcome", "status", "handoff_id", "lead_id", "captured_at", "form_id", "form_type",
    "source", "campaign", "team", "rep", "reason", "note", "breaches", "first_breached_at",
    "score", "score_reasons", "company", "deal_outcome", "deal_value_cents", "deal_closed_on",
)  # fmt: skip


def csv_row(item: FeedbackItem) -> list[Cell]:
    """An item as the export's columns (funnel_common.spreadsheet makes the text safe)."""
    deal = item.deal
    return [
        item.at,
        item.outcome,
        item.status,
        str(item.handoff_id),
        str(item.lead_id),
        item.captured_at,
        item.form_id,
        item.form_type,
        item.source,
        item.campaign,
        item.team_id,
        item.rep_id,
        item.reason,
        item.note,
        item.breaches,
        item.first_breached_at,
        item.score,
        ", ".join(f"{reason.rule} {reason.points:+d}" for reason in item.score_reasons),
        item.company,
        deal.outcome if deal else None,
        deal.value_cents if deal else None,
        deal.closed_on if deal else None,
    ]


class ExportTooLarge(DomainError):
    status = 422
    slug = "export-too-large"
    title = "The export holds more rows than allowed; narrow it with the filters"


def check_export_size(rows: int, max_rows: int) -> None:
    """Refuse, before anything is sent, an export larger than ``max_rows``: a cut-off
    file would look complete in a spreadsheet."""
    if rows > max_rows:
        raise ExportTooLarge(
            f"{rows} rows match; at most {max_rows} are exported at once",
            rows=rows,
            max_rows=max_rows,
        )
