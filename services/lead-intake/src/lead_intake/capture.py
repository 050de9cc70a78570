"""Writing a batch of lead submissions in one transaction, with set-based statements.

Each step (replayed signatures, idempotency keys, rate limit, dedupe, the writes) is
one statement for the whole batch, and each submission gets the answer it would have
got alone, one after another in arrival order. Submissions that must see an earlier
batch-mate's committed work (the same Idempotency-Key, signature, email or phone) are
deferred to the next batch, where they do. What each submission became is a domain
outcome (:class:`Accepted` or a named refusal); ``api.py`` turns it into an answer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from opentelemetry import context as otel_context
from opentelemetry import propagate
from pydantic import TypeAdapter

from funnel_common import outbox, personal
from funnel_common.events import Envelope, LeadProfile
from funnel_common.http import Conflict, DomainError
from lead_intake import intake, store
from lead_intake.batching import DEFER, Deferred
from lead_intake.edge import RateLimited, Unauthorized
from lead_intake.forms import Form
from lead_intake.intake import IntakePolicy, NewLeadRow, StoredLead, Touch
from lead_intake.models import LeadAccepted, LeadReceived, LeadStatus, LeadSubmission
from lead_intake.screening import rate_limit_retry_after

SCOPE = "leads"
# Expired rate-limit hits and idempotency keys are swept at most this often, not on
# every batch: each sweep scans its table.
_SWEEP_SECONDS = 1.0


@dataclass(frozen=True)
class SignedImport:
    """A post signed with the import secret: trusted (not rate limited, may back-date
    its capture) and told what became of the lead."""

    digest: str
    valid_until: datetime


@dataclass(frozen=True)
class Submitted:
    """A validated submission, and what its request knows about it."""

    submission: LeadSubmission
    form: Form
    captured_at: datetime
    redirect_to: str | None
    idempotency_key: str | None
    fingerprint: str | None  # of the body, when an Idempotency-Key needs it
    signed: SignedImport | None
    client_hash: str
    trace_context: otel_context.Context

    @property
    def signature(self) -> str | None:
        return None if self.signed is None else self.signed.digest


Answer = LeadAccepted | LeadReceived
_answer: TypeAdapter[Answer] = TypeAdapter(Answer)


@dataclass(frozen=True)
class Accepted:
    """A submission stored (or an earlier one's result replayed): what to tell the
    sender, where a plain form goes next, and the lead's status for the counters (None
    for a replay, which captured nothing)."""

    answer: Answer
    redirect_to: str | None
    lead_status: LeadStatus | None = None
    replayed: bool = False

    def stored(self) -> dict[str, Any]:
        """The result as an Idempotency-Key keeps it."""
        return {"answer": _answer.dump_python(self.answer, mode="json"),
                "redirect_to": self.redirect_to}  # fmt: skip

    @classmethod
    def replay(cls, stored: dict[str, Any]) -> Accepted:
        answer = _answer.validate_python(stored["answer"])
        return cls(answer=answer, redirect_to=stored["redirect_to"], replayed=True)


Outcome = Accepted | DomainError
"""What became of one submission: accepted, or a named refusal."""


@dataclass(frozen=True)
class Limits:
    rate_limit_per_client: int
    rate_limit_window_seconds: int
    idempotency_key_ttl_hours: int


def replay_of(stored: tuple[str, dict[str, Any] | None] | None, fingerprint: str | None) -> Outcome:
    """The first request's result for a retry with its Idempotency-Key, or why not."""
    request_hash, result = stored if stored is not None else (None, None)
    if result is None:
        return Conflict("the first request with this Idempotency-Key did not finish")
    if request_hash != fingerprint:
        return Conflict("this Idempotency-Key was used for a different request")
    return Accepted.replay(result)


def answer_for(member: Submitted, captured: intake.Captured) -> Answer:
    """A signed import learns what became of the lead; anyone else gets a receipt that
    is the same for a new, a known and a spam submission (no existence oracle)."""
    if member.signed is not None:
        return captured.accepted
    return LeadReceived(receipt_id=captured.submission_id)


def _conflict_keys(member: Submitted, profile: LeadProfile, spam: bool) -> set[str]:
    keys = set()
    if member.idempotency_key is not None:
        keys.add(f"key:{member.idempotency_key}")
    if member.signature is not None:
        keys.add(f"signature:{member.signature}")
    if not spam:  # spam is never deduped, nor deduped onto
        keys |= {f"identity:{identity}" for identity in _identities(profile)}
    return keys


def _identities(profile: LeadProfile) -> list[str]:
    return [profile.email, *filter(None, [profile.phone])]


class LeadWriter:
    """Writes a batch of submissions inside the committer's transaction."""

    def __init__(self, policy: IntakePolicy, limits: Limits, keyring: personal.Keyring) -> None:
        self._policy = policy
        self._limits = limits
        self._keyring = keyring
        self._next_sweep = 0.0

    async def __call__(
        self, connection: asyncpg.Connection, members: Sequence[Submitted]
    ) -> list[Outcome | Deferred]:
        # The batch's statements belong to the trace of its first request.
        token = otel_context.attach(members[0].trace_context)
        try:
            return await self._write(connection, members)
        finally:
            otel_context.detach(token)

    async def _write(
        self, connection: asyncpg.Connection, members: Sequence[Submitted]
    ) -> list[Outcome | Deferred]:
        now = datetime.now(UTC)
        profiles = [intake.profile_of(member.submission) for member in members]
        spam = [
            intake.spam_of(
                member.submission,
                profile,
                self._policy,
                trusted=member.signed is not None,
                now=now,
            )
            for member, profile in zip(members, profiles, strict=True)
        ]
        outcomes: list[Outcome | Deferred | None] = [None] * len(members)
        seen: set[str] = set()
        for index, member in enumerate(members):
            keys = _conflict_keys(member, profiles[index], bool(spam[index]))
            if keys & seen:
                outcomes[index] = DEFER
            seen |= keys

        await self._sweep(connection)
        signatures = await self._refuse_replayed_signatures(connection, members, outcomes)
        claimed = await self._claim_keys(connection, members, outcomes)
        hits = await self._apply_rate_limit(connection, members, outcomes)

        pending = [index for index, outcome in enumerate(outcomes) if outcome is None]
        matches = await self._dedupe(
            connection, [(index, profiles[index]) for index in pending if not spam[index]], now
        )
        known = await self._lock_known(connection, {lead_id for lead_id, _ in matches.values()})

        new_keys: list[personal.PersonKey] = []
        new_leads: list[NewLeadRow] = []
        touches: list[Touch] = []
        events: list[tuple[Envelope, dict[str, str]]] = []
        results: list[tuple[str, dict[str, Any]]] = []
        for index in pending:
            member = members[index]
            attribution = intake.attribution_of(member.submission, member.form)
            if index in matches:
                lead_id, matched_on = matches[index]
                captured, known[lead_id] = intake.merge(
                    known[lead_id], matched_on, profiles[index], attribution,
                    member.submission.form_id, member.form, self._policy, self._keyring,
                    captured_at=member.captured_at,
                )  # fmt: skip
            else:
                captured = intake.new_lead(
                    member.submission, member.form, profiles[index], attribution, spam[index],
                    self._policy, self._keyring, captured_at=member.captured_at,
                )  # fmt: skip
            new_keys += [captured.new_key] if captured.new_key else []
            new_leads += [captured.new_lead] if captured.new_lead else []
            touches += [captured.touch] if captured.touch else []
            trace_headers: dict[str, str] = {}
            propagate.inject(trace_headers, context=member.trace_context)
            events += [(event, trace_headers) for event in captured.events]
            accepted = Accepted(
                answer_for(member, captured), member.redirect_to, captured.accepted.status
            )
            outcomes[index] = accepted
            if member.idempotency_key in claimed:
                results.append((member.idempotency_key, accepted.stored()))

        if new_keys:
            await personal.store_keys(connection, new_keys)
        if new_leads:
            await store.insert_leads(connection, new_leads)
        if touches:
            await store.record_touches(connection, touches)
        if hits:
            await store.record_client_hits(connection, hits)
        if results:
            await store.store_results(connection, SCOPE, results)
        # A refused request leaves no trace, as when it rolled back its own transaction:
        # its retry is a first request again.
        refused = [m for m, o in zip(members, outcomes, strict=True) if isinstance(o, DomainError)]
        if refused_keys := [
            str(m.idempotency_key) for m in refused if m.idempotency_key in claimed
        ]:
            await store.release_idempotency_keys(connection, SCOPE, refused_keys)
        if refused_signatures := [str(m.signature) for m in refused if m.signature in signatures]:
            await store.forget_signatures(connection, refused_signatures)
        if events:
            await outbox.enqueue_traced(connection, events)
        return [DEFER if outcome is None else outcome for outcome in outcomes]

    async def _lock_known(
        self, connection: asyncpg.Connection, lead_ids: set[UUID]
    ) -> dict[UUID, StoredLead]:
        """The leads this batch merges onto, locked, each with its data key."""
        if not lead_ids:
            return {}
        known = await store.lock_leads(connection, lead_ids)
        keys = await personal.load_keys(connection, self._keyring, lead_ids)
        return {lead_id: replace(lead, key=keys.get(lead_id)) for lead_id, lead in known.items()}

    async def _sweep(self, connection: asyncpg.Connection) -> None:
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + _SWEEP_SECONDS
        await store.forget_old_client_hits(connection, self._limits.rate_limit_window_seconds)
        await store.forget_old_idempotency_keys(connection, self._limits.idempotency_key_ttl_hours)
        await store.forget_expired_signatures(connection)

    async def _refuse_replayed_signatures(
        self,
        connection: asyncpg.Connection,
        members: Sequence[Submitted],
        outcomes: list[Outcome | Deferred | None],
    ) -> set[str]:
        """Refuses replayed signatures; the signatures recorded now."""
        signed = [i for i, m in enumerate(members) if outcomes[i] is None and m.signed]
        if not signed:
            return set()
        fresh = await store.remember_signatures(
            connection,
            [(m.signed.digest, m.signed.valid_until) for i in signed if (m := members[i]).signed],
        )
        for index in signed:
            if members[index].signature not in fresh:
                outcomes[index] = Unauthorized("replayed signature")
        return fresh

    async def _claim_keys(
        self,
        connection: asyncpg.Connection,
        members: Sequence[Submitted],
        outcomes: list[Outcome | Deferred | None],
    ) -> set[str]:
        keyed = [i for i, m in enumerate(members) if outcomes[i] is None and m.idempotency_key]
        if not keyed:
            return set()
        requests = [(str(members[i].idempotency_key), str(members[i].fingerprint)) for i in keyed]
        claimed = await store.claim_idempotency_keys(connection, SCOPE, requests)
        replays = [i for i in keyed if members[i].idempotency_key not in claimed]
        if replays:
            # A statement of its own: it must see a first request that committed while
            # the claim above waited for it.
            stored = await store.stored_results(
                connection, SCOPE, [str(members[i].idempotency_key) for i in replays]
            )
            for index in replays:
                member = members[index]
                outcomes[index] = replay_of(
                    stored.get(str(member.idempotency_key)), member.fingerprint
                )
        return claimed

    async def _apply_rate_limit(
        self,
        connection: asyncpg.Connection,
        members: Sequence[Submitted],
        outcomes: list[Outcome | Deferred | None],
    ) -> list[str]:
        """Refuses clients over their allowance; the hits to record for the others."""
        limited = [i for i, m in enumerate(members) if outcomes[i] is None and not m.signed]
        if not limited:
            return []
        limit = self._limits.rate_limit_per_client
        window = self._limits.rate_limit_window_seconds
        before = await store.client_hits_in_window(
            connection, [members[i].client_hash for i in limited], window, at_most=limit
        )
        in_batch: Counter[str] = Counter()
        hits = []
        for index in limited:
            client = members[index].client_hash
            retry_after = rate_limit_retry_after(before[client] + in_batch[client], limit, window)
            if retry_after is not None:
                outcomes[index] = RateLimited(retry_after)
            else:
                in_batch[client] += 1
                hits.append(client)
        return hits

    async def _dedupe(
        self,
        connection: asyncpg.Connection,
        candidates: list[tuple[int, LeadProfile]],
        now: datetime,
    ) -> dict[int, tuple[UUID, str]]:
        """Per batch position: the known lead this submission merges onto, and on what."""
        if not candidates:
            return {}
        await store.lock_identities(
            connection, [key for _, profile in candidates for key in _identities(profile)]
        )
        found = await store.find_recent_leads(
            connection,
            [(profile.email, profile.phone) for _, profile in candidates],
            since=now - self._policy.dedupe_window,
        )
        return {
            index: match
            for (index, _), match in zip(candidates, found, strict=True)
            if match is not None
        }
