"""lead-intake settings, env prefix ``FUNNEL_INTAKE_``."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnel_common.settings import CommonSettings, require_real_secrets
from lead_intake.connectors.hubspot import HubSpotSettings
from lead_intake.connectors.salesforce import SalesforceSettings
from lead_intake.connectors.stripe import StripeSettings

# services/lead-intake/src/lead_intake/settings.py -> the repository root.
REPO_CONFIG = Path(__file__).resolve().parents[4] / "config"

DISPOSABLE_DOMAINS = (
    "mailinator.com",
    "guerrillamail.com",
    "10minutemail.com",
    "tempmail.com",
    "yopmail.com",
    "trashmail.com",
    "sharklasers.com",
    "getnada.com",
    "dispostable.com",
    "maildrop.cc",
)


class IntakeSettings(BaseSettings):
    """lead-intake settings, env prefix ``FUNNEL_INTAKE_``."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_INTAKE_", extra="ignore")

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:15432/funnel",
        description="PostgreSQL (schema `intake`)",
    )

    forms_file: Path = Field(default=REPO_CONFIG / "forms.yaml", description="the forms registry")
    qualification_rules_file: Path = Field(
        default=REPO_CONFIG / "qualification.yaml", description="the MQL rules"
    )

    # One secret per integration; placeholders, short and shared ones are refused in production.
    crm_webhook_secret: SecretStr = Field(
        default=SecretStr("dev-crm-webhook-secret"), description="signs `POST /v1/deals`"
    )
    billing_webhook_secret: SecretStr = Field(
        default=SecretStr("dev-billing-webhook-secret"),
        description="signs `POST /v1/accounts/events`",
    )
    import_secret: SecretStr = Field(
        default=SecretStr("dev-import-secret"), description="signs `funnel import leads` posts"
    )
    signature_tolerance_seconds: int = Field(
        default=300, ge=1, description="the oldest a webhook signature may be"
    )

    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="larger request bodies get 413"
    )
    connector_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="larger connector deliveries get 413 (a Salesforce message holds up to "
        "100 opportunities, a HubSpot delivery up to 100 events)",
    )
    rate_limit_per_client: int = Field(
        default=20, ge=1, description="unsigned lead posts per client per window (then 429)"
    )
    rate_limit_window_seconds: int = Field(default=60, ge=1, description="the rate limit's window")
    # Behind a load balancer, set FUNNEL_TRUSTED_PROXIES (every service's): the client
    # address is decided there, once.
    min_fill_seconds: float = Field(
        default=3.0, ge=0, description="faster form submissions are flagged `too_fast`"
    )
    disposable_domains: list[str] = Field(
        default_factory=lambda: list(DISPOSABLE_DOMAINS),
        description="JSON list; addresses there are flagged `disposable_domain`",
    )
    dedupe_window_days: int = Field(
        default=30, ge=0, description="the same email or phone within it is merged"
    )
    idempotency_key_ttl_hours: int = Field(
        default=24, ge=1, description="how long an `Idempotency-Key` replays the first answer"
    )
    # Group commit of POST /v1/leads: submissions that arrive while every writer is
    # busy go together in the next batch (at most this many). A lone submission is
    # written at once unless a wait is set, which only helps a nearly idle service.
    batch_max_size: int = Field(
        default=32,
        ge=1,
        le=1000,
        description="most lead posts written in one transaction (1 turns group commit off)",
    )
    batch_max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description="how long a batch waits for company; 0: written as soon as a writer is free",
    )
    # Each batch in flight holds one pooled connection.
    batch_max_in_flight: int = Field(
        default=2, ge=1, le=8, description="batches written at the same time"
    )

    hubspot: HubSpotSettings = Field(
        default_factory=HubSpotSettings,
        description="the HubSpot connector (`FUNNEL_INTAKE_HUBSPOT_*`, docs/connectors.md)",
    )
    salesforce: SalesforceSettings = Field(
        default_factory=SalesforceSettings,
        description="the Salesforce connector (`FUNNEL_INTAKE_SALESFORCE_*`)",
    )
    stripe: StripeSettings = Field(
        default_factory=StripeSettings,
        description="the Stripe connector (`FUNNEL_INTAKE_STRIPE_*`)",
    )

    common: CommonSettings = Field(default_factory=CommonSettings)

    @model_validator(mode="after")
    def _real_secrets_outside_development(self) -> Self:
        secrets = {
            "FUNNEL_AUTH_SECRET": self.common.auth_secret,
            "FUNNEL_PERSONAL_DATA_KEY": self.common.personal_data_key,
            "FUNNEL_INTAKE_CRM_WEBHOOK_SECRET": self.crm_webhook_secret,
            "FUNNEL_INTAKE_BILLING_WEBHOOK_SECRET": self.billing_webhook_secret,
            "FUNNEL_INTAKE_IMPORT_SECRET": self.import_secret,
        }
        # A connector's secret matters only where the connector is switched on.
        if self.hubspot.enabled:
            secrets["FUNNEL_INTAKE_HUBSPOT_CLIENT_SECRET"] = self.hubspot.client_secret
        if self.stripe.enabled:
            secrets["FUNNEL_INTAKE_STRIPE_WEBHOOK_SECRET"] = self.stripe.webhook_secret
        # Checked together: one value used for two integrations is refused too.
        require_real_secrets(secrets, environment=self.common.environment)
        return self
