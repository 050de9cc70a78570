"""Capturing one submission: spam, dedupe, qualification, and the events they produce.

The decisions are pure (screening, qualification); this module sequences them around
the store and the outbox inside the request's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from funnel_common import outbox
from funnel_common.events import (
    Attribution,
    Envelope,
    LeadCaptured,
    LeadCapturedData,
    LeadDisqualified,
    LeadDisqualifiedData,
    LeadMerged,
    LeadMergedData,
    LeadProfile,
    LeadQualified,
    LeadQualifiedData,
)
from lead_intake import store
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
class IntakePolicy:
    """The settings capture needs, as values (no settings object in the core)."""

    rules: Rules
    min_fill_seconds: float
    disposable_domains: frozenset[str]
    dedupe_window: timedelta
    trusted: bool = False  # a signed import: no too-fast check


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


def decision_events(
    lead_id: UUID, decision: Decision, profile: LeadProfile, attribution: Attribution, form: Form
) -> list[Envelope]:
    if decision.outcome == "qualified":
        return [
            LeadQualified.new(
                source=SERVICE,
                subject=lead_id,
                data=LeadQualifiedData(
                    lead_id=lead_id,
                    score=decision.score,
                    reasons=decision.reasons,
                    rules_version=decision.rules_version,
                    form_type=form.form_type,
                    attribution=attribution,
                    profile=profile,
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


async def capture(
    connection: asyncpg.Connection,
    submission: LeadSubmission,
    form_id: str,
    form: Form,
    policy: IntakePolicy,
) -> LeadAccepted:
    """Record the submission as a new lead, a merge onto a known one, or spam."""
    now = datetime.now(UTC)
    profile = profile_of(submission)
    attribution = attribution_of(submission, form)
    started = (
        datetime.fromtimestamp(submission.form_started_at, UTC)
        if submission.form_started_at is not None and not policy.trusted
        else None
    )
    spam = spam_reasons(
        honeypot=submission.website,
        form_started_at=started,
        received_at=now,
        min_fill_seconds=policy.min_fill_seconds,
        domain=email_domain(profile.email),
        disposable_domains=policy.disposable_domains,
    )
    if not spam:
        await store.lock_identity(connection, profile.email, *filter(None, [profile.phone]))
        match = await store.find_recent_lead(
            connection, email=profile.email, phone=profile.phone, since=now - policy.dedupe_window
        )
        if match is not None:
            known, matched_on = match
            return await _merge(
                connection, known, matched_on, profile, attribution, form_id, form, policy
            )

    lead = LeadCapturedData(
        lead_id=uuid4(),
        form_id=form_id,
        attribution=attribution,
        profile=profile,
        spam_reasons=spam,
        extra=submission.extra,
    )
    await store.insert_lead(
        connection, lead, status="spam" if spam else "captured", form_type=form.form_type
    )
    events: list[Envelope] = [LeadCaptured.new(source=SERVICE, subject=lead.lead_id, data=lead)]
    if spam:
        await outbox.enqueue(connection, *events)
        return LeadAccepted(lead_id=lead.lead_id, status="spam")
    decision = qualify(policy.rules, facts_of(profile, form.form_type))
    await store.set_qualification(
        connection,
        lead.lead_id,
        status=decision.outcome,
        score=decision.score,
        rules_version=decision.rules_version,
    )
    events += decision_events(lead.lead_id, decision, profile, attribution, form)
    await outbox.enqueue(connection, *events)
    return LeadAccepted(lead_id=lead.lead_id, status=decision.outcome, score=decision.score)


async def _merge(
    connection: asyncpg.Connection,
    known: store.StoredLead,
    matched_on: str,
    profile: LeadProfile,
    attribution: Attribution,
    form_id: str,
    form: Form,
    policy: IntakePolicy,
) -> LeadAccepted:
    submission_id = uuid4()
    profile = merged_profile(known.profile, profile)
    await store.record_touch(
        connection,
        submission_id=submission_id,
        lead_id=known.lead_id,
        form_id=form_id,
        matched_on=matched_on,
        attribution=attribution,
        profile=profile,
        form_type=form.form_type,
    )
    events: list[Envelope] = [
        LeadMerged.new(
            source=SERVICE,
            subject=known.lead_id,
            data=LeadMergedData(
                lead_id=known.lead_id,
                submission_id=submission_id,
                matched_on="email" if matched_on == "email" else "phone",
                attribution=attribution,
            ),
        )
    ]
    # Rescoring on the new touch: only a changed outcome is evented, with the touch's
    # attribution (the campaign that tipped the lead over the threshold).
    decision = qualify(policy.rules, facts_of(profile, form.form_type))
    status = known.status
    if rescored_event_due(known.status, decision):
        status = decision.outcome
        events += decision_events(known.lead_id, decision, profile, attribution, form)
    await store.set_qualification(
        connection,
        known.lead_id,
        status=status,
        score=decision.score,
        rules_version=decision.rules_version,
    )
    await outbox.enqueue(connection, *events)
    return LeadAccepted(lead_id=known.lead_id, status="merged", score=decision.score)
