"""HMAC-SHA256 webhook signatures: ``X-Funnel-Signature: t=<unix>,v1=<hex>``.

The signed message is ``<t>.<raw body>``, so neither the timestamp nor the body can be
swapped. Used by lead-intake to verify inbound webhooks and by ``funnel import`` (and
any integration) to sign them.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

SIGNATURE_HEADER = "X-Funnel-Signature"


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that checked out: its digest (the key a replay is recognised by) and
    the first unix second at which it is no longer accepted."""

    digest: str
    invalid_from: int


class SignatureError(ValueError):
    """A signature that is missing, malformed, wrong or outside the tolerance."""


def signature_digest(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Funnel-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={signature_digest(secret, timestamp, body)}"


def verify(header: str | None, *, secret: str, body: bytes, now: int, tolerance: int) -> str:
    """The verified digest (for replay detection), or :class:`SignatureError` saying why."""
    return verify_signature(header, secret=secret, body=body, now=now, tolerance=tolerance).digest


def verify_signature(
    header: str | None, *, secret: str, body: bytes, now: int, tolerance: int
) -> VerifiedSignature:
    """The verified signature, or :class:`SignatureError` saying why.

    A signature is accepted while ``now`` (whole unix seconds) is within ``tolerance`` of
    its timestamp, either way: a receiver must remember it as seen until
    :attr:`VerifiedSignature.invalid_from`, or a replay of it would be accepted.
    """
    if not header:
        raise SignatureError("missing signature")
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, separator, value = item.strip().partition("=")
        if not separator:
            raise SignatureError("malformed signature")
        parts.setdefault(name, value)
    try:
        timestamp = int(parts["t"])
        digest = parts["v1"]
    except (KeyError, ValueError) as error:
        raise SignatureError("malformed signature") from error
    if abs(now - timestamp) > tolerance:
        raise SignatureError("stale signature")
    expected = signature_digest(secret, timestamp, body)
    if not hmac.compare_digest(expected, digest.lower()):
        raise SignatureError("bad signature")
    return VerifiedSignature(digest=expected, invalid_from=timestamp + tolerance + 1)
