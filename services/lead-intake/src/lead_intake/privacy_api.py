"""``/v1/privacy/people``: an admin finds, exports and erases a person's data
(``privacy.py``; docs/privacy.md). lead-intake answers for its own data and says which
leads are the person's; handoff answers for its copies by lead id."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from fastapi.security import HTTPBearer
from pydantic import EmailStr

from funnel_common.auth import Principal, require_role
from funnel_common.http import problem_responses
from funnel_common.service import Transaction
from lead_intake import privacy
from lead_intake.privacy import PersonExport
from lead_intake.screening import normalise_email

PREFIX = "/v1/privacy/people"

Admin = Annotated[Principal, Depends(require_role("admin"))]
Email = Annotated[
    EmailStr,
    Query(max_length=254, description="The person's email (matched as dedupe matches it)"),
]

# Only documents the scheme in /docs ("Authorize"); require_role does the checking.
_bearer_scheme = HTTPBearer(auto_error=False, description="An admin token")


def router() -> APIRouter:
    router = APIRouter(
        prefix=PREFIX,
        tags=["privacy"],
        dependencies=[Depends(_bearer_scheme)],
        responses=problem_responses(401, 403, 422, 503),
    )

    @router.get(
        "",
        summary="Everything lead-intake holds about the person with this email",
        description="Their leads (every status), with the submissions merged onto them and "
        "their lead ids (`GET /v1/privacy/people/{lead_id}` on handoff has the rest). "
        "Nothing once the person was erased.",
    )
    async def export_by_email(_: Admin, conn: Transaction, email: Email) -> PersonExport:
        return await privacy.export(conn, email=normalise_email(email))

    @router.get(
        "/{lead_id}",
        summary="Everything lead-intake holds about the person of this lead",
        description="After erasure, only what is not personal data (ids, times, status).",
    )
    async def export_by_lead(lead_id: UUID, _: Admin, conn: Transaction) -> PersonExport:
        return await privacy.export(conn, lead_id=lead_id)

    @router.delete(
        "",
        status_code=204,
        summary="Erase the person with this email, everywhere",
        description="Idempotent: afterwards the platform holds nothing readable about them "
        "(docs/privacy.md), and every figure is unchanged. Audited as "
        "`funnel.person.erased.v1` (who asked, when, which leads; no personal data).",
    )
    async def erase_by_email(principal: Admin, conn: Transaction, email: Email) -> Response:
        await privacy.erase(conn, requested_by=principal.subject, email=normalise_email(email))
        return Response(status_code=204)

    @router.delete(
        "/{lead_id}",
        status_code=204,
        summary="Erase the person of this lead, everywhere",
        description="Idempotent, as erasure by email. Other leads with the same email are "
        "other people to this call (erase by email for all of them).",
        responses=problem_responses(404),
    )
    async def erase_by_lead(lead_id: UUID, principal: Admin, conn: Transaction) -> Response:
        await privacy.erase(conn, requested_by=principal.subject, lead_id=lead_id)
        return Response(status_code=204)

    return router
