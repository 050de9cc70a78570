"""The event envelope and the catalogue of every event the platform exchanges.

The envelope uses CloudEvents 1.0 attribute names. Each event is a frozen model named
for what happened, with its ``type`` as a ``Literal``; decoding goes through one
discriminated union, so a consumer gets a typed event or a :class:`EventDecodeError`.

On Kafka, events follow the CloudEvents Kafka protocol binding: this platform writes
structured mode (the whole event as JSON in the value, header ``content-type:
application/cloudevents+json``); :func:`decode_record` also reads binary mode (the
attributes in ``ce_*`` headers, the data in the value), as a foreign producer may
write it. A record without ``specversion`` is not a CloudEvent and is refused.

Compatibility: adding an optional field to a payload is compatible; anything else is a
new ``.vN`` type. ``tests/unit/test_event_schemas.py`` fails when a model and its
checked-in JSON Schema (``libs/common/schemas``) differ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal, Self, TypeAlias
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
)

from funnel_common.personal import Sealed
from funnel_common.types import (
    Cents,
    CurrencyCode,
    Label,
    NoteText,
    Role,
    ShortText,
    UtcDatetime,
    refuse_nul,
    utc_now,
)

LEADS_TOPIC = "funnel.leads"
HANDOFFS_TOPIC = "funnel.handoffs"
DEALS_TOPIC = "funnel.deals"
ACCOUNTS_TOPIC = "funnel.accounts"
# Revenue targets set by managers (metrics writes them through its outbox and reads
# them back, so a replay of the topics rebuilds the targets with everything else).
TARGETS_TOPIC = "funnel.targets"
# API tokens issued and revoked by handoff: every service keeps a projection of them,
# so one verifier (funnel_common.auth) checks "issued and not revoked" everywhere.
ACCESS_TOPIC = "funnel.access"
# Who changed which rep, team or SLA policy, and how: the roster's audit trail.
ROSTER_TOPIC = "funnel.roster"
# Each person's data key, wrapped (funnel_common.personal), key = person id. Compacted:
# erasure publishes a tombstone, and compaction then drops the wrapped key for good.
PEOPLE_TOPIC = "funnel.people"
DLQ_TOPIC = "funnel.dlq"
ALL_TOPICS = (
    LEADS_TOPIC,
    HANDOFFS_TOPIC,
    DEALS_TOPIC,
    ACCOUNTS_TOPIC,
    TARGETS_TOPIC,
    ACCESS_TOPIC,
    ROSTER_TOPIC,
    PEOPLE_TOPIC,
    DLQ_TOPIC,
)

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
"""The ``content-type`` header of a structured-mode CloudEvent on Kafka."""
SCHEMA_BASE_URI = "https://shared-funnel.dev/schemas/"

# Text of a CloudEvents attribute a foreign producer sets (a URI, a partition key).
_AttributeText = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(refuse_nul)]


def schema_uri(event_type: str) -> str:
    """The ``dataschema`` of an event type: where its JSON Schema is published (the
    ``$id`` of ``libs/common/schemas/<type>.json``)."""
    return f"{SCHEMA_BASE_URI}{event_type}.json"


class Payload(BaseModel):
    """Base of every event payload: immutable, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Envelope(BaseModel):
    """CloudEvents 1.0 envelope; subclasses fix ``type``, ``topic`` and ``data``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    topic: ClassVar[str]

    # Required on the wire: a record without it is not a CloudEvent (it is parked).
    specversion: Literal["1.0"]
    id: UUID
    type: str
    source: Label
    subject: Label
    time: UtcDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    # The event's JSON Schema (set by :meth:`new`); a foreign producer may leave it out.
    dataschema: _AttributeText | None = None
    # The Kafka binding's extension: when a producer sets it, it was the record's key.
    partitionkey: _AttributeText | None = None
    data: Payload

    @classmethod
    def new(
        cls,
        *,
        source: str,
        subject: str | UUID,
        data: Any,
        time: datetime | None = None,
    ) -> Self:
        """A new event with a fresh id; ``time`` defaults to now (when it happened)."""
        return cls.model_validate(
            {
                "specversion": "1.0",
                "id": uuid4(),
                "dataschema": schema_uri(cls.model_fields["type"].default),
                "source": source,
                "subject": str(subject),
                "time": time or utc_now(),
                "data": data,
            }
        )

    @property
    def key(self) -> bytes:
        """The Kafka key: the entity id, so one entity's events stay ordered."""
        return self.subject.encode()


# --- shared payload parts -------------------------------------------------------------


class Attribution(Payload):
    """Where a lead came from; rides along on deals so outcomes flow back to marketing."""

    source: Label
    campaign: Label | None = None
    utm: dict[Label, ShortText] = Field(default_factory=dict, max_length=10)


class LeadProfile(Payload):
    """What a rep needs to work a lead. Personal data: never logged, never a label."""

    email: ShortText
    phone: ShortText | None = None
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    company: ShortText | None = None
    title: ShortText | None = None
    company_size: int | None = Field(default=None, ge=0)
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None


class PersonalData(Payload):
    """The personal part of a lead (docs/privacy.md). On the wire only ever sealed with
    the person's own key (:class:`SealedProfile`), so that erasing the key erases it."""

    email: ShortText
    phone: ShortText | None = None
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    title: ShortText | None = None
    extra: dict[Label, ShortText] = Field(default_factory=dict, max_length=20)


class SealedProfile(Payload):
    """A lead's profile as ``.v2`` events carry it: what routing and reporting need in
    clear (none of it identifies the person), the personal part sealed."""

    company: ShortText | None = None
    company_size: int | None = Field(default=None, ge=0)
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    personal: Sealed | None = Field(
        description=":class:`PersonalData` sealed with the person's key "
        "(`funnel.person.key_issued.v1`); null once the person was erased."
    )


class ScoreReason(Payload):
    """One rule that contributed to a qualification score."""

    rule: Label
    points: int


# --- leads (funnel.leads, key = lead id) ----------------------------------------------


class LeadCapturedData(Payload):
    lead_id: UUID
    form_id: Label
    attribution: Attribution
    profile: LeadProfile
    spam_reasons: list[Label] = Field(default_factory=list)
    extra: dict[Label, ShortText] = Field(default_factory=dict, max_length=20)


class LeadCaptured(Envelope):
    topic: ClassVar[str] = LEADS_TOPIC
    type: Literal["funnel.lead.captured.v1"] = "funnel.lead.captured.v1"
    data: LeadCapturedData


class LeadCapturedV2Data(Payload):
    """``funnel.lead.captured.v1`` with the personal data (profile, extra fields) sealed."""

    lead_id: UUID
    form_id: Label
    attribution: Attribution
    profile: SealedProfile = Field(
        description="`personal` holds the profile's personal fields and the form's extra fields."
    )
    spam_reasons: list[Label] = Field(default_factory=list)


class LeadCapturedV2(Envelope):
    topic: ClassVar[str] = LEADS_TOPIC
    type: Literal["funnel.lead.captured.v2"] = "funnel.lead.captured.v2"
    data: LeadCapturedV2Data


class LeadQualifiedData(Payload):
    lead_id: UUID
    score: int
    reasons: list[ScoreReason]
    rules_version: Label
    form_type: Label | None = None
    attribution: Attribution
    profile: LeadProfile


class LeadQualified(Envelope):
    topic: ClassVar[str] = LEADS_TOPIC
    type: Literal["funnel.lead.qualified.v1"] = "funnel.lead.qualified.v1"
    data: LeadQualifiedData


class LeadQualifiedV2Data(Payload):
    """``funnel.lead.qualified.v1`` with the profile's personal data sealed."""

    lead_id: UUID
    score: int
    reasons: list[ScoreReason]
    rules_version: Label
    form_type: Label | None = None
    attribution: Attribution
    profile: SealedProfile


class LeadQualifiedV2(Envelope):
    topic: ClassVar[str] = LEADS_TOPIC
    type: Literal["funnel.lead.qualified.v2"] = "funnel.lead.qualified.v2"
    data: LeadQualifiedV2Data


class LeadDisqualifiedData(Payload):
    lead_id: UUID
    score: int
    reasons: list[ScoreReason]
    rules_version: Label
    attribution: Attribution


class LeadDisqualified(Envelope):
    topic: ClassVar[str] = LEADS_TOPIC
    type: Literal["funnel.lead.disqualified.v1"] = "funnel.lead.disqualified.v1"
    data: LeadDisqualifiedData


class LeadMergedData(Payload):
    """A new submission matched an existing lead: a touch for attribution, not a lead."""

    lead_id: UUID
    submission_id: UUID
    matched_on: Literal["email", "phone"]
    attribution: Attribution
    form_id: Label | None = Field(
        default=None, description="The form of this submission (absent from older senders)."
    )


class LeadMerged(Envelope):
    topic: ClassVar[str] = LEADS_TOPIC
    type: Literal["funnel.lead.merged.v1"] = "funnel.lead.merged.v1"
    data: LeadMergedData


class PersonErasedData(Payload):
    """An admin had a person's data erased (the audit record: ids only). Every service
    that holds a copy of their data or key deletes it when it hears this."""

    lead_id: UUID = Field(description="The erased person (a lead, with its merges).")
    erasure_id: UUID = Field(description="One erasure request (it may erase several leads).")
    requested_by: Label = Field(description="The admin's token subject.")
    matched_by: Literal["email", "lead_id"]


class PersonErased(Envelope):
    topic: ClassVar[str] = LEADS_TOPIC
    type: Literal["funnel.person.erased.v1"] = "funnel.person.erased.v1"
    data: PersonErasedData


# --- people (funnel.people, compacted, key = person id) -------------------------------


class PersonKeyIssuedData(Payload):
    """A person's data key, wrapped with the platform's key-encryption key."""

    person_id: UUID = Field(description="The lead the key belongs to.")
    wrapped_key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{40,200}$")] = Field(
        description="base64url; opened only with `FUNNEL_PERSONAL_DATA_KEY`."
    )


class PersonKeyIssued(Envelope):
    topic: ClassVar[str] = PEOPLE_TOPIC
    type: Literal["funnel.person.key_issued.v1"] = "funnel.person.key_issued.v1"
    data: PersonKeyIssuedData


# --- handoffs (funnel.handoffs, key = handoff id) -------------------------------------

RejectionReason = Literal[
    "not_a_fit",
    "no_budget",
    "bad_contact_data",
    "duplicate",
    "wrong_territory",
    "student_or_competitor",
    "other",
]
REJECTION_REASONS: tuple[str, ...] = RejectionReason.__args__  # type: ignore[attr-defined]


class HandoffAssignedData(Payload):
    handoff_id: UUID
    lead_id: UUID
    team: Label
    assignee_rep_id: Label | None = Field(
        description="None while the handoff waits in the team queue (no eligible rep)."
    )
    assigned_at: UtcDatetime
    due_at: UtcDatetime | None
    policy: Label
    attribution: Attribution


class HandoffAssigned(Envelope):
    topic: ClassVar[str] = HANDOFFS_TOPIC
    type: Literal["funnel.handoff.assigned.v1"] = "funnel.handoff.assigned.v1"
    data: HandoffAssignedData


class HandoffAcceptedData(Payload):
    handoff_id: UUID
    lead_id: UUID
    rep_id: Label
    team: Label
    business_seconds_to_decision: int = Field(ge=0)
    within_sla: bool
    attribution: Attribution


class HandoffAccepted(Envelope):
    topic: ClassVar[str] = HANDOFFS_TOPIC
    type: Literal["funnel.handoff.accepted.v1"] = "funnel.handoff.accepted.v1"
    data: HandoffAcceptedData


class HandoffRejectedData(Payload):
    handoff_id: UUID
    lead_id: UUID
    rep_id: Label
    team: Label
    reason: RejectionReason
    note: NoteText | None = None
    business_seconds_to_decision: int = Field(ge=0)
    within_sla: bool
    attribution: Attribution


class HandoffRejected(Envelope):
    topic: ClassVar[str] = HANDOFFS_TOPIC
    type: Literal["funnel.handoff.rejected.v1"] = "funnel.handoff.rejected.v1"
    data: HandoffRejectedData


class HandoffRejectedV2Data(Payload):
    """``funnel.handoff.rejected.v1`` with the rep's note sealed with the lead's key."""

    handoff_id: UUID
    lead_id: UUID
    rep_id: Label
    team: Label
    reason: RejectionReason
    sealed_note: Sealed | None = Field(
        default=None, description="The rep's note about the lead, sealed with its key."
    )
    business_seconds_to_decision: int = Field(ge=0)
    within_sla: bool
    attribution: Attribution


class HandoffRejectedV2(Envelope):
    topic: ClassVar[str] = HANDOFFS_TOPIC
    type: Literal["funnel.handoff.rejected.v2"] = "funnel.handoff.rejected.v2"
    data: HandoffRejectedV2Data


ReassignReason = Literal["sla_breach", "manager", "wrong_territory", "escalation"]


class HandoffReassignedData(Payload):
    handoff_id: UUID
    lead_id: UUID
    team: Label
    from_rep_id: Label | None
    to_rep_id: Label | None
    reason: ReassignReason
    due_at: UtcDatetime | None
    by: Label | None = Field(
        default=None,
        description="Who moved it (the manager's or admin's token subject) when reason is "
        "`manager`; None when handoff moved it by itself.",
    )


class HandoffReassigned(Envelope):
    topic: ClassVar[str] = HANDOFFS_TOPIC
    type: Literal["funnel.handoff.reassigned.v1"] = "funnel.handoff.reassigned.v1"
    data: HandoffReassignedData


class HandoffSlaAtRiskData(Payload):
    handoff_id: UUID
    lead_id: UUID
    team: Label
    rep_id: Label | None
    due_at: UtcDatetime
    policy: Label


class HandoffSlaAtRisk(Envelope):
    topic: ClassVar[str] = HANDOFFS_TOPIC
    type: Literal["funnel.handoff.sla_at_risk.v1"] = "funnel.handoff.sla_at_risk.v1"
    data: HandoffSlaAtRiskData


class HandoffSlaBreachedData(Payload):
    handoff_id: UUID
    lead_id: UUID
    team: Label
    rep_id: Label | None
    due_at: UtcDatetime
    policy: Label


class HandoffSlaBreached(Envelope):
    topic: ClassVar[str] = HANDOFFS_TOPIC
    type: Literal["funnel.handoff.sla_breached.v1"] = "funnel.handoff.sla_breached.v1"
    data: HandoffSlaBreachedData


# --- deals (funnel.deals, key = opportunity id) ---------------------------------------


DealField = Literal["lead_id", "attribution", "amount_cents", "stage", "expected_close_date"]


class DealState(Payload):
    """Every deal event carries the deal's full known state, so a consumer that missed
    (or has not yet seen) an earlier event still has what it needs.

    Deliveries arrive late, twice and out of order, so a consumer folds a deal's events
    by when they happened, not by arrival (ARCHITECTURE.md, "Order independence"): each
    field takes the value of the latest event (``time``, then ``delivery_id``) among
    those whose ``fields_set`` name it.
    """

    deal_id: Label
    lead_id: UUID | None = None
    attribution: Attribution
    amount_cents: Cents
    currency: CurrencyCode
    stage: Label
    expected_close_date: date | None = None
    delivery_id: Label | None = Field(
        default=None,
        description="The sender's id of the delivery this event records (e.g. the CRM's "
        "webhook id): breaks ties between events that happened at the same time.",
    )
    fields_set: list[DealField] | None = Field(
        default=None,
        description="The deal fields this delivery itself set; the others carry the state "
        "known when it was recorded. Absent: every field.",
    )


class DealOpened(Envelope):
    topic: ClassVar[str] = DEALS_TOPIC
    type: Literal["funnel.deal.opened.v1"] = "funnel.deal.opened.v1"
    data: DealState


class DealUpdated(Envelope):
    topic: ClassVar[str] = DEALS_TOPIC
    type: Literal["funnel.deal.updated.v1"] = "funnel.deal.updated.v1"
    data: DealState


class DealWonData(DealState):
    closed_on: date


class DealWon(Envelope):
    topic: ClassVar[str] = DEALS_TOPIC
    type: Literal["funnel.deal.won.v1"] = "funnel.deal.won.v1"
    data: DealWonData


class DealLostData(DealState):
    closed_on: date
    reason: Label


class DealLost(Envelope):
    topic: ClassVar[str] = DEALS_TOPIC
    type: Literal["funnel.deal.lost.v1"] = "funnel.deal.lost.v1"
    data: DealLostData


# --- accounts (funnel.accounts, key = account id) -------------------------------------


class AccountDelivery(Payload):
    """What every account event carries: the account, and the sender's delivery id."""

    account_id: Label
    delivery_id: Label | None = Field(
        default=None,
        description="The sender's id of the delivery this event records (e.g. the billing "
        "system's webhook id): breaks ties between events that happened at the same time.",
    )


class AccountActivatedData(AccountDelivery):
    arr_cents: Cents
    currency: CurrencyCode
    deal_id: Label | None = None
    attribution: Attribution | None = None


class AccountActivated(Envelope):
    topic: ClassVar[str] = ACCOUNTS_TOPIC
    type: Literal["funnel.account.activated.v1"] = "funnel.account.activated.v1"
    data: AccountActivatedData


class AccountArrChangedData(AccountDelivery):
    arr_cents: Cents = Field(description="The new ARR.")
    currency: CurrencyCode


class AccountArrChanged(Envelope):
    topic: ClassVar[str] = ACCOUNTS_TOPIC
    type: Literal["funnel.account.arr_changed.v1"] = "funnel.account.arr_changed.v1"
    data: AccountArrChangedData


class AccountChurnedData(AccountDelivery):
    pass


class AccountChurned(Envelope):
    topic: ClassVar[str] = ACCOUNTS_TOPIC
    type: Literal["funnel.account.churned.v1"] = "funnel.account.churned.v1"
    data: AccountChurnedData


# --- targets (funnel.targets, key = period) -------------------------------------------


class TargetSetData(Payload):
    """The revenue target of a calendar quarter, in the reporting currency."""

    period: Annotated[str, Field(pattern=r"^\d{4}-Q[1-4]$")]
    amount_cents: Cents
    currency: CurrencyCode
    set_by: Label


class TargetSet(Envelope):
    topic: ClassVar[str] = TARGETS_TOPIC
    type: Literal["funnel.target.set.v1"] = "funnel.target.set.v1"
    data: TargetSetData


# --- access (funnel.access, key = token id) -------------------------------------------
# No secret material: a token is checked by its signature, and these say only that a
# token id was issued (to whom, with what role, until when) or revoked.


class TokenIssuedData(Payload):
    token_id: UUID
    subject: Label
    role: Role
    team: Label | None
    issued_at: UtcDatetime
    expires_at: UtcDatetime
    issued_by: Label | None = Field(
        description="The admin who minted it; None for the local bootstrap (`funnel token`)."
    )


class TokenIssued(Envelope):
    topic: ClassVar[str] = ACCESS_TOPIC
    type: Literal["funnel.token.issued.v1"] = "funnel.token.issued.v1"
    data: TokenIssuedData


class TokenRevokedData(Payload):
    """The whole token as issued, so a service that missed the issue still refuses it."""

    token_id: UUID
    subject: Label
    role: Role
    team: Label | None
    issued_at: UtcDatetime
    expires_at: UtcDatetime
    revoked_at: UtcDatetime
    revoked_by: Label | None


class TokenRevoked(Envelope):
    topic: ClassVar[str] = ACCESS_TOPIC
    type: Literal["funnel.token.revoked.v1"] = "funnel.token.revoked.v1"
    data: TokenRevokedData


# --- roster (funnel.roster, key = rep id, team id or policy name) ---------------------


class FieldChange(Payload):
    """One field of a roster entry, before and after. Contact details and webhook URLs
    (personal data, secrets) are named as changed with their values left out."""

    field: Label
    before: JsonValue = None
    after: JsonValue = None


class RosterChangeData(Payload):
    changed_by: Label
    changed_by_role: Role
    created: bool = Field(description="True when the entry did not exist before.")
    changes: list[FieldChange] = Field(description="Only the fields whose value changed.")


class RepChangedData(RosterChangeData):
    rep_id: Label
    team: Label


class RepChanged(Envelope):
    topic: ClassVar[str] = ROSTER_TOPIC
    type: Literal["funnel.roster.rep_changed.v1"] = "funnel.roster.rep_changed.v1"
    data: RepChangedData


class TeamChangedData(RosterChangeData):
    team: Label


class TeamChanged(Envelope):
    topic: ClassVar[str] = ROSTER_TOPIC
    type: Literal["funnel.roster.team_changed.v1"] = "funnel.roster.team_changed.v1"
    data: TeamChangedData


class SlaPolicyChangedData(RosterChangeData):
    policy: Label


class SlaPolicyChanged(Envelope):
    topic: ClassVar[str] = ROSTER_TOPIC
    type: Literal["funnel.roster.sla_policy_changed.v1"] = "funnel.roster.sla_policy_changed.v1"
    data: SlaPolicyChangedData


# --- dead letters (funnel.dlq, key = the record's key) ---------------------------------


class RecordDeadLetteredData(Payload):
    """A record a consumer could not apply, as it was, with why: parked so that the
    consumer moves on and an operator can look at it (and replay it once fixed)."""

    kind: Literal["undecodable", "handler_failed"]
    error: str = Field(max_length=4000)
    group: str = Field(max_length=300)
    topic: str = Field(max_length=300)
    partition: int
    offset: int
    original: dict[Literal["text", "base64"], str] = Field(
        description="the record's value: as text when it is UTF-8, else base64"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="the record's headers, as text"
    )


class RecordDeadLettered(Envelope):
    topic: ClassVar[str] = DLQ_TOPIC
    type: Literal["funnel.record.dead_lettered.v1"] = "funnel.record.dead_lettered.v1"
    data: RecordDeadLetteredData


# --- decoding ------------------------------------------------------------------------

AnyEvent: TypeAlias = Annotated[
    LeadCaptured
    | LeadCapturedV2
    | LeadQualified
    | LeadQualifiedV2
    | LeadDisqualified
    | LeadMerged
    | PersonErased
    | PersonKeyIssued
    | HandoffAssigned
    | HandoffAccepted
    | HandoffRejected
    | HandoffRejectedV2
    | HandoffReassigned
    | HandoffSlaAtRisk
    | HandoffSlaBreached
    | DealOpened
    | DealUpdated
    | DealWon
    | DealLost
    | AccountActivated
    | AccountArrChanged
    | AccountChurned
    | TargetSet
    | TokenIssued
    | TokenRevoked
    | RepChanged
    | TeamChanged
    | SlaPolicyChanged
    | RecordDeadLettered,
    Field(discriminator="type"),
]

EVENT_TYPES: tuple[type[Envelope], ...] = AnyEvent.__origin__.__args__  # type: ignore[attr-defined]
EVENT_BY_TYPE: dict[str, type[Envelope]] = {
    cls.model_fields["type"].default: cls for cls in EVENT_TYPES
}

_any_event: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


class EventDecodeError(ValueError):
    """Raised when bytes on a topic are not a valid event of the catalogue."""


def decode_event(raw: bytes | str) -> Envelope:
    """Decode one event from its JSON form (structured mode), or raise
    :class:`EventDecodeError`."""
    try:
        event: Envelope = _any_event.validate_json(raw)
    except ValidationError as error:
        raise EventDecodeError(str(error)) from error
    return event


Headers = Sequence[tuple[str, bytes | None]]
"""Kafka record headers as clients hand them over: (name, value or None)."""

_BINARY_PREFIX = "ce_"


def decode_record(value: bytes | None, headers: Headers = ()) -> Envelope:
    """Decode a Kafka record's event in either mode of the CloudEvents Kafka binding.

    Binary mode (a ``ce_specversion`` header): the attributes are the ``ce_*`` headers,
    ``content-type`` is ``datacontenttype`` and the value is ``data``. Otherwise the value
    is the whole event (structured mode: what this platform writes). A record in
    neither form, a batch, or an event without ``specversion`` raises
    :class:`EventDecodeError`.
    """
    attributes: dict[str, str] = {}
    content_type: str | None = None
    for name, raw in headers:
        if raw is None:
            continue
        key = name.lower()
        if key == "content-type":
            content_type = raw.decode(errors="replace")
        elif key.startswith(_BINARY_PREFIX):
            attributes[key.removeprefix(_BINARY_PREFIX)] = raw.decode(errors="replace")
    # Binary mode is told by its ce_specversion header; any other record is structured
    # (a stray ce_* header does not make it binary).
    if "specversion" not in attributes:
        if content_type is not None and content_type.startswith("application/cloudevents-batch"):
            raise EventDecodeError("CloudEvents batches are not accepted: one event per record")
        return decode_event(value or b"")
    try:
        data = json.loads(value or b"")
    except ValueError as error:
        raise EventDecodeError(f"binary-mode data is not JSON: {error}") from error
    # datacontenttype defaults to the event's own (JSON); a header naming another
    # type is validated (and refused) like any attribute.
    event = {**attributes, "data": data}
    if content_type is not None:
        event["datacontenttype"] = content_type.split(";")[0].strip()
    try:
        decoded: Envelope = _any_event.validate_python(event)
    except ValidationError as error:
        raise EventDecodeError(str(error)) from error
    return decoded


def encode_event(event: Envelope) -> bytes:
    """The event's JSON form (structured mode), as written to the outbox and the topic.
    Optional CloudEvents attributes that are unset are left out, not written as null."""
    unset = {name for name in _OPTIONAL_ATTRIBUTES if getattr(event, name) is None}
    return event.model_dump_json(exclude=unset or None).encode()


_OPTIONAL_ATTRIBUTES = ("dataschema", "partitionkey")
