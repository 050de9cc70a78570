"""Writing a batch of lead submissions in one transaction, with set-based statements.

Each step (replayed signatures, idempotency keys, rate limit, dedupe, the writes) is
one statement for the whole batch, and each submission gets the answer it would have
got alone, one after another in arrival order. Submissions that must see an earlier
batch-mate's committed work (the same Idempotency-Key, signature, email or phone) are
deferred to the next batch, where they do.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from fastapi.responses import JSONResponse, RedirectResponse, Response
from opentelemetry import context as otel_context
from opentelemetry import propagate

from funnel_common import outbox
from funnel_common.events import Envelope, LeadProfile
from funnel_common.http import Conflict, DomainError
from lead_intake import intake, store
from lead_intake.batching import DEFER, Deferred
from lead_intake.edge import RateLimited, Unauthorized
from lead_intake.forms import Form
from lead_intake.intake import IntakePolicy
from lead_intake.models import LeadAccepted, LeadSubmission
from lead_intake.screening import rate_limit_retry_after

SCOPE = "leads"
# Expired rate-limit hits and idempotency keys are swept at most this often, not on
# every batch: each sweep scans its table.
_SWEEP_SECONDS = 1.0


@dataclass(frozen=True)
class Submitted:
    """A validated submission, and what its request knows about it."""

    submission: LeadSubmission
    form: Form
    redirect_to: str | None
    idempotency_key: str | None
    fingerprint: str | None  # of the body, when an Idempotency-Key needs it
    signature: str | None  # a signed import's digest: trusted, not rate limited
    client_hash: str
    trace_context: otel_context.Context


@dataclass(frozen=True)
class Answered:
    """The HTTP answer, and the lead's status when this request captured it (metrics)."""

    response: Response
    status: str | None = None


Outcome = Answered | DomainError


@dataclass(frozen=True)
class Limits:
    rate_limit_per_client: int
    rate_limit_window_seconds: int
    idempotency_key_ttl_hours: int


def answer_of(result: LeadAccepted, redirect_to: str | None) -> Response:
    if redirect_to is not None:
        return RedirectResponse(redirect_to, status_code=303)
    return JSONResponse(result.model_dump(mode="json"), status_code=202)


def replay_of(stored: asyncpg.Record | None, fingerprint: str | None) -> Outcome:
    if stored is None or stored["status_code"] is None:
        return Conflict("the first request with this Idempotency-Key did not finish")
    if stored["request_hash"] != fingerprint:
        return Conflict("this Idempotency-Key was used for a different request")
    headers = json.loads(stored["headers"] or "{}")
    headers["idempotent-replayed"] = "true"
    if "location" in headers:
        return Answered(Response(status_code=stored["status_code"], headers=headers))
    return Answered(
        Response(
            stored["body"],
            status_code=stored["status_code"],
            headers=headers,
            media_type="application/json",
        )
    )


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

    def __init__(self, policy: IntakePolicy, limits: Limits) -> None:
        self._policy = policy
        self._limits = limits
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
                trusted=member.signature is not None,
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
        known = (
            await store.lock_leads(connection, {lead_id for lead_id, _ in matches.values()})
            if matches
            else {}
        )

        new_leads: list[store.NewLeadRow] = []
        touches: list[store.Touch] = []
        events: list[tuple[Envelope, dict[str, str]]] = []
        answers: list[store.StoredAnswer] = []
        for index in pending:
            member = members[index]
            attribution = intake.attribution_of(member.submission, member.form)
            if index in matches:
                lead_id, matched_on = matches[index]
                captured, known[lead_id] = intake.merge(
                    known[lead_id], matched_on, profiles[index], attribution,
                    member.submission.form_id, member.form, self._policy,
                )  # fmt: skip
            else:
                captured = intake.new_lead(
                    member.submission, member.form, profiles[index], attribution, spam[index],
                    self._policy,
                )  # fmt: skip
            new_leads += [captured.new_lead] if captured.new_lead else []
            touches += [captured.touch] if captured.touch else []
            trace_headers: dict[str, str] = {}
            propagate.inject(trace_headers, context=member.trace_context)
            events += [(event, trace_headers) for event in captured.events]
            response = answer_of(captured.accepted, member.redirect_to)
            outcomes[index] = Answered(response, captured.accepted.status)
            if member.idempotency_key in claimed:
                answers.append(_stored_answer(member.idempotency_key, response))

        if new_leads:
            await store.insert_leads(connection, new_leads)
        if touches:
            await store.record_touches(connection, touches)
        if hits:
            await store.record_client_hits(connection, hits)
        if answers:
            await store.store_answers(connection, SCOPE, answers)
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

    async def _sweep(self, connection: asyncpg.Connection) -> None:
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + _SWEEP_SECONDS
        await store.forget_old_client_hits(connection, self._limits.rate_limit_window_seconds)
        await store.forget_old_idempotency_keys(connection, self._limits.idempotency_key_ttl_hours)

    async def _refuse_replayed_signatures(
        self,
        connection: asyncpg.Connection,
        members: Sequence[Submitted],
        outcomes: list[Outcome | Deferred | None],
    ) -> set[str]:
        """Refuses replayed signatures; the signatures recorded now."""
        signed = [i for i, m in enumerate(members) if outcomes[i] is None and m.signature]
        if not signed:
            return set()
        fresh = await store.remember_signatures(
            connection, [str(members[i].signature) for i in signed]
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
            stored = await store.stored_answers(
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
        limited = [i for i, m in enumerate(members) if outcomes[i] is None and not m.signature]
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


def _stored_answer(key: str, response: Response) -> store.StoredAnswer:
    location = response.headers.get("location")
    return store.StoredAnswer(
        key=key,
        status_code=response.status_code,
        headers={"location": location} if location is not None else {},
        body=bytes(response.body).decode(),
    )
