"""Sending to people and systems outside the platform: email over SMTP, JSON over HTTP.

The transport only, shared by handoff's notifier (rep and manager notifications) and
metrics' review pack: each service keeps its own durable queue of what to send and its
own retries, and hands each attempt to :func:`send_email` or :func:`post_json`, which
say how it went as an :class:`Outcome`:

- delivered (``error`` None);
- a failure that may pass (a timeout, a refused connection, HTTP 408/425/429/5xx, an
  SMTP 4xx): worth another try later;
- a refusal that will not pass (an HTTP 4xx or a redirect, an address the mail server
  bounces with 5xx): ``park``, never retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

import aiosmtplib
import httpx
from pydantic import BaseModel, Field, SecretStr

# Worth another try: the receiver may be busy, restarting or rate limiting.
_TRANSIENT_HTTP = frozenset({408, 425, 429})

SmtpTls = Literal["starttls", "tls", "none"]


@dataclass(frozen=True)
class Outcome:
    """How one delivery went: ``error`` None is delivered; ``park`` means never again."""

    error: str | None = None
    park: bool = False


DELIVERED = Outcome()


@dataclass(frozen=True)
class SmtpServer:
    """Where email is submitted, as a service's ``*_SMTP_*`` settings name it."""

    host: str
    port: int = 587
    tls: SmtpTls = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    timeout_seconds: float = 10.0


class EmailSettings(BaseModel):
    """The ``*_SMTP_*`` and ``*_EMAIL_FROM`` settings of a service that sends email
    (handoff's notifications, metrics' review pack), each under its service's prefix.

    Email is off until a server is named: no host, no email attempted."""

    smtp_host: str | None = Field(
        default=None, description="SMTP server for the email this service sends; unset: no email"
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port")
    smtp_tls: SmtpTls = Field(
        default="starttls",
        description="`starttls` (port 587), `tls` (implicit TLS, port 465) or `none` "
        "(a local relay only)",
    )
    smtp_username: str | None = Field(default=None, description="SMTP login, if any")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password, if any")
    smtp_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="per-message SMTP timeout"
    )
    email_from: str = Field(
        default="Shared Funnel <funnel@localhost>",
        min_length=3,
        max_length=200,
        description="the From of the email this service sends",
    )

    @property
    def smtp(self) -> SmtpServer | None:
        """Where email is submitted; None: email is not configured."""
        if self.smtp_host is None:
            return None
        return SmtpServer(
            host=self.smtp_host,
            port=self.smtp_port,
            tls=self.smtp_tls,
            username=self.smtp_username,
            password=self.smtp_password,
            timeout_seconds=self.smtp_timeout_seconds,
        )


def http_outcome(status: int) -> Outcome:
    """A receiver's HTTP answer, classified."""
    if 200 <= status < 300:
        return DELIVERED
    error = f"HTTP {status}"
    return Outcome(error, park=status < 500 and status not in _TRANSIENT_HTTP)


def smtp_outcome(error: aiosmtplib.SMTPException) -> Outcome:
    """A mail server's refusal, classified: 5xx is permanent (a bounce), 4xx may pass."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        return Outcome(f"SMTP {min(codes)} recipient refused", park=min(codes) >= 500)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return Outcome(f"SMTP {error.code}", park=error.code >= 500)
    return Outcome(type(error).__name__)


async def send_email(message: EmailMessage, server: SmtpServer) -> Outcome:
    """Submit ``message`` (its From and To headers say who) to ``server``."""
    try:
        await aiosmtplib.send(
            message,
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password.get_secret_value() if server.password else None,
            use_tls=server.tls == "tls",
            start_tls=server.tls == "starttls",
            timeout=server.timeout_seconds,
        )
    except aiosmtplib.SMTPException as error:
        return smtp_outcome(error)
    except OSError as error:
        return Outcome(type(error).__name__)
    return DELIVERED


async def post_json(
    client: httpx.AsyncClient, url: str, content: bytes, headers: Mapping[str, str]
) -> Outcome:
    """POST ``content`` (JSON, already encoded) to ``url``; a redirect is not followed
    (the client is made with ``follow_redirects=False``) and counts as a refusal."""
    try:
        answer = await client.post(
            url, content=content, headers={"content-type": "application/json", **headers}
        )
    except httpx.HTTPError as error:
        return Outcome(type(error).__name__)
    return http_outcome(answer.status_code)
