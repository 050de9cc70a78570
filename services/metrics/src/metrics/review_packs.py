"""Reading a review pack: preparing one from the figures of a moment, and the example
notes shown beside it. Used by the worker (``review_worker.py``) when a week's pack is
due, and by the page (``review_pages.py``) for a week not sent yet."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from funnel_common import personal
from funnel_common.periods import Week, parse_period, period_of_instant
from metrics import campaigns, report, review, review_store, store
from metrics.review import ReviewPack
from metrics.settings import MetricsSettings


async def prepare(
    connection: asyncpg.Connection,
    settings: MetricsSettings,
    *,
    week: Week,
    due_at: datetime,
    now: datetime,
    late: bool,
) -> ReviewPack:
    """The pack of ``week`` with the figures as they are at ``now``: the quarter's
    ``/v1/funnel`` document, its campaigns, the deadlines missed in the seven days
    before, and the change since the last pack."""
    period = period_of_instant(now, settings.common.reporting_timezone)
    funnel, (figures,) = await report.read_figures(
        connection, [period], settings, now=now, all_time_cohort=True
    )
    start, end = period.bounds(settings.common.reporting_timezone)
    accepted = await store.accept_seconds_by_source(connection, start, end)
    count, missed = await review_store.missed_deadlines(
        connection, *review.missed_week(now), limit=review.MISSED_LISTED
    )
    return review.build_pack(
        week=week,
        due_at=due_at,
        as_of=now,
        late=late,
        funnel=report.funnel_document(funnel, figures, settings),
        campaigns=campaigns.rows(figures.window, accepted),
        missed=review.Missed(count=count, handoffs=missed),
        previous=await review_store.previous_pack(connection, week),
    )


async def notes_for(
    connection: asyncpg.Connection, pack: ReviewPack, settings: MetricsSettings
) -> dict[str, list[str]]:
    """Example notes of the pack's top rejection reasons, read now (personal data is
    never stored in a pack): the latest of the quarter up to when the pack was made,
    sealed ones opened with metrics' copies of the leads' keys (docs/privacy.md)."""
    start, _ = parse_period(pack.period).bounds(settings.common.reporting_timezone)
    found = await review_store.example_notes(
        connection,
        [reason.reason for reason in pack.top_rejection_reasons],
        start,
        pack.as_of,
        per_reason=review.NOTES_PER_REASON,
    )
    ring = personal.keyring(settings.common.personal_data_key)
    keys = await personal.load_keys(connection, ring, [example.lead_id for example in found])
    notes: dict[str, list[str]] = {}
    for example in found:
        note = personal.open_note(example.note, keys.get(example.lead_id))
        if note is not None:
            notes.setdefault(example.reason, []).append(note)
    return notes
