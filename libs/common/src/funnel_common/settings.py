"""Settings shared by every service, read from the environment with prefix ``FUNNEL_``.

Service settings embed :class:`CommonSettings` and add their own prefix
(``FUNNEL_INTAKE_``, ``FUNNEL_HANDOFF_``, ``FUNNEL_METRICS_``). Settings are built
inside factories, never at import.
"""

from __future__ import annotations

import base64
import contextlib
from ipaddress import ip_network
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]

PLACEHOLDER_SECRET_PREFIX = "dev-"
MIN_SECRET_BYTES = 32
# What a secret copied from a README, a sample .env or a default looks like (any case).
_PLACEHOLDER_WORDS = (
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "replace_me",
    "placeholder",
    "example",
    "dummy",
    "insecure",
)
_PLACEHOLDER_STARTS = ("dev-", "dev_", "test-", "test_", "secret", "password", "example")
STANDARD_WEBHOOKS_PREFIX = "whsec_"


class CommonSettings(BaseSettings):
    """Platform-wide settings: broker, logging, telemetry, reporting currency and zone."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_", extra="ignore")

    environment: Environment = Field(
        default="development",
        description="`development`, `test` or `production`; production refuses blank, short, "
        "placeholder-looking and shared secrets",
    )

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="broker addresses, comma-separated"
    )
    # The embedded Tansu broker keeps records in memory and loses them all when it dies;
    # Apache Kafka does not. Everything that works around that loss (see kafka.py) runs
    # only where this is set, which `funnel dev` and the tests do for Tansu alone.
    kafka_volatile_broker: bool = Field(
        default=False,
        description="the broker loses its records when it restarts (the embedded broker): the "
        "relay keeps sent outbox rows and publishes them again after a loss; off for Apache Kafka",
    )
    kafka_enable_idempotence: bool = Field(
        default=True,
        description="idempotent producer (no duplicates from the producer's own retries); the "
        "embedded broker lacks it, so `funnel dev` turns it off there",
    )
    # Lets tests (and several platforms on one broker) use their own topics.
    kafka_topic_prefix: str = Field(
        default="",
        description="prefix for topic and consumer-group names (several platforms on one broker)",
    )
    kafka_topic_partitions: int = Field(
        default=3, ge=1, le=256, description="partitions per topic when topics are created"
    )
    kafka_replication_factor: int = Field(
        default=1, ge=1, description="replication factor when topics are created (3 in production)"
    )
    # The consumer's timing defaults are Kafka's (and aiokafka's); the embedded broker's
    # short ones are set by `funnel dev` and the test fixtures (EmbeddedBroker.CLIENT_SETTINGS).
    kafka_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        le=30_000,
        description="how long the broker may hold a fetch that has no records yet (Kafka's "
        "default; 20 on the embedded broker, which scans a partition per fetch)",
    )
    kafka_request_timeout_ms: int = Field(
        default=5000, ge=100, description="producer and admin request timeout"
    )
    kafka_session_timeout_ms: int = Field(
        default=10_000,
        ge=500,
        description="consumer session: a member that stops heartbeating this long loses its "
        "partitions (2000 on the embedded broker, which ignores LeaveGroup)",
    )
    kafka_heartbeat_interval_ms: int = Field(
        default=3000, ge=100, description="consumer heartbeat (300 on the embedded broker)"
    )
    kafka_rebalance_timeout_ms: int = Field(
        default=30_000,
        ge=100,
        description="how long a rebalance waits for members to rejoin (1000 on the embedded "
        "broker)",
    )

    outbox_poll_interval_seconds: float = Field(
        default=1.0, gt=0, description="relay polling fallback when no NOTIFY arrives"
    )
    outbox_batch_size: int = Field(
        default=500, ge=1, description="outbox rows published (and, pruning, deleted) per round"
    )
    outbox_retention_seconds: float = Field(
        default=86_400.0,
        gt=0,
        description="on a durable broker, sent outbox rows older than this are deleted (the "
        "broker keeps the events); a volatile broker's rows are kept to publish again",
    )
    consumer_max_attempts: int = Field(
        default=5, ge=1, description="handler attempts before an event is parked in `funnel.dlq`"
    )
    consumer_retry_backoff_seconds: float = Field(
        default=0.2,
        ge=0,
        description="first retry delay of a failing event (doubles each attempt, with jitter)",
    )

    log_level: str = Field(default="INFO", description="log level")
    log_format: Literal["json", "text"] = Field(
        default="json", description="`json` lines, or `text` for humans"
    )

    otel_exporter: Literal["none", "otlp", "console"] = Field(
        default="none", description="tracing exporter: `none`, `otlp` or `console`"
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP endpoint of the trace collector"
    )

    reporting_currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$", description="the one currency money is reported in"
    )
    reporting_timezone: str = Field(
        default="UTC", description="IANA time zone of the reporting quarters"
    )

    # A frozen PostgreSQL (a stopped server, a network partition) answers nothing: without
    # these bounds a write waits out the kernel's TCP timeout, minutes, holding its client.
    db_acquire_timeout_seconds: float = Field(
        default=3.0,
        gt=0,
        le=60,
        description="longest wait for a pooled PostgreSQL connection (and for returning "
        "it); then 503",
    )
    db_statement_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="longest a PostgreSQL statement may take before the request gets 503",
    )

    http_max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="larger request bodies get 413, before anything reads them (a "
        "service may set its own)",
    )
    # uvicorn runs with --no-proxy-headers (funnel dev, the images, the manifests): the
    # client address is decided here, once, for every service.
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="JSON list of proxy addresses or networks (CIDR) whose "
        "`X-Forwarded-For` / `X-Forwarded-Proto` are believed; empty: the peer is the client",
    )

    # The placeholder works in development and tests only.
    auth_secret: SecretStr = Field(
        default=SecretStr("dev-auth-secret-change-me"),
        description="signs the API's bearer tokens; must be set in production",
    )
    # The services that read personal data share it: lead-intake wraps each person's
    # data key with it, handoff and metrics unwrap the copies they keep (handoff to show
    # profiles and notes, metrics the review pack's example notes; funnel_common.personal).
    # Each refuses a placeholder in production (its own settings' secret checks).
    personal_data_key: SecretStr = Field(
        default=SecretStr("dev-personal-data-key-change-me"),
        description="key-encryption key of the per-person data keys that seal personal "
        "data (docs/privacy.md); the same in lead-intake, handoff and metrics, must be set "
        "there in production, and kept: without it no sealed personal data can be read",
    )

    @model_validator(mode="after")
    def _real_secrets_in_production(self) -> CommonSettings:
        require_real_secret(
            self.auth_secret, name="FUNNEL_AUTH_SECRET", environment=self.environment
        )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ip_network(entry, strict=False)
            except ValueError as error:
                # "*" too: trusting every sender's X-Forwarded-For is what lets a client
                # pick its own address and walk around the rate limit.
                raise ValueError(f"{entry!r} is not an IP address or network") from error
        return value

    @field_validator("reporting_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    def topic(self, name: str) -> str:
        """The physical topic for a contract topic name, with this deployment's prefix."""
        return f"{self.kafka_topic_prefix}{name}"


def _key_texts(value: str) -> list[str]:
    """The secret as written and, for a Standard Webhooks secret, the key it encodes."""
    texts = [value]
    if value.startswith(STANDARD_WEBHOOKS_PREFIX):
        encoded = value.removeprefix(STANDARD_WEBHOOKS_PREFIX)
        with contextlib.suppress(ValueError):
            texts.append(base64.b64decode(encoded + "==").decode("utf-8", errors="replace"))
    return texts


def secret_problem(value: str) -> str | None:
    """Why ``value`` is not a real secret (blank, short, placeholder-looking), or None."""
    if not value.strip():
        return "is blank"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    for text in _key_texts(value):
        lowered = text.lower()
        if any(word in lowered for word in _PLACEHOLDER_WORDS) or lowered.startswith(
            _PLACEHOLDER_STARTS
        ):
            return "looks like a placeholder"
    return None


def require_real_secrets(secrets: dict[str, SecretStr], *, environment: Environment) -> None:
    """Outside development and tests, refuse a blank, short (< 32 bytes) or
    placeholder-looking secret, and one value used for two secrets (a key shared by two
    integrations lets either forge the other's messages). ``secrets`` maps each
    setting's environment name to its value; the error names the settings, never a value.
    """
    if environment != "production":
        return
    problems = []
    seen: dict[str, str] = {}
    for name, secret in secrets.items():
        value = secret.get_secret_value()
        problem = secret_problem(value)
        if problem is not None:
            problems.append(f"{name} {problem}")
        for text in _key_texts(value):
            if text in seen and seen[text] != name:
                problems.append(f"{name} has the same value as {seen[text]}")
            seen.setdefault(text, name)
    if problems:
        raise ValueError(
            "real secrets are required in production: " + "; ".join(dict.fromkeys(problems))
        )


def require_real_secret(secret: SecretStr, *, name: str, environment: Environment) -> SecretStr:
    """:func:`require_real_secrets` for one secret."""
    require_real_secrets({name: secret}, environment=environment)
    return secret
