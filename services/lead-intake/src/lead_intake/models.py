"""What lead-intake accepts and answers over HTTP."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from funnel_common.types import (
    Cents,
    Count,
    CurrencyCode,
    Label,
    NoteText,
    ShortText,
    UtcDatetime,
)
from lead_intake.forms import DEFAULT_FORM
from lead_intake.screening import normalise_phone

MAX_EXTRA_FIELDS = 20
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
# Epoch seconds up to 2100: anything later is not a time a browser rendered a form.
# Strict: a JSON number, never ``true`` or a string.
EpochSeconds = Annotated[float, Strict(), Field(ge=0, le=4_102_444_800, allow_inf_nan=False)]

FORM_NUMBERS: dict[str, type[int] | type[float]] = {"company_size": int, "form_started_at": float}
"""The numeric fields of a submission: a plain HTML form posts every value as text, so
the form edge reads these as numbers (JSON must send numbers)."""


class LeadSubmission(BaseModel):
    """A lead as a marketing form posts it (JSON or urlencoded). Unknown fields go to
    ``extra`` (at most 20 short text values); the honeypot field is ``website``."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "additionalProperties": {"type": "string", "maxLength": 200},
            "propertyNames": {"minLength": 1, "maxLength": 80},
        },
    )

    form_id: Label = DEFAULT_FORM
    form_key: ShortText | None = None
    # 200, not 254: the address must fit the event catalogue's LeadProfile.
    email: EmailStr = Field(max_length=200)
    # Before phone: a national phone number is read in the lead's country.
    country: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None
    phone: ShortText | None = Field(
        default=None, description="Stored in E.164; a national number needs `country`."
    )
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    company: ShortText | None = None
    title: ShortText | None = None
    company_size: Count | None = None
    source: Label | None = None
    campaign: Label | None = None
    # Source and campaign fall back to these, so they are labels (bounded, as in events).
    utm_source: Label | None = None
    utm_medium: ShortText | None = None
    utm_campaign: Label | None = None
    utm_term: ShortText | None = None
    utm_content: ShortText | None = None
    website: ShortText | None = Field(default=None, description="Honeypot: humans leave it empty.")
    form_started_at: EpochSeconds | None = Field(
        default=None, description="When the page rendered the form (epoch seconds)."
    )
    thank_you_url: NoteText | None = None
    captured_at: UtcDatetime | None = Field(
        default=None,
        description="When the lead was captured, for a signed import of an older system's "
        "leads (in the past, from 1970); a form post is captured now.",
    )
    extra: dict[Label, ShortText] = Field(default_factory=dict, max_length=MAX_EXTRA_FIELDS)

    @model_validator(mode="before")
    @classmethod
    def _unknown_fields_to_extra(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = set(cls.model_fields)
        extra = {k: v for k, v in data.items() if k not in known}
        if not extra:
            return data
        kept = {k: v for k, v in data.items() if k in known}
        given = kept.get("extra", {})
        if not isinstance(given, dict):
            return kept  # an `extra` that is no object is refused as sent, not replaced
        return {**kept, "extra": {**given, **extra}}

    @field_validator("phone")
    @classmethod
    def _phone_e164(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else normalise_phone(value, info.data.get("country"))

    @field_validator("country")
    @classmethod
    def _country_upper(cls, value: str | None) -> str | None:
        return None if value is None else value.upper()

    def utm(self) -> dict[str, str]:
        return {name: value for name in UTM_FIELDS if (value := getattr(self, name))}


LeadStatus = Literal["captured", "qualified", "disqualified", "merged", "spam"]


class LeadAccepted(BaseModel):
    """The answer to a signed import: what became of the lead."""

    lead_id: UUID
    status: LeadStatus
    score: int | None = None
    receipt_id: UUID = Field(description="This submission's id, as an anonymous post gets it.")


class LeadReceived(BaseModel):
    """The answer to an anonymous post, the same whether the person is new, known or
    spam: nobody learns from it whether an address is in the funnel or how it scored."""

    receipt_id: UUID = Field(description="This submission's id, for support requests.")
    status: Literal["received"] = "received"


class DealWebhook(BaseModel):
    """A deal delivery from the CRM. Fields it leaves out keep the values other deliveries
    set; deliveries may arrive in any order (the latest ``occurred_at`` wins per field)."""

    # Ids are taken exactly as sent (no trimming): the schema's lengths are the truth.
    # Strict: a number, a date or a time of the wrong JSON type is refused, not coerced.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        # A lost deal says why (also checked by the service).
        json_schema_extra={
            "if": {"properties": {"event": {"const": "lost"}}},
            "then": {"required": ["reason"]},
        },
    )

    webhook_id: Label = Field(description="Unique per delivery; a redelivery changes nothing.")
    event: Literal["opened", "updated", "won", "lost"]
    occurred_at: UtcDatetime | None = Field(
        default=None, description="When it happened in the CRM (may be in the past)."
    )
    deal_id: Label
    lead_id: UUID | None = None
    email: EmailStr | None = Field(default=None, max_length=254)
    amount_cents: Cents | None = None
    currency: CurrencyCode | None = None
    stage: Label | None = None
    expected_close_date: date | None = None
    closed_on: date | None = None
    reason: Label | None = Field(default=None, description="Why the deal was lost.")


class AccountWebhook(BaseModel):
    """A customer lifecycle event from billing (ids taken exactly as sent)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    webhook_id: Label
    event: Literal["activated", "arr_changed", "churned"]
    occurred_at: UtcDatetime | None = None
    account_id: Label
    arr_cents: Cents | None = None
    currency: CurrencyCode | None = None
    deal_id: Label | None = None


class WebhookAccepted(BaseModel):
    status: Literal["applied", "duplicate"]
    subject: str
    state: str
