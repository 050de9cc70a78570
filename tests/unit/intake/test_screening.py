"""Normalisation, spam signals, form redirects, signatures and outcome transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from funnel_common.signing import SignatureError, sign, verify
from lead_intake.forms import Form
from lead_intake.outcomes import IllegalTransition, next_account_status, next_deal_status
from lead_intake.screening import normalise_email, normalise_phone, spam_reasons

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


@given(st.from_regex(r"\+?[1-9][0-9]{6,14}", fullmatch=True))
def test_phone_formatting_never_changes_the_dedupe_key(phone: str) -> None:
    spaced = " ".join(phone[i : i + 3] for i in range(0, len(phone), 3))

    assert normalise_phone(spaced) == normalise_phone(phone) == phone
    assert normalise_phone(f"({phone[:4]}) {phone[4:]}") == phone


@pytest.mark.parametrize("phone", ["call me", "12345", "+1234567890123456", "12-ab-345678"])
def test_things_that_are_not_phone_numbers_are_refused(phone: str) -> None:
    with pytest.raises(ValueError, match="7 to 15 digits"):
        normalise_phone(phone)


def test_emails_dedupe_case_insensitively() -> None:
    assert normalise_email("  Ada@Example.COM ") == "ada@example.com"


def test_each_spam_signal_is_named() -> None:
    def reasons(**overrides: object) -> list[str]:
        values: dict[str, object] = {
            "honeypot": None, "form_started_at": NOW - timedelta(seconds=30),
            "received_at": NOW, "min_fill_seconds": 3.0, "domain": "acme.example",
            "disposable_domains": {"mailinator.com"},
        }  # fmt: skip
        return spam_reasons(**{**values, **overrides})  # type: ignore[arg-type]

    assert reasons() == []
    assert reasons(honeypot="http://spam.biz") == ["honeypot"]
    assert reasons(form_started_at=NOW - timedelta(seconds=1)) == ["too_fast"]
    assert reasons(form_started_at=None) == []
    assert reasons(domain="mailinator.com") == ["disposable_domain"]


def test_a_form_redirects_only_to_its_listed_thank_you_urls() -> None:
    form = Form.model_validate(
        {"thank_you_urls": ["https://acme.example/thanks", "https://acme.example/merci"]}
    )

    assert form.thank_you_url(None) == "https://acme.example/thanks"
    assert form.thank_you_url("https://acme.example/merci") == "https://acme.example/merci"
    for refused in (
        "https://evil.example/thanks",
        "https://acme.example/thanks/../../evil",
        "https://acme.example.evil.example/thanks",
        "javascript:alert(1)",
        "//evil.example",
    ):
        assert form.thank_you_url(refused) is None, refused


@given(secret=st.text(min_size=1), body=st.binary(), timestamp=st.integers(0, 2**31))
def test_a_signature_verifies_only_for_its_own_body_and_secret(
    secret: str, body: bytes, timestamp: int
) -> None:
    header = sign(secret, timestamp, body)

    assert verify(header, secret=secret, body=body, now=timestamp, tolerance=300)
    with pytest.raises(SignatureError, match="bad"):
        verify(header, secret=secret, body=body + b"x", now=timestamp, tolerance=300)
    with pytest.raises(SignatureError, match="bad"):
        verify(header, secret=secret + "x", body=body, now=timestamp, tolerance=300)
    with pytest.raises(SignatureError, match="stale"):
        verify(header, secret=secret, body=body, now=timestamp + 301, tolerance=300)


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=x,v1=abc", "garbage"])
def test_missing_or_malformed_signatures_are_refused(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify(header, secret="s", body=b"{}", now=0, tolerance=300)


@pytest.mark.parametrize(
    ("current", "action", "expected"),
    [
        (None, "opened", "open"),
        ("open", "updated", "open"),
        ("open", "won", "won"),
        ("open", "lost", "lost"),
        ("lost", "opened", "open"),
        ("won", "opened", "open"),
        ("open", "opened", IllegalTransition),
        (None, "won", IllegalTransition),
        ("lost", "won", IllegalTransition),
        ("won", "updated", IllegalTransition),
    ],
)
def test_deal_transitions(current: str | None, action: str, expected: object) -> None:
    if expected is IllegalTransition:
        with pytest.raises(IllegalTransition):
            next_deal_status(current, action)  # type: ignore[arg-type]
    else:
        assert next_deal_status(current, action) == expected  # type: ignore[arg-type]


def test_account_transitions() -> None:
    assert next_account_status(None, "activated") == "active"
    assert next_account_status("active", "arr_changed") == "active"
    assert next_account_status("active", "churned") == "churned"
    assert next_account_status("churned", "activated") == "active"
    for current, action in [(None, "churned"), ("churned", "arr_changed"), ("active", "activated")]:
        with pytest.raises(IllegalTransition):
            next_account_status(current, action)  # type: ignore[arg-type]
