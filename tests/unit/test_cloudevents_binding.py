"""The CloudEvents Kafka protocol binding: what this platform writes (structured mode),
and what it reads from foreign producers (binary mode too)."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest

from funnel_common.events import (
    EventDecodeError,
    Headers,
    LeadCaptured,
    decode_record,
    encode_event,
    schema_uri,
)
from funnel_common.schemas import render_schemas


def _captured() -> LeadCaptured:
    lead_id = uuid4()
    return LeadCaptured.new(
        source="lead-intake",
        subject=lead_id,
        data={
            "lead_id": lead_id,
            "form_id": "default",
            "attribution": {"source": "webinar"},
            "profile": {"email": "ada@example.com"},
        },
    )


def _binary(event: dict[str, Any]) -> tuple[bytes, Headers]:
    """``event`` (its JSON form) in binary mode: attributes as ce_* headers."""
    headers: list[tuple[str, bytes | None]] = [
        (f"ce_{name}", str(value).encode())
        for name, value in event.items()
        if name not in ("data", "datacontenttype")
    ]
    headers.append(("content-type", b"application/json"))
    return json.dumps(event["data"]).encode(), headers


def test_a_written_event_names_its_published_json_schema() -> None:
    event = _captured()

    written = json.loads(encode_event(event))
    published = json.loads(render_schemas()[f"{event.type}.json"])

    assert written["specversion"] == "1.0"
    assert written["dataschema"] == schema_uri(event.type) == published["$id"]
    assert "partitionkey" not in written  # unset attributes are left out, not null


def test_a_structured_record_decodes_with_or_without_the_content_type_header() -> None:
    event = _captured()

    with_header = decode_record(
        encode_event(event), [("content-type", b"application/cloudevents+json")]
    )
    without = decode_record(encode_event(event))

    assert with_header == without == event


def test_a_binary_mode_record_decodes_to_the_same_event() -> None:
    event = _captured()
    value, headers = _binary(json.loads(encode_event(event)))

    assert decode_record(value, headers) == event


def test_the_partitionkey_extension_is_accepted_in_both_modes() -> None:
    attributes = {**json.loads(encode_event(_captured())), "partitionkey": "lead-42"}
    value, headers = _binary(attributes)

    structured = decode_record(json.dumps(attributes).encode())
    binary = decode_record(value, headers)

    assert structured.partitionkey == binary.partitionkey == "lead-42"
    assert json.loads(encode_event(structured))["partitionkey"] == "lead-42"


def test_an_event_without_specversion_is_not_a_cloudevent() -> None:
    attributes = json.loads(encode_event(_captured()))
    del attributes["specversion"]
    structured = json.dumps(attributes).encode()
    # Binary mode is told by ce_specversion: without it the value (the data alone) is
    # read as a structured event, and is not one.
    binary = _binary(attributes)

    with pytest.raises(EventDecodeError, match="specversion"):
        decode_record(structured)
    with pytest.raises(EventDecodeError):
        decode_record(*binary)


def test_binary_data_of_another_content_type_and_batches_are_refused() -> None:
    value, headers = _binary(json.loads(encode_event(_captured())))
    as_xml = [(k, b"application/xml" if k == "content-type" else v) for k, v in headers]
    batch = [("content-type", b"application/cloudevents-batch+json")]

    with pytest.raises(EventDecodeError):
        decode_record(value, as_xml)
    with pytest.raises(EventDecodeError, match="batch"):
        decode_record(b"[]", batch)


def test_binary_data_that_is_not_json_is_a_decode_error() -> None:
    _, headers = _binary(json.loads(encode_event(_captured())))

    with pytest.raises(EventDecodeError, match="not JSON"):
        decode_record(b"\xff{", headers)
