"""The shapes handoff speaks over HTTP, and the handoff record as the code sees it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from funnel_common.events import Attribution, RejectionReason
from funnel_common.types import NoteText, Role, UtcDatetime
from handoff.routing import Segment
from handoff.sla import (
    DEFAULT_POLICY_NAME,
    BusinessCalendar,
    SlaPolicy,
    TimeZoneName,
    WorkingWeek,
)

Status = Literal["queued", "assigned", "escalated", "accepted", "rejected"]
OPEN_STATUSES: tuple[Status, ...] = ("queued", "assigned", "escalated")
NotificationKind = Literal["assigned", "at_risk", "breached", "escalated"]
NOTIFICATION_KINDS: tuple[NotificationKind, ...] = ("assigned", "at_risk", "breached", "escalated")
CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
SlackMemberId = Annotated[
    str, Field(pattern=r"^[UW][A-Z0-9]{2,20}$", description="A Slack member id, e.g. U024BE7LH")
]
IDENTIFIER_PATTERN = r"^[A-Za-z0-9._@:-]+$"
Identifier = Annotated[str, Field(min_length=1, max_length=80, pattern=IDENTIFIER_PATTERN)]


class Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Webhook(Body):
    """Where a team's notifications go; ``slack`` sends a Slack-compatible ``{"text"}`` body."""

    url: AnyHttpUrl
    format: Literal["json", "slack"] = "json"
    events: list[NotificationKind] = Field(
        default_factory=lambda: list(NOTIFICATION_KINDS), min_length=1, max_length=4
    )


class TeamIn(Body):
    """A team: its manager, routing rule, SLA policies and notification webhooks."""

    manager_id: Identifier | None = None
    manager_email: EmailStr | None = Field(
        default=None, description="Where escalations are emailed (when SMTP is configured)."
    )
    manager_slack_member_id: SlackMemberId | None = Field(
        default=None, description="Mentioned in the team's Slack messages about escalations."
    )
    priority: int = Field(default=100, ge=0, le=10_000)
    segments: list[Segment] = Field(default_factory=list, max_length=4)
    countries: list[CountryCode] = Field(default_factory=list, max_length=250)
    sla_policy: Identifier = DEFAULT_POLICY_NAME
    form_type_policies: dict[Identifier, Identifier] = Field(
        default_factory=dict,
        max_length=50,
        # The keys' rule, in the document too (pydantic states only the values').
        json_schema_extra={
            "propertyNames": {"minLength": 1, "maxLength": 80, "pattern": IDENTIFIER_PATTERN}
        },
    )
    webhooks: list[Webhook] = Field(default_factory=list, max_length=10)


class Team(TeamIn):
    team_id: str


class RepIn(Body):
    """A rep on the roster. No ``working_hours`` means always available."""

    team_id: Identifier
    segments: list[Segment] = Field(default_factory=list, max_length=4)
    capacity: int = Field(ge=0, le=10_000)
    weight: int = Field(default=1, ge=1, le=100)
    # Checked even without working hours: it is stored, and shown back.
    time_zone: TimeZoneName = "UTC"
    working_hours: WorkingWeek | None = None
    active: bool = True
    email: EmailStr | None = Field(
        default=None,
        description="Where the rep's assignments, at-risk and breach emails go (SMTP needed).",
    )
    slack_member_id: SlackMemberId | None = Field(
        default=None, description="Mentioned (`<@U…>`) in the team's Slack messages."
    )

    @model_validator(mode="after")
    def _valid_hours(self) -> RepIn:
        self.hours  # noqa: B018 -- validates zone and spans now, at the edge
        return self

    @property
    def hours(self) -> BusinessCalendar | None:
        if self.working_hours is None:
            return None
        return BusinessCalendar(time_zone=self.time_zone, weekly_hours=self.working_hours)


class Rep(RepIn):
    rep_id: str
    open_handoffs: int


class Policy(SlaPolicy):
    name: str


class RejectIn(Body):
    """Why the lead goes back to marketing; ``other`` needs a note saying why."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        # The cross-field rule in the OpenAPI document too, so clients (and fuzzers) know it.
        json_schema_extra={
            "if": {"properties": {"reason": {"const": "other"}}, "required": ["reason"]},
            "then": {
                "required": ["note"],
                "properties": {"note": {"type": "string", "pattern": r"\S"}},
            },
        },
    )

    reason: RejectionReason
    note: NoteText | None = Field(default=None, validate_default=True)

    @field_validator("note")
    @classmethod
    def _other_needs_a_note(cls, note: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("reason") == "other" and not (note and note.strip()):
            raise PydanticCustomError("note_required", "reason 'other' needs a note")
        return note


class ReassignIn(Body):
    """Reassign to ``rep_id``, or (without it) to the next eligible rep of the team."""

    rep_id: Identifier | None = None


class TokenIn(Body):
    """A token to mint: who it speaks for, in what role, for how long."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        # The cross-field rule, in the OpenAPI document too: a manager token needs a team.
        json_schema_extra={
            "if": {"properties": {"role": {"const": "manager"}}},
            "then": {"required": ["team"], "properties": {"team": {"type": "string"}}},
        },
    )

    subject: Identifier = Field(description="The rep's or manager's id (`ada`), or an admin's.")
    role: Role
    team: Identifier | None = Field(
        default=None, validate_default=True, description="A manager's team (required)."
    )
    days: int = Field(default=90, ge=1, le=3650, description="Lifetime in days.")

    @field_validator("team")
    @classmethod
    def _manager_needs_a_team(cls, team: str | None, info: ValidationInfo) -> str | None:
        # A field validator, not a model one: the 422 then names the field, `team`.
        if team is None and info.data.get("role") == "manager":
            raise PydanticCustomError("manager_needs_team", "a manager token needs a team")
        return team


class TokenOut(Body):
    """An issued token as listed: never the token itself."""

    token_id: UUID
    subject: str
    role: Role
    team: str | None
    issued_at: UtcDatetime
    expires_at: UtcDatetime
    issued_by: str | None
    revoked_at: UtcDatetime | None
    revoked_by: str | None


class TokenCreated(TokenOut):
    """A new token: ``token`` is shown this once and kept nowhere."""

    token: str


@dataclass(frozen=True)
class Handoff:
    """One handoff row."""

    handoff_id: UUID
    lead_id: UUID
    team_id: str
    rep_id: str | None
    status: Status
    policy_name: str
    policy: SlaPolicy
    segment: Segment
    country: str | None
    form_type: str | None
    attribution: Attribution
    profile: dict[str, Any]
    score: int
    created_at: datetime
    assigned_at: datetime | None
    at_risk_at: datetime | None
    at_risk_fired: bool
    due_at: datetime | None
    breaches: int
    previous_rep_ids: tuple[str, ...]
    excluded_teams: tuple[str, ...]
    decided_at: datetime | None
    decided_by: str | None
    reject_reason: str | None
    score_reasons: tuple[dict[str, Any], ...] = ()


class HandoffOut(Body):
    """A handoff as a rep or manager sees it: enough to work the lead."""

    handoff_id: UUID
    lead_id: UUID
    team_id: str
    rep_id: str | None
    status: Status
    policy: str
    segment: Segment
    country: str | None
    form_type: str | None
    score: int
    attribution: Attribution
    profile: dict[str, Any]
    created_at: UtcDatetime
    assigned_at: UtcDatetime | None
    at_risk_at: UtcDatetime | None
    due_at: UtcDatetime | None
    breaches: int
    decided_at: UtcDatetime | None
    reject_reason: str | None

    @classmethod
    def of(cls, handoff: Handoff) -> HandoffOut:
        return cls(
            handoff_id=handoff.handoff_id,
            lead_id=handoff.lead_id,
            team_id=handoff.team_id,
            rep_id=handoff.rep_id,
            status=handoff.status,
            policy=handoff.policy_name,
            segment=handoff.segment,
            country=handoff.country,
            form_type=handoff.form_type,
            score=handoff.score,
            attribution=handoff.attribution,
            profile=handoff.profile,
            created_at=handoff.created_at,
            assigned_at=handoff.assigned_at,
            at_risk_at=handoff.at_risk_at,
            due_at=handoff.due_at,
            breaches=handoff.breaches,
            decided_at=handoff.decided_at,
            reject_reason=handoff.reject_reason,
        )


class QueueQuery(Body):
    """``GET /v1/handoffs``'s query; an unknown parameter is a 422, not silently ignored."""

    status: list[Status] | None = Field(
        default=None, description="repeatable; default: the open ones"
    )
    team: Identifier | None = Field(default=None, description="admin only: one team")
    limit: int = Field(default=100, ge=1, le=500)


class HandoffList(Body):
    items: list[HandoffOut]


class Decision(Body):
    """The outcome of accept, reject or reassign."""

    handoff: HandoffOut
    business_seconds_to_decision: int | None = None
    within_sla: bool | None = None


# --- what the inbox reads beside a handoff ---------------------------------------------

Outcome = Literal["accepted", "rejected"]


@dataclass(frozen=True)
class LeadTouch:
    """A later submission of the same person (a merged duplicate): where it came from."""

    touched_at: datetime
    matched_on: str
    form_id: str | None
    attribution: Attribution


@dataclass(frozen=True)
class DecisionRecord:
    """One accept or reject, with who decided and why."""

    handoff_id: UUID
    decided_by: str
    outcome: Outcome
    reason: str | None
    note: str | None
    decided_at: datetime


@dataclass(frozen=True)
class InboxHandoff:
    """A handoff with what the inbox shows beside it."""

    handoff: Handoff
    form_id: str | None
    """The form of the lead's first submission."""
    first_missed_due_at: datetime | None
    """The earliest deadline the handoff missed (escalation and reassignment replace it)."""
    last_decision: DecisionRecord | None
    touches: tuple[LeadTouch, ...] = ()


# --- a person's data, as an admin exports it (GET /v1/privacy/people/{lead_id}) -------


class DecisionOut(Body):
    handoff_id: UUID
    decided_by: str
    outcome: Outcome
    reason: str | None
    note: str | None
    decided_at: UtcDatetime


class TouchOut(Body):
    touched_at: UtcDatetime
    matched_on: str
    form_id: str | None
    attribution: Attribution


class NotificationOut(Body):
    """A notification about the lead's handoff: what was told to whom (a channel), when."""

    handoff_id: UUID
    kind: str
    channel: str
    attempts: int
    created_at: UtcDatetime
    delivered_at: UtcDatetime | None
    failed_at: UtcDatetime | None


class PersonHandoffs(Body):
    """Everything handoff holds about the person of one lead (docs/privacy.md)."""

    lead_id: UUID
    erased: bool = Field(description="The person was erased: nothing personal is left here.")
    handoffs: list[HandoffOut]
    decisions: list[DecisionOut]
    touches: list[TouchOut]
    notifications: list[NotificationOut]
