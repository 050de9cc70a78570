"""Normalisation, spam signals, form redirects and signatures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from funnel_common.signing import SignatureError, sign, verify, verify_signature
from lead_intake.forms import Form
from lead_intake.screening import is_disposable, normalise_email, normalise_phone, spam_reasons

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


@given(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))
def test_phone_formatting_never_changes_the_dedupe_key(phone: str) -> None:
    spaced = " ".join(phone[i : i + 3] for i in range(0, len(phone), 3))
    try:
        key = normalise_phone(phone)
    except ValueError:
        return  # not a possible number in any country's plan: refused however written

    assert normalise_phone(spaced) == key
    assert normalise_phone(f"{phone[:2]} ({phone[2:5]}) {phone[5:8]}-{phone[8:]}") == key
    assert normalise_phone("00" + phone[1:]) == key
    assert normalise_phone(phone[1:]) == key  # the country code without its plus


@pytest.mark.parametrize(
    ("written", "country"),
    [
        ("+1 (555) 010-4515", None),
        ("1 555 010 4515", None),
        ("001 555 010 4515", None),
        ("+1.555.010.4515", None),
        ("555 010 4515", "US"),
    ],
)
def test_one_number_however_it_is_written_is_one_e164_key(
    written: str, country: str | None
) -> None:
    assert normalise_phone(written, country) == "+15550104515"


def test_a_national_number_is_read_in_the_leads_country() -> None:
    assert normalise_phone("020 7946 0018", "GB") == "+442079460018"
    assert normalise_phone("+44 (20) 7946-0018") == "+442079460018"


@pytest.mark.parametrize("phone", ["call me", "12345", "+1234567890123456789", "12-ab-345678"])
def test_things_that_are_not_phone_numbers_are_refused(phone: str) -> None:
    with pytest.raises(ValueError, match="not a phone number"):
        normalise_phone(phone)


def test_emails_dedupe_case_insensitively_and_by_unicode_compatibility() -> None:
    assert normalise_email("  Ada@Example.COM ") == "ada@example.com"
    # Fullwidth letters look the same and are the same address to a person.
    assert normalise_email("\uff41\uff44\uff41@example.com") == "ada@example.com"
    assert normalise_email("\uff21\uff24\uff21@example.com") == "ada@example.com"


def test_subdomains_of_a_disposable_domain_are_disposable() -> None:
    listed = {"mailinator.com"}

    assert is_disposable("mailinator.com", listed)
    assert is_disposable("x.mailinator.com", listed)
    assert is_disposable("a.b.Mailinator.com.", listed)
    assert not is_disposable("notmailinator.com", listed)
    assert not is_disposable("mailinator.com.example", listed)


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
    assert reasons(domain="spam.mailinator.com") == ["disposable_domain"]


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


@given(timestamp=st.integers(0, 2**31), tolerance=st.integers(1, 3600))
def test_a_signature_is_valid_until_the_second_it_says_and_not_after(
    timestamp: int, tolerance: int
) -> None:
    header = sign("s", timestamp, b"{}")

    verified = verify_signature(header, secret="s", body=b"{}", now=timestamp, tolerance=tolerance)
    last = verify_signature(
        header, secret="s", body=b"{}", now=verified.invalid_from - 1, tolerance=tolerance
    )

    assert last == verified
    with pytest.raises(SignatureError, match="stale"):
        verify(header, secret="s", body=b"{}", now=verified.invalid_from, tolerance=tolerance)


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=x,v1=abc", "garbage"])
def test_missing_or_malformed_signatures_are_refused(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify(header, secret="s", body=b"{}", now=0, tolerance=300)
