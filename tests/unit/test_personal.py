"""Sealing personal data with a key per person (funnel_common.personal)."""

from __future__ import annotations

from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, TypeAdapter, ValidationError

from funnel_common.events import PersonalData
from funnel_common.personal import Keyring, SealBroken, Sealed, wrapped_bytes, wrapped_text

RING = Keyring(SecretStr("a key-encryption key for the unit tests, long enough"))


@given(st.text(max_size=300))
def test_what_is_sealed_opens_with_the_same_key_and_reads_as_nothing_else(text: str) -> None:
    key = RING.new_key(uuid4())

    sealed = key.seal(text, "note")

    assert key.open(sealed, "note") == text
    TypeAdapter(Sealed).validate_python(sealed)  # what events and tables accept
    if len(text) >= 4:
        assert text not in sealed


def test_sealing_twice_gives_different_text() -> None:
    key = RING.new_key(uuid4())

    assert key.seal("ada@example.com", "note") != key.seal("ada@example.com", "note")


def test_another_persons_key_or_purpose_cannot_open_it() -> None:
    ada, bob = RING.new_key(uuid4()), RING.new_key(uuid4())
    sealed = ada.seal("spoke to Ada", "note")

    with pytest.raises(SealBroken):
        bob.open(sealed, "note")
    with pytest.raises(SealBroken):
        ada.open(sealed, "profile")  # a note cannot be passed off as a profile
    with pytest.raises(SealBroken):
        ada.open(sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1], "note")
    with pytest.raises(SealBroken):
        ada.open("spoke to Ada", "note")


def test_a_wrapped_key_opens_only_with_its_kek_and_for_its_person() -> None:
    person = uuid4()
    key = RING.new_key(person)
    sealed = key.seal_model(PersonalData(email="ada@example.com", first_name="Ada"), "profile")

    unwrapped = RING.unwrap(person, wrapped_bytes(wrapped_text(key)))

    assert unwrapped.open_model(sealed, PersonalData, "profile").first_name == "Ada"
    with pytest.raises(SealBroken):
        RING.unwrap(uuid4(), key.wrapped)  # another person's record
    with pytest.raises(SealBroken):
        Keyring(SecretStr("another key-encryption key, long enough too")).unwrap(
            person, key.wrapped
        )
    assert "data_key" not in repr(key)


def test_sealed_text_is_refused_where_it_is_not_sealed() -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Sealed).validate_python("ada@example.com")
