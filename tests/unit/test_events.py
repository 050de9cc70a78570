from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from funnel_common.events import (
    EVENT_BY_TYPE,
    Attribution,
    DealWon,
    EventDecodeError,
    LeadCaptured,
    LeadProfile,
    decode_event,
    encode_event,
)


def _captured(company: str | None = None) -> LeadCaptured:
    return LeadCaptured.new(
        source="lead-intake",
        subject=uuid4(),
        data={
            "lead_id": uuid4(),
            "form_id": "default",
            "attribution": Attribution(source="webinar", campaign="q4-launch"),
            "profile": LeadProfile(email="ada@example.com", company=company),
        },
    )


def test_event_round_trips_through_its_json_form() -> None:
    event = _captured(company="Analytical Engines")

    decoded = decode_event(encode_event(event))

    assert decoded == event
    assert isinstance(decoded, LeadCaptured)


def test_time_is_normalised_to_utc_and_written_with_z() -> None:
    paris = timezone(timedelta(hours=1))
    event = LeadCaptured.new(
        source="lead-intake",
        subject="x",
        time=datetime(2026, 1, 2, 10, 0, tzinfo=paris),
        data=_captured().data,
    )

    assert event.time == datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
    assert b'"time":"2026-01-02T09:00:00Z"' in encode_event(event)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        LeadCaptured.new(
            source="lead-intake", subject="x", time=datetime(2026, 1, 2), data=_captured().data
        )


def test_nul_in_text_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        _captured(company="Evil\x00Corp")


def test_unknown_type_is_a_decode_error() -> None:
    raw = encode_event(_captured()).replace(b"funnel.lead.captured.v1", b"funnel.lead.eaten.v1")

    with pytest.raises(EventDecodeError):
        decode_event(raw)


def test_every_event_type_decodes_to_its_own_class() -> None:
    won = DealWon.new(
        source="lead-intake",
        subject="opp-1",
        data={
            "deal_id": "opp-1",
            "attribution": {"source": "webinar"},
            "amount_cents": 1_000_00,
            "currency": "USD",
            "stage": "closed_won",
            "closed_on": date(2026, 3, 31),
        },
    )

    assert type(decode_event(encode_event(won))) is DealWon
    assert len(EVENT_BY_TYPE) == 29  # main's 28 and funnel.record.dead_lettered.v1
    assert all(re.fullmatch(r"funnel\.[a-z_.]+\.v[12]", name) for name in EVENT_BY_TYPE)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    try:
        decode_event(raw)
    except EventDecodeError:
        pass
