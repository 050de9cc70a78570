"""The people behind handoff's leads: their keys, their sealed data opened for the people
who work them, and their erasure (docs/privacy.md).

handoff keeps every lead's personal data as it heard it, sealed with the person's key
(``funnel_common.personal``): the profile from ``funnel.lead.qualified.v2`` and the reps'
notes, which it seals itself. It keeps a copy of each person's wrapped key from
``funnel.people`` and opens their data only to show or export it. When the person is
erased (``funnel.person.erased.v1``) it deletes the key copy and blanks what it holds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import asyncpg

from funnel_common import personal
from funnel_common.events import PersonalData, PersonErased, PersonKeyIssued
from funnel_common.http import Conflict, DomainError
from funnel_common.personal import Keyring, PersonKey, SealBroken
from funnel_common.settings import CommonSettings
from handoff import store
from handoff.models import (
    DecisionOut,
    DecisionRecord,
    Handoff,
    HandoffOut,
    InboxHandoff,
    NotificationOut,
    PersonHandoffs,
    TouchOut,
)

log = logging.getLogger(__name__)

# The profile's personal fields as a v1 event carried them in clear, and the sealed part
# of a v2 one: what erasure removes from a stored profile.
PERSONAL_PROFILE_FIELDS = ("email", "phone", "first_name", "last_name", "title", "personal")


async def on_person_key_issued(connection: asyncpg.Connection, event: PersonKeyIssued) -> None:
    await personal.store_key(
        connection, event.data.person_id, personal.wrapped_bytes(event.data.wrapped_key)
    )


async def on_person_erased(connection: asyncpg.Connection, event: PersonErased) -> None:
    lead_id = event.data.lead_id
    await personal.forget_keys(connection, [lead_id])
    await store.erase_person(connection, lead_id, list(PERSONAL_PROFILE_FIELDS))
    log.info("person erased", extra={"erasure_id": str(event.data.erasure_id)})


# --- opening sealed data to show it ----------------------------------------------------


def keyring_for(settings: CommonSettings) -> Keyring:
    """The keyring that opens the key copies handoff keeps."""
    return personal.keyring(settings.personal_data_key)


def open_profile(profile: dict[str, Any], key: PersonKey | None) -> dict[str, Any]:
    """A stored profile with its sealed part opened (absent when the key is not here: the
    person was erased, or their key has not arrived yet). A profile stored in clear (from
    a ``.v1`` event) is returned as it is."""
    if "personal" not in profile:
        return profile
    opened = {name: value for name, value in profile.items() if name != "personal"}
    sealed = profile["personal"]
    if key is None or not isinstance(sealed, str):
        return opened
    try:
        data = key.open_model(sealed, PersonalData, "profile")
    except SealBroken:
        log.warning("a sealed profile did not open", extra={"person_id": str(key.person_id)})
        return opened
    return {**opened, **data.model_dump(exclude_none=True, exclude_defaults=True)}


async def opened(
    connection: asyncpg.Connection, ring: Keyring, handoffs: Sequence[Handoff]
) -> list[Handoff]:
    """The handoffs with their leads' profiles opened."""
    keys = await personal.load_keys(connection, ring, [h.lead_id for h in handoffs])
    return [
        replace(handoff, profile=open_profile(handoff.profile, keys.get(handoff.lead_id)))
        for handoff in handoffs
    ]


def _opened_decision(
    decision: DecisionRecord | None, key: PersonKey | None
) -> DecisionRecord | None:
    if decision is None:
        return None
    return replace(decision, note=personal.open_note(decision.note, key))


async def opened_items(
    connection: asyncpg.Connection, ring: Keyring, items: Sequence[InboxHandoff]
) -> list[InboxHandoff]:
    """Inbox items with their profiles and their last decision's note opened."""
    keys = await personal.load_keys(connection, ring, [item.handoff.lead_id for item in items])
    result = []
    for item in items:
        key = keys.get(item.handoff.lead_id)
        handoff = replace(item.handoff, profile=open_profile(item.handoff.profile, key))
        result.append(
            replace(item, handoff=handoff, last_decision=_opened_decision(item.last_decision, key))
        )
    return result


async def opened_history(
    connection: asyncpg.Connection, ring: Keyring, rows: Sequence[tuple[DecisionRecord, Handoff]]
) -> list[tuple[DecisionRecord, Handoff]]:
    """Decision history rows with notes and profiles opened."""
    keys = await personal.load_keys(connection, ring, [handoff.lead_id for _, handoff in rows])
    result = []
    for decision, handoff in rows:
        key = keys.get(handoff.lead_id)
        note = _opened_decision(decision, key)
        if note is not None:
            result.append((note, replace(handoff, profile=open_profile(handoff.profile, key))))
    return result


async def export(connection: asyncpg.Connection, ring: Keyring, lead_id: UUID) -> PersonHandoffs:
    """Everything handoff holds about the person of ``lead_id``, opened."""
    key = (await personal.load_keys(connection, ring, [lead_id])).get(lead_id)
    handoffs = await store.handoffs_of_lead(connection, lead_id)
    decisions = await store.decisions_of_lead(connection, lead_id)
    return PersonHandoffs(
        lead_id=lead_id,
        erased=await personal.erased(connection, lead_id),
        handoffs=[
            HandoffOut.of(replace(handoff, profile=open_profile(handoff.profile, key)))
            for handoff in handoffs
        ],
        decisions=[
            DecisionOut(
                handoff_id=decision.handoff_id,
                decided_by=decision.decided_by,
                outcome=decision.outcome,
                reason=decision.reason,
                note=personal.open_note(decision.note, key),
                decided_at=decision.decided_at,
            )
            for decision in decisions
        ],
        touches=[
            TouchOut(
                touched_at=touch.touched_at,
                matched_on=touch.matched_on,
                form_id=touch.form_id,
                attribution=touch.attribution,
            )
            for touch in await store.touches_of_lead(connection, lead_id)
        ],
        notifications=[
            NotificationOut.model_validate(dict(row))
            for row in await store.notifications_of_lead(connection, lead_id)
        ],
    )


# --- sealing what reps write -----------------------------------------------------------


class PersonErasedHere(Conflict):
    slug = "person-erased"
    title = "This lead's personal data was erased: a note about them cannot be kept"


class KeyNotYetHere(DomainError):
    status = 503
    slug = "person-key-pending"
    title = "This lead's data key has not reached handoff yet; try again in a moment"


@dataclass(frozen=True)
class SealedNote:
    """A rep's note as handoff stores it, and as its event carries it."""

    stored: str | None
    sent: str | None


async def seal_note(
    connection: asyncpg.Connection, ring: Keyring, handoff: Handoff, note: str | None
) -> SealedNote:
    """A rep's note about a lead, sealed with the lead's key. :class:`PersonErasedHere`
    when the person was erased (nothing may be kept about them), :class:`KeyNotYetHere`
    in the moment before their key arrives on ``funnel.people``.

    A lead heard of before personal data was sealed (its profile is stored in clear) has
    no key: its note is kept here in clear like its profile (both blanked if the person
    is erased) and does not travel in the event."""
    if note is None:
        return SealedNote(None, None)
    key = (await personal.load_keys(connection, ring, [handoff.lead_id])).get(handoff.lead_id)
    if key is not None:
        sealed = key.seal(note, "note")
        return SealedNote(sealed, sealed)
    if await personal.erased(connection, handoff.lead_id):
        raise PersonErasedHere("reject without a note (a reason other than `other`)", field="note")
    if "personal" not in handoff.profile:
        return SealedNote(note, None)
    raise KeyNotYetHere(headers={"Retry-After": "1"})
