"""What one submission becomes: spam, a new lead or a merge, and the events of each.

Pure: ``capture.py`` looks up what these decisions need (a known lead to merge onto)
and writes what they return, for a whole batch of submissions at once. The row shapes
are this module's (``store.py`` writes them as given).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from funnel_common.events import (
    Attribution,
    Envelope,
    LeadCapturedData,
    LeadCapturedV2,
    LeadCapturedV2Data,
    LeadDisqualified,
    LeadDisqualifiedData,
    LeadMerged,
    LeadMergedData,
    LeadProfile,
    LeadQualifiedV2,
    LeadQualifiedV2Data,
    PersonalData,
    PersonKeyIssued,
    PersonKeyIssuedData,
    SealedProfile,
)
from funnel_common.personal import Keyring, PersonKey, wrapped_text
from lead_intake.forms import Form
from lead_intake.models import LeadAccepted, LeadSubmission
from lead_intake.qualification import (
    Decision,
    LeadFacts,
    Rules,
    qualify,
    rescored_event_due,
)
from lead_intake.screening import email_domain, normalise_email, spam_reasons

SERVICE = "lead-intake"


@dataclass(frozen=True)
class StoredLead:
    """A known lead, as dedupe and merges need it."""

    lead_id: UUID
    status: str
    form_type: str | None
    profile: LeadProfile
    attribution: Attribution
    key: PersonKey | None = None
    """The person's data key (None for a lead captured before personal data was sealed:
    its next event gives it one)."""


@dataclass(frozen=True)
class NewLeadRow:
    """A lead as first stored: captured data, spam verdict and qualification at once."""

    lead: LeadCapturedData
    submission_id: UUID
    captured_at: datetime
    status: str
    form_type: str | None
    score: int | None
    rules_version: str | None


@dataclass(frozen=True)
class Touch:
    """A submission merged onto a known lead, and the lead's state after it."""

    submission_id: UUID
    lead_id: UUID
    form_id: str
    matched_on: str
    attribution: Attribution
    profile: LeadProfile
    form_type: str | None
    status: str
    score: int
    rules_version: str


@dataclass(frozen=True)
class IntakePolicy:
    """The settings capture needs, as values (no settings object in the core)."""

    rules: Rules
    min_fill_seconds: float
    disposable_domains: frozenset[str]
    dedupe_window: timedelta


def profile_of(submission: LeadSubmission) -> LeadProfile:
    return LeadProfile(
        email=normalise_email(submission.email),
        phone=submission.phone,
        first_name=submission.first_name,
        last_name=submission.last_name,
        company=submission.company,
        title=submission.title,
        company_size=submission.company_size,
        country=submission.country,
    )


def attribution_of(submission: LeadSubmission, form: Form) -> Attribution:
    utm = submission.utm()
    return Attribution(
        source=submission.source or utm.get("utm_source") or form.default_source,
        campaign=submission.campaign or utm.get("utm_campaign") or form.default_campaign,
        utm=utm,
    )


def merged_profile(known: LeadProfile, new: LeadProfile) -> LeadProfile:
    """The newer touch fills in and corrects what the lead told us before."""
    updates = new.model_dump(exclude_none=True, exclude={"email"})
    return known.model_copy(update=updates)


def facts_of(profile: LeadProfile, form_type: str | None) -> LeadFacts:
    return LeadFacts(
        email_domain=email_domain(profile.email),
        title=profile.title,
        company_size=profile.company_size,
        country=profile.country,
        form_type=form_type,
    )


def sealed_profile(
    profile: LeadProfile, key: PersonKey, extra: dict[str, str] | None = None
) -> SealedProfile:
    """The profile as events carry it: company, size and country in clear (routing and
    reporting need them, and they identify no one), the rest sealed with the person's key."""
    personal = PersonalData(
        email=profile.email,
        phone=profile.phone,
        first_name=profile.first_name,
        last_name=profile.last_name,
        title=profile.title,
        extra=extra or {},
    )
    return SealedProfile(
        company=profile.company,
        company_size=profile.company_size,
        country=profile.country,
        personal=key.seal_model(personal, "profile"),
    )


def key_issued(key: PersonKey, at: datetime) -> PersonKeyIssued:
    """The announcement of a new person's key on ``funnel.people`` (wrapped)."""
    return PersonKeyIssued.new(
        source=SERVICE,
        subject=key.person_id,
        time=at,
        data=PersonKeyIssuedData(person_id=key.person_id, wrapped_key=wrapped_text(key)),
    )


def decision_events(
    lead_id: UUID,
    decision: Decision,
    profile: LeadProfile,
    attribution: Attribution,
    form: Form,
    key: PersonKey,
) -> list[Envelope]:
    if decision.outcome == "qualified":
        return [
            LeadQualifiedV2.new(
                source=SERVICE,
                subject=lead_id,
                data=LeadQualifiedV2Data(
                    lead_id=lead_id,
                    score=decision.score,
                    reasons=decision.reasons,
                    rules_version=decision.rules_version,
                    form_type=form.form_type,
                    attribution=attribution,
                    profile=sealed_profile(profile, key),
                ),
            )
        ]
    if decision.outcome == "disqualified":
        return [
            LeadDisqualified.new(
                source=SERVICE,
                subject=lead_id,
                data=LeadDisqualifiedData(
                    lead_id=lead_id,
                    score=decision.score,
                    reasons=decision.reasons,
                    rules_version=decision.rules_version,
                    attribution=attribution,
                ),
            )
        ]
    return []


def spam_of(
    submission: LeadSubmission,
    profile: LeadProfile,
    policy: IntakePolicy,
    *,
    trusted: bool,
    now: datetime,
) -> list[str]:
    """Why this submission is spam (empty: it is not). A signed import is never too fast."""
    started = (
        datetime.fromtimestamp(submission.form_started_at, UTC)
        if submission.form_started_at is not None and not trusted
        else None
    )
    return spam_reasons(
        honeypot=submission.website,
        form_started_at=started,
        received_at=now,
        min_fill_seconds=policy.min_fill_seconds,
        domain=email_domain(profile.email),
        disposable_domains=policy.disposable_domains,
    )


def captured_at_of(submission: LeadSubmission, *, trusted: bool, now: datetime) -> datetime:
    """When the submission was made: now, or a signed import's own ``captured_at`` (an
    older system's lead), which must not be in the future. :class:`CapturedAtRefused`
    otherwise."""
    if submission.captured_at is None:
        return now
    if not trusted:
        raise CapturedAtRefused("only a signed import may set it", "signed_only")
    if submission.captured_at > now:
        raise CapturedAtRefused("must not be in the future", "in_the_future")
    return submission.captured_at


class CapturedAtRefused(ValueError):
    """A ``captured_at`` this submission may not carry (answered 422 naming the field)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Captured:
    """What a submission adds: a new lead or a touch, its events, and the answer; and a
    person key to store when the lead got one now."""

    accepted: LeadAccepted
    submission_id: UUID
    events: list[Envelope]
    new_lead: NewLeadRow | None = None
    touch: Touch | None = None
    new_key: PersonKey | None = None


def new_lead(
    submission: LeadSubmission,
    form: Form,
    profile: LeadProfile,
    attribution: Attribution,
    spam: list[str],
    policy: IntakePolicy,
    keyring: Keyring,
    *,
    captured_at: datetime,
) -> Captured:
    """A first-time lead (or spam, recorded but never qualified), captured at
    ``captured_at``, with a data key of its own; its qualification is decided now."""
    lead = LeadCapturedData(
        lead_id=uuid4(),
        form_id=submission.form_id,
        attribution=attribution,
        profile=profile,
        spam_reasons=spam,
        extra=submission.extra,
    )
    key = keyring.new_key(lead.lead_id)
    submission_id = uuid4()
    captured = LeadCapturedV2Data(
        lead_id=lead.lead_id,
        form_id=lead.form_id,
        attribution=attribution,
        profile=sealed_profile(profile, key, lead.extra),
        spam_reasons=spam,
    )
    events: list[Envelope] = [
        key_issued(key, captured_at),
        LeadCapturedV2.new(source=SERVICE, subject=lead.lead_id, data=captured, time=captured_at),
    ]
    if spam:
        return Captured(
            accepted=LeadAccepted(lead_id=lead.lead_id, status="spam", receipt_id=submission_id),
            submission_id=submission_id,
            events=events,
            new_lead=NewLeadRow(
                lead, submission_id, captured_at, "spam", form.form_type, None, None
            ),
            new_key=key,
        )
    decision = qualify(policy.rules, facts_of(profile, form.form_type))
    events += decision_events(lead.lead_id, decision, profile, attribution, form, key)
    return Captured(
        accepted=LeadAccepted(
            lead_id=lead.lead_id,
            status=decision.outcome,
            score=decision.score,
            receipt_id=submission_id,
        ),
        submission_id=submission_id,
        events=events,
        new_lead=NewLeadRow(
            lead, submission_id, captured_at, decision.outcome, form.form_type, decision.score,
            decision.rules_version,
        ),
        new_key=key,
    )  # fmt: skip


def merge(
    known: StoredLead,
    matched_on: str,
    profile: LeadProfile,
    attribution: Attribution,
    form_id: str,
    form: Form,
    policy: IntakePolicy,
    keyring: Keyring,
    *,
    captured_at: datetime,
) -> tuple[Captured, StoredLead]:
    """A returning person: a touch on the known lead (made at ``captured_at``), rescored;
    and the lead after it. A lead from before personal data was sealed gets its key now."""
    lead_id = known.lead_id
    submission_id = uuid4()
    profile = merged_profile(known.profile, profile)
    key = known.key if known.key is not None else keyring.new_key(lead_id)
    new_key = None if known.key is not None else key
    events: list[Envelope] = [
        *([key_issued(new_key, captured_at)] if new_key else []),
        LeadMerged.new(
            source=SERVICE,
            subject=lead_id,
            time=captured_at,
            data=LeadMergedData(
                lead_id=lead_id,
                submission_id=submission_id,
                matched_on="email" if matched_on == "email" else "phone",
                attribution=attribution,
                form_id=form_id,
            ),
        ),
    ]
    # Rescoring on the new touch: only a changed outcome is evented, with the touch's
    # attribution (the campaign that tipped the lead over the threshold).
    decision = qualify(policy.rules, facts_of(profile, form.form_type))
    status = known.status
    if rescored_event_due(known.status, decision):
        status = decision.outcome
        events += decision_events(lead_id, decision, profile, attribution, form, key)
    touch = Touch(
        submission_id=submission_id,
        lead_id=lead_id,
        form_id=form_id,
        matched_on=matched_on,
        attribution=attribution,
        profile=profile,
        form_type=form.form_type,
        status=status,
        score=decision.score,
        rules_version=decision.rules_version,
    )
    after = StoredLead(
        lead_id=lead_id,
        status=status,
        form_type=form.form_type,
        profile=profile,
        attribution=known.attribution,
        key=key,
    )
    captured = Captured(
        accepted=LeadAccepted(
            lead_id=lead_id, status="merged", score=decision.score, receipt_id=submission_id
        ),
        submission_id=submission_id,
        events=events,
        touch=touch,
        new_key=new_key,
    )
    return captured, after
