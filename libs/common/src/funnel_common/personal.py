"""A person's data sealed with a key of their own, so that erasing them is deleting it.

Kafka records are immutable and ``funnel replay`` reads them for good, so personal data
cannot be deleted from the topics. It is never written there in clear instead: each
person (a lead; submissions merged onto it belong to it) gets a random 256-bit data key,
and every copy of their personal data outside lead-intake's own row is sealed with it
(AES-256-GCM, from the ``cryptography`` library). Erasure deletes the key; every sealed
copy, wherever it was copied to, is then ciphertext nobody can open (crypto-shredding).

A data key is never stored in clear either: it is wrapped (AES-256-GCM again) with the
platform's key-encryption key, derived from ``FUNNEL_PERSONAL_DATA_KEY``. lead-intake
keeps the wrapped keys (table ``person_keys``) and announces each on the compacted topic
``funnel.people``; a service that must show personal data (handoff) keeps a copy in its
own ``person_keys`` and deletes it when the person is erased.

Sealed text is ``sealed.v1.<base64url(nonce | ciphertext | tag)>``. The person's id and
what the text is (a profile, a note) are authenticated with it, so a sealed note cannot
be passed off as another person's, or as a profile.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Literal, TypeVar
from uuid import UUID

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, Field, SecretStr

SEALED_PREFIX = "sealed.v1."
_NONCE_BYTES = 12
_KEY_BYTES = 32
# Wrapped keys carry a version byte ahead of the nonce: a rotated key-encryption key (or
# another wrapping) can be told apart from this one without guessing.
_WRAP_VERSION = b"\x01"

Sealed = Annotated[
    str,
    Field(
        pattern=r"^sealed\.v1\.[A-Za-z0-9_-]{38,}$",
        max_length=16_000,
        description="Personal data sealed with the person's own key (AES-256-GCM, "
        "funnel_common.personal): unreadable once the person is erased.",
    ),
]
"""Sealed text as events and tables carry it."""

Purpose = Literal["profile", "note"]
"""What a sealed text holds; authenticated with it."""

ModelT = TypeVar("ModelT", bound=BaseModel)


class SealBroken(ValueError):
    """Sealed text that this key cannot open: another person's, altered, or not sealed."""


log = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PersonKey:
    """One person's data key, and its wrapped form (what is stored and announced)."""

    person_id: UUID
    wrapped: bytes
    data_key: bytes = field(repr=False)

    def _aad(self, purpose: Purpose) -> bytes:
        return self.person_id.bytes + purpose.encode()

    def seal(self, plaintext: str, purpose: Purpose) -> str:
        """``plaintext`` sealed for this person (a fresh random nonce each time)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.data_key).encrypt(nonce, plaintext.encode(), self._aad(purpose))
        return SEALED_PREFIX + _b64(nonce + sealed)

    def open(self, sealed: str, purpose: Purpose) -> str:
        """The plaintext of ``sealed``; :class:`SealBroken` if this key cannot open it."""
        if not sealed.startswith(SEALED_PREFIX):
            raise SealBroken("not sealed text")
        try:
            raw = _unb64(sealed.removeprefix(SEALED_PREFIX))
            nonce, body = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
            return AESGCM(self.data_key).decrypt(nonce, body, self._aad(purpose)).decode()
        except (InvalidTag, ValueError) as error:
            raise SealBroken("sealed text does not open with this person's key") from error

    def seal_model(self, model: BaseModel, purpose: Purpose) -> str:
        """A model's JSON, sealed."""
        return self.seal(model.model_dump_json(exclude_defaults=True), purpose)

    def open_model(self, sealed: str, model: type[ModelT], purpose: Purpose) -> ModelT:
        """A model sealed by :meth:`seal_model`; :class:`SealBroken` if it does not open."""
        return model.model_validate_json(self.open(sealed, purpose))


def open_note(note: str | None, key: PersonKey | None) -> str | None:
    """A rep's stored note opened: None when it cannot be (its person erased, or a seal
    that does not open with the key); a note from before sealing is returned as it is."""
    if note is None or not note.startswith(SEALED_PREFIX):
        return note
    if key is None:
        return None
    try:
        return key.open(note, "note")
    except SealBroken:
        log.warning("a sealed note did not open", extra={"person_id": str(key.person_id)})
        return None


class Keyring:
    """Makes, wraps and unwraps data keys with the platform's key-encryption key."""

    def __init__(self, secret: SecretStr) -> None:
        # HKDF turns the configured secret (any text of enough entropy) into exactly the
        # 256-bit key AES needs, bound to this one use.
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=_KEY_BYTES,
            salt=None,
            info=b"shared-funnel personal data key-encryption key v1",
        ).derive(secret.get_secret_value().encode())
        self._kek = AESGCM(derived)

    def new_key(self, person_id: UUID) -> PersonKey:
        """A fresh random data key for ``person_id``."""
        data_key = AESGCM.generate_key(bit_length=_KEY_BYTES * 8)
        nonce = os.urandom(_NONCE_BYTES)
        wrapped = _WRAP_VERSION + nonce + self._kek.encrypt(nonce, data_key, person_id.bytes)
        return PersonKey(person_id=person_id, wrapped=wrapped, data_key=data_key)

    def unwrap(self, person_id: UUID, wrapped: bytes) -> PersonKey:
        """The key ``wrapped`` holds; :class:`SealBroken` if it is not ``person_id``'s or
        was wrapped with another key-encryption key."""
        version, nonce, body = (
            wrapped[:1],
            wrapped[1 : 1 + _NONCE_BYTES],
            wrapped[1 + _NONCE_BYTES :],
        )
        if version != _WRAP_VERSION:
            raise SealBroken("unknown key wrapping")
        try:
            data_key = self._kek.decrypt(nonce, body, person_id.bytes)
        except InvalidTag as error:
            raise SealBroken(
                "the wrapped key does not open with this key-encryption key"
            ) from error
        return PersonKey(person_id=person_id, wrapped=wrapped, data_key=data_key)


@functools.lru_cache(maxsize=4)
def _keyring(secret: str) -> Keyring:
    return Keyring(SecretStr(secret))


def keyring(secret: SecretStr) -> Keyring:
    """The keyring of ``FUNNEL_PERSONAL_DATA_KEY`` (``CommonSettings.personal_data_key``),
    built once per process and secret."""
    return _keyring(secret.get_secret_value())


def wrapped_text(key: PersonKey) -> str:
    """A wrapped key as events carry it (base64url)."""
    return _b64(key.wrapped)


def wrapped_bytes(text: str) -> bytes:
    """The wrapped key of :func:`wrapped_text`."""
    return _unb64(text)


# --- the person_keys table (common migration 0005) -----------------------------------


async def store_key(connection: asyncpg.Connection, person_id: UUID, wrapped: bytes) -> bool:
    """Keep a person's wrapped key, unless they were erased here (a key heard after the
    erasure must not bring their data back). False when it was not kept."""
    kept = await connection.fetchval(
        """INSERT INTO person_keys (person_id, wrapped_key)
           SELECT $1, $2 WHERE NOT EXISTS (SELECT FROM erased_people WHERE person_id = $1)
           ON CONFLICT (person_id) DO NOTHING RETURNING true""",
        person_id,
        wrapped,
    )
    return bool(kept)


async def store_keys(connection: asyncpg.Connection, keys: Iterable[PersonKey]) -> None:
    """Keep many new keys in one statement (lead-intake, for a batch of new leads)."""
    keys = list(keys)
    if keys:
        await connection.execute(
            """INSERT INTO person_keys (person_id, wrapped_key)
               SELECT * FROM unnest($1::uuid[], $2::bytea[]) ON CONFLICT DO NOTHING""",
            [key.person_id for key in keys],
            [key.wrapped for key in keys],
        )


async def load_keys(
    connection: asyncpg.Connection, ring: Keyring, person_ids: Iterable[UUID]
) -> dict[UUID, PersonKey]:
    """The keys held here of ``person_ids`` (an erased or unknown person has none)."""
    rows = await connection.fetch(
        "SELECT person_id, wrapped_key FROM person_keys WHERE person_id = ANY($1::uuid[])",
        list(set(person_ids)),
    )
    return {row["person_id"]: ring.unwrap(row["person_id"], row["wrapped_key"]) for row in rows}


async def forget_keys(connection: asyncpg.Connection, person_ids: Iterable[UUID]) -> None:
    """Erase: delete the keys and remember that these people were erased."""
    ids = list(set(person_ids))
    await connection.execute("DELETE FROM person_keys WHERE person_id = ANY($1::uuid[])", ids)
    await connection.execute(
        """INSERT INTO erased_people (person_id)
           SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING""",
        ids,
    )


async def erased(connection: asyncpg.Connection, person_id: UUID) -> bool:
    """Whether this person was erased here."""
    return bool(
        await connection.fetchval("SELECT true FROM erased_people WHERE person_id = $1", person_id)
    )
