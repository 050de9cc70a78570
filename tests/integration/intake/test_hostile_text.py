"""Hostile text in every free-text field of lead-intake: stored exactly, or a precise 4xx.

Never a 5xx: SQL, NUL, lone surrogates, bytes that are not UTF-8, 10 kB strings, HTML,
CRLF, quotes, format strings and RTL overrides each either come back byte for byte in
the event that leaves the service, or are refused as RFC 9457 problem details.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from funnel_common import personal
from funnel_common.events import PersonalData
from funnel_common.settings import CommonSettings
from funnel_common.signing import SIGNATURE_HEADER, sign
from tests.hostile import HOSTILE, UNSTORABLE, is_problem, json_bytes, with_invalid_utf8
from tests.integration.intake.conftest import BILLING_SECRET, CRM_SECRET

_numbers = itertools.count()

# Lead field -> where it lands in the funnel.lead.captured.v2 event's data, opened.
STORED_AT: dict[str, tuple[str, ...]] = {
    "first_name": ("profile", "first_name"),
    "last_name": ("profile", "last_name"),
    "company": ("profile", "company"),
    "title": ("profile", "title"),
    "source": ("attribution", "source"),
    "campaign": ("attribution", "campaign"),
    "utm_medium": ("attribution", "utm", "utm_medium"),
    "utm_term": ("attribution", "utm", "utm_term"),
    "utm_content": ("attribution", "utm", "utm_content"),
    "how_did_you_hear": ("extra", "how_did_you_hear"),
}
# Text fields that are checked or only screened, not stored as given.
SCREENED = ("phone", "email", "form_key", "website", "thank_you_url", "utm_source")
JSON = {"content-type": "application/json"}


def _lead(**fields: Any) -> dict[str, Any]:
    return {"email": f"hostile.{next(_numbers)}@example.org", **fields}


@pytest.fixture
async def reader(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """One connection to read back what lead-intake committed."""
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def _captured(reader: asyncpg.Connection, receipt_id: str) -> dict[str, Any]:
    """The captured event of the lead an anonymous post's receipt names, its sealed
    personal part opened with the lead's key (as the v1 event carried it in clear)."""
    lead_id = await reader.fetchval(
        "SELECT lead_id FROM intake.leads WHERE submission_id = $1::uuid", receipt_id
    )
    payload = await reader.fetchval(
        "SELECT payload FROM intake.outbox WHERE event_type = 'funnel.lead.captured.v2'"
        " AND convert_from(payload, 'UTF8')::jsonb #>> '{data,lead_id}' = $1",
        str(lead_id),
    )
    assert payload is not None, f"no captured event for {lead_id}"
    wrapped = await reader.fetchval(
        "SELECT wrapped_key FROM intake.person_keys WHERE person_id = $1", lead_id
    )
    key = personal.keyring(CommonSettings().personal_data_key).unwrap(lead_id, wrapped)
    data: dict[str, Any] = json.loads(payload)["data"]
    opened = key.open_model(data["profile"].pop("personal"), PersonalData, "profile")
    data["profile"].update(opened.model_dump(exclude={"extra"}))
    data["extra"] = opened.extra
    return data


def _at(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


async def test_every_lead_text_field_stores_hostile_text_exactly_or_refuses_it(
    intake: httpx.AsyncClient, reader: asyncpg.Connection
) -> None:
    unexpected: list[str] = []
    for name, value in HOSTILE.items():
        unexpected += await _lead_fields(intake, reader, name, value)

    assert unexpected == []


async def _lead_fields(
    intake: httpx.AsyncClient, reader: asyncpg.Connection, name: str, value: str
) -> list[str]:
    unexpected: list[str] = []
    for field, path in STORED_AT.items():
        answer = await intake.post(
            "/v1/leads", content=json_bytes(_lead(**{field: value})), headers=JSON
        )
        if answer.status_code == 202:
            data = await _captured(reader, answer.json()["receipt_id"])
            if name in UNSTORABLE or _at(data, path) != value.strip():
                unexpected.append(f"{field}: stored {_at(data, path)!r}")
        elif not is_problem(answer):
            unexpected.append(f"{field}: {answer.status_code} {answer.text[:200]}")
    for field in SCREENED:
        answer = await intake.post(
            "/v1/leads", content=json_bytes(_lead(**{field: value})), headers=JSON
        )
        if not (answer.status_code == 202 or is_problem(answer)):
            unexpected.append(f"{field}: {answer.status_code} {answer.text[:200]}")
    key_answer = await intake.post(
        "/v1/leads", content=json_bytes(_lead(**{value: "x"})), headers=JSON
    )
    if not (key_answer.status_code == 202 or is_problem(key_answer)):
        unexpected.append(f"extra key: {key_answer.status_code} {key_answer.text[:200]}")
    return [f"{name} in {problem}" for problem in unexpected]


async def test_a_plain_html_form_post_with_hostile_text_is_stored_or_refused(
    intake: httpx.AsyncClient, reader: asyncpg.Connection
) -> None:
    for name, hostile in HOSTILE.items():
        # A lone surrogate cannot be percent-encoded; bytes that are not UTF-8 are below.
        value = hostile.encode("utf-8", "surrogatepass").decode("utf-8", "replace")

        answer = await intake.post("/v1/leads", data=_lead(company=value, how_did_you_hear=value))

        assert answer.status_code == 202 or is_problem(answer), (name, answer.text[:300])
        if answer.status_code == 202:
            data = await _captured(reader, answer.json()["receipt_id"])
            assert data["profile"]["company"] == value.strip(), name
            assert data["extra"]["how_did_you_hear"] == value.strip(), name


async def test_bytes_that_are_not_utf8_are_a_422_in_json_and_in_a_form(
    intake: httpx.AsyncClient,
) -> None:
    as_json = await intake.post(
        "/v1/leads", content=with_invalid_utf8(_lead(), "company"), headers=JSON
    )
    as_form = await intake.post(
        "/v1/leads",
        content=b"email=a%40example.org&company=bad+%FF%FE+bytes",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert as_json.status_code == 422
    assert is_problem(as_json)
    assert as_form.status_code == 422
    assert as_form.json()["errors"][0]["code"] == "form_invalid"


async def test_webhook_text_fields_store_hostile_text_exactly_or_refuse_it(
    intake: httpx.AsyncClient, reader: asyncpg.Connection
) -> None:
    unexpected: list[str] = []
    read_back: set[str] = set()
    for name, value in HOSTILE.items():
        unexpected += await _webhook_fields(intake, reader, name, value, read_back)

    assert unexpected == []
    # Storable hostile text really reached the events, in every field that carries it
    # (a deal lost before it was opened is recorded like any other: order-independence).
    assert read_back == {"stage", "deal_id", "reason", "account_id"}


async def _last_event(reader: asyncpg.Connection) -> dict[str, Any]:
    payload = await reader.fetchval("SELECT payload FROM intake.outbox ORDER BY seq DESC LIMIT 1")
    data: dict[str, Any] = json.loads(payload)["data"]
    return data


async def _webhook_fields(
    intake: httpx.AsyncClient,
    reader: asyncpg.Connection,
    name: str,
    value: str,
    read_back: set[str],
) -> list[str]:
    unexpected: list[str] = []
    deal = {"event": "opened", "amount_cents": 100, "currency": "USD"}
    account = {"event": "activated", "arr_cents": 100, "currency": "USD"}
    # (path, secret, body, the field under attack, whether the event carries it as sent)
    cases = [
        ("/v1/deals", CRM_SECRET, {**deal, "stage": value}, "stage", True),
        ("/v1/deals", CRM_SECRET, {**deal, "deal_id": value}, "deal_id", True),
        ("/v1/deals", CRM_SECRET, {**deal, "email": value}, "email", False),
        ("/v1/deals", CRM_SECRET, {**deal, "event": "lost", "reason": value}, "reason", True),
        (
            "/v1/accounts/events",
            BILLING_SECRET,
            {**account, "account_id": value},
            "account_id",
            True,
        ),
        ("/v1/accounts/events", BILLING_SECRET, {**account, "deal_id": value}, "deal_id", True),
    ]

    for path, secret, body, field, carried in cases:
        body = {"webhook_id": f"w-{next(_numbers)}", "deal_id": f"d-{next(_numbers)}", **body}
        if path.startswith("/v1/accounts"):
            body.setdefault("account_id", f"a-{next(_numbers)}")
        # The hostile text as the webhook id too (the second post is then a new delivery).
        for webhook_id in (value, body["webhook_id"]):
            raw = json_bytes({**body, "webhook_id": webhook_id})
            answer = await intake.post(path, **_signed_raw(raw, secret))
            if answer.status_code == 200 and answer.json()["status"] == "applied" and carried:
                stored = (await _last_event(reader)).get(field)
                read_back.add(field)
                if name in UNSTORABLE or stored != value.strip():
                    unexpected.append(f"{name} in {path} {field}: stored {stored!r:.60}")
            elif not (answer.status_code == 200 or is_problem(answer)):
                unexpected.append(f"{name} in {path} {field}: {answer.status_code}")
    return unexpected


def _signed_raw(raw: bytes, secret: str) -> dict[str, Any]:
    signature = sign(secret, int(time.time()), raw)
    return {"content": raw, "headers": {**JSON, SIGNATURE_HEADER: signature}}
