"""What lead-intake accepts and answers over HTTP."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from funnel_common.types import Label, ShortText


class LeadSubmission(BaseModel):
    """A lead as a marketing form posts it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr = Field(max_length=254)
    source: Label = "website"
    campaign: Label | None = None
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    company: ShortText | None = None
    title: ShortText | None = None


class LeadAccepted(BaseModel):
    lead_id: UUID
    status: Literal["captured"]
