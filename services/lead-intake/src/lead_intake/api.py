"""lead-intake routes: parse, call the domain, write state and event in one transaction."""

from __future__ import annotations

from typing import Annotated
from uuid import uuid4

import asyncpg
from fastapi import APIRouter, Depends, status

from funnel_common import outbox
from funnel_common.events import Attribution, LeadCaptured, LeadCapturedData, LeadProfile
from funnel_common.service import connection
from lead_intake import store
from lead_intake.models import LeadAccepted, LeadSubmission

SERVICE = "lead-intake"
DEFAULT_FORM = "default"

router = APIRouter(prefix="/v1", tags=["leads"])

Connection = Annotated[asyncpg.Connection, Depends(connection)]


@router.post(
    "/leads",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LeadAccepted,
    summary="Capture a lead from a marketing form",
)
async def capture_lead(submission: LeadSubmission, conn: Connection) -> LeadAccepted:
    lead = LeadCapturedData(
        lead_id=uuid4(),
        form_id=DEFAULT_FORM,
        attribution=Attribution(source=submission.source, campaign=submission.campaign),
        profile=LeadProfile(
            email=submission.email.lower(),
            first_name=submission.first_name,
            last_name=submission.last_name,
            company=submission.company,
            title=submission.title,
        ),
    )
    await store.insert_lead(conn, lead)
    await outbox.enqueue(conn, LeadCaptured.new(source=SERVICE, subject=lead.lead_id, data=lead))
    return LeadAccepted(lead_id=lead.lead_id, status="captured")
