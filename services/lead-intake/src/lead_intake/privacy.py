"""A person's data in lead-intake: find it, export it, erase it (docs/privacy.md).

A person is a lead (submissions merged onto it belong to it); one email may name several
leads (spam is never merged, and a person who comes back after the dedupe window is a new
lead). Erasure crypto-shreds: the person's data key goes (every sealed copy on the topics
and in other services becomes unreadable), lead-intake's own row loses its personal
fields and dedupe keys, its outbox loses its copies, and two records tell the others: a
tombstone for the wrapped key on ``funnel.people`` and ``funnel.person.erased.v1`` on
``funnel.leads``. Ids, times, source, campaign, scores and statuses stay, so every figure
stays the same.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid4

import asyncpg
from pydantic import BaseModel, ConfigDict

from funnel_common import outbox, personal
from funnel_common.events import PEOPLE_TOPIC, Attribution, PersonErased, PersonErasedData
from funnel_common.http import NotFound
from funnel_common.types import UtcDatetime, utc_now
from lead_intake import store
from lead_intake.intake import SERVICE

log = logging.getLogger(__name__)


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TouchRecord(_Body):
    """A later submission merged onto the lead."""

    submission_id: UUID
    form_id: str
    matched_on: str
    attribution: Attribution
    received_at: UtcDatetime


class LeadRecord(_Body):
    """One lead as lead-intake holds it; after erasure, only what is not personal."""

    lead_id: UUID
    form_id: str
    status: str
    score: int | None
    rules_version: str | None
    form_type: str | None
    spam_reasons: list[str]
    attribution: Attribution
    profile: dict[str, Any]
    extra: dict[str, str]
    captured_at: UtcDatetime
    last_touch_at: UtcDatetime
    erased_at: UtcDatetime | None
    touches: list[TouchRecord]


class PersonExport(_Body):
    """Everything lead-intake holds about a person: ``GET /v1/privacy/people``."""

    lead_ids: list[UUID]
    leads: list[LeadRecord]


def _attribution(row: asyncpg.Record) -> Attribution:
    text = row["attribution"] or json.dumps({"source": row["source"], "campaign": row["campaign"]})
    return Attribution.model_validate_json(text)


def _profile(row: asyncpg.Record) -> dict[str, Any]:
    profile: dict[str, Any] = json.loads(row["profile"])
    if row["erased_at"] is not None:
        profile.pop("email", None)  # the blank an erased profile keeps to stay well formed
    return {key: value for key, value in profile.items() if value is not None}


async def export(
    connection: asyncpg.Connection, *, email: str | None = None, lead_id: UUID | None = None
) -> PersonExport:
    """What lead-intake holds about the person with this email (normalised) or lead id.
    An erased lead found by its id shows only what is not personal; by email, an erased
    person is not found at all."""
    rows = await store.person_leads(connection, email=email, lead_id=lead_id)
    lead_ids = [row["lead_id"] for row in rows]
    touches: dict[UUID, list[TouchRecord]] = {}
    for touch in await store.touches_of(connection, lead_ids):
        touches.setdefault(touch["lead_id"], []).append(
            TouchRecord(
                submission_id=touch["submission_id"],
                form_id=touch["form_id"],
                matched_on=touch["matched_on"],
                attribution=Attribution.model_validate_json(touch["attribution"]),
                received_at=touch["received_at"],
            )
        )
    leads = [
        LeadRecord(
            lead_id=row["lead_id"],
            form_id=row["form_id"],
            status=row["status"],
            score=row["score"],
            rules_version=row["rules_version"],
            form_type=row["form_type"],
            spam_reasons=list(row["spam_reasons"]),
            attribution=_attribution(row),
            profile=_profile(row),
            extra=json.loads(row["extra"]),
            captured_at=row["captured_at"],
            last_touch_at=row["last_touch_at"],
            erased_at=row["erased_at"],
            touches=touches.get(row["lead_id"], []),
        )
        for row in rows
    ]
    return PersonExport(lead_ids=lead_ids, leads=leads)


class UnknownLead(NotFound):
    slug = "unknown-lead"
    title = "No lead has this id"


async def erase(
    connection: asyncpg.Connection,
    *,
    requested_by: str,
    email: str | None = None,
    lead_id: UUID | None = None,
    now: datetime | None = None,
) -> list[UUID]:
    """Erase the person with this email (normalised) or lead id, in the caller's
    transaction; the leads erased now (none when there was nothing left to erase: a
    second erasure changes nothing). :class:`UnknownLead` for a lead id never seen."""
    matched_by: Literal["email", "lead_id"] = "email" if email is not None else "lead_id"
    if email is not None:
        # Serialised with a submission of the same email (capture takes the same lock):
        # a lead posted meanwhile is either erased here or captured after, as a new lead.
        await store.lock_identities(connection, [email])
    rows = await store.person_leads(connection, email=email, lead_id=lead_id, lock=True)
    if lead_id is not None and not rows:
        raise UnknownLead(f"no lead {lead_id}")
    lead_ids = [row["lead_id"] for row in rows if row["erased_at"] is None]
    if not lead_ids:
        return []
    erasure_id = uuid4()
    await personal.forget_keys(connection, lead_ids)
    await store.erase_leads(connection, lead_ids)
    await store.erase_outbox_rows(connection, lead_ids)
    await store.record_erasure(
        connection,
        erasure_id=erasure_id,
        requested_by=requested_by,
        matched_by=matched_by,
        lead_ids=lead_ids,
    )
    await outbox.enqueue_tombstones(connection, PEOPLE_TOPIC, [str(i) for i in lead_ids])
    await outbox.enqueue(
        connection,
        *(
            PersonErased.new(
                source=SERVICE,
                subject=erased,
                time=now or utc_now(),
                data=PersonErasedData(
                    lead_id=erased,
                    erasure_id=erasure_id,
                    requested_by=requested_by,
                    matched_by=matched_by,
                ),
            )
            for erased in lead_ids
        ),
    )
    log.info("person erased", extra={"erasure_id": str(erasure_id), "leads": len(lead_ids)})
    return lead_ids
