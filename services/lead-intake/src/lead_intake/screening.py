"""Pure checks on a submission: normalisation for dedupe, and spam signals."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime

HONEYPOT = "honeypot"
TOO_FAST = "too_fast"
DISPOSABLE_DOMAIN = "disposable_domain"

_PHONE_NOISE = re.compile(r"[\s().\-/]")


def normalise_email(email: str) -> str:
    """The dedupe key of an email: trimmed and lower-cased (mailbox names are, in practice)."""
    return email.strip().lower()


def email_domain(email: str) -> str:
    return email.rpartition("@")[2].lower()


def normalise_phone(phone: str) -> str:
    """Digits with an optional leading +; raises ValueError for anything not phone-shaped."""
    compact = _PHONE_NOISE.sub("", phone.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    digits = compact.removeprefix("+")
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise ValueError("phone must have 7 to 15 digits, optionally with a leading +")
    return compact


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
    if domain in disposable_domains:
        reasons.append(DISPOSABLE_DOMAIN)
    return reasons


def rate_limit_retry_after(hits_in_window: int, limit: int, window_seconds: int) -> int | None:
    """Seconds to wait when a client has used its allowance, else None."""
    return window_seconds if hits_in_window >= limit else None
