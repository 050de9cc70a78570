"""Pure checks on a submission: normalisation for dedupe, and spam signals."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from datetime import datetime

import phonenumbers

HONEYPOT = "honeypot"
TOO_FAST = "too_fast"
DISPOSABLE_DOMAIN = "disposable_domain"


def normalise_email(email: str) -> str:
    """The dedupe key of an email: NFKC-normalised (fullwidth letters are the ASCII ones),
    trimmed and lower-cased (mailbox names are, in practice)."""
    return unicodedata.normalize("NFKC", email).strip().lower()


def email_domain(email: str) -> str:
    return email.rpartition("@")[2].lower()


def normalise_phone(phone: str, region: str | None = None) -> str:
    """The number in E.164 (``+15550104515``), the dedupe key of a phone; ValueError for
    anything that cannot be a phone number.

    Parsed by ``phonenumbers`` (Google's libphonenumber metadata): ``+1 (555) 010-4515``,
    ``1 555 010 4515`` and ``001 555 010 4515`` are one number. A national number
    (``020 7946 0018``) needs ``region``, the lead's country; without one, the digits are
    read as starting with the country code.
    """
    text = phone.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    attempts = [(text, None)] if text.startswith("+") else [(text, region), ("+" + text, None)]
    for candidate, candidate_region in attempts:
        if candidate_region is None and not candidate.startswith("+"):
            continue
        try:
            number = phonenumbers.parse(candidate, candidate_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise ValueError(
        "not a phone number: give it with its country code (+44 20 7946 0018), or the "
        "lead's country"
    )


def is_disposable(domain: str, disposable_domains: Collection[str]) -> bool:
    """True for a listed domain and any subdomain of one (``x.mailinator.com``)."""
    labels = domain.lower().rstrip(".").split(".")
    return any(".".join(labels[start:]) in disposable_domains for start in range(len(labels)))


def spam_reasons(
    *,
    honeypot: str | None,
    form_started_at: datetime | None,
    received_at: datetime,
    min_fill_seconds: float,
    domain: str,
    disposable_domains: Collection[str],
) -> list[str]:
    """Why a submission looks like spam (empty: it does not). Spam is kept, flagged."""
    reasons = []
    if honeypot:
        reasons.append(HONEYPOT)
    if (
        form_started_at is not None
        and (received_at - form_started_at).total_seconds() < min_fill_seconds
    ):
        reasons.append(TOO_FAST)
    if is_disposable(domain, disposable_domains):
        reasons.append(DISPOSABLE_DOMAIN)
    return reasons


def rate_limit_retry_after(hits_in_window: int, limit: int, window_seconds: int) -> int | None:
    """Seconds to wait when a client has used its allowance, else None."""
    return window_seconds if hits_in_window >= limit else None
