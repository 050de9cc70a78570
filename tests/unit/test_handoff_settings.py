from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr, ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from funnel_common.settings import CommonSettings
from handoff.notifier import standard_webhook
from handoff.settings import HandoffSettings

AUTH = "Vq3kR9xZ2mT7bW4nY8cF1hJ6pL0sD5gA-auth"
WEBHOOK = "whsec_" + base64.b64encode(b"k7Hq2Zp9Xw4Lm8Nc3Vb6Rt1Yf5Gd0Js2").decode()


PERSONAL = "Pk5Rb1Mx9Tq3Wn7Lc2Hz6Jd0Vg4Fy8Se-personal"


def production(**secrets: str) -> HandoffSettings:
    common = CommonSettings(
        environment="production",
        auth_secret=SecretStr(secrets["auth"]),
        personal_data_key=SecretStr(PERSONAL),
    )
    return HandoffSettings(common=common, webhook_secret=SecretStr(secrets["webhook"]))


def test_handoff_settings_come_from_their_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNEL_HANDOFF_SCAN_INTERVAL_SECONDS", "0.1")
    monkeypatch.setenv("FUNNEL_HANDOFF_WEBHOOK_MAX_ATTEMPTS", "3")

    settings = HandoffSettings()

    assert (settings.scan_interval_seconds, settings.webhook_max_attempts) == (0.1, 3)


def test_links_work_out_of_the_box_and_email_is_off_until_a_server_is_named() -> None:
    settings = HandoffSettings()

    assert settings.public_url == "http://127.0.0.1:8002"
    assert settings.smtp_host is None


def test_production_refuses_the_default_webhook_secret_and_takes_a_real_one() -> None:
    with pytest.raises(ValidationError, match="FUNNEL_HANDOFF_WEBHOOK_SECRET looks like"):
        HandoffSettings(
            common=CommonSettings(environment="production", auth_secret=SecretStr(AUTH))
        )

    assert production(auth=AUTH, webhook=WEBHOOK).webhook_secret.get_secret_value() == WEBHOOK


def test_production_refuses_the_auth_secret_reused_as_the_webhook_secret() -> None:
    with pytest.raises(ValidationError, match="same value as FUNNEL_AUTH_SECRET"):
        production(auth=AUTH, webhook=AUTH)


def test_development_keeps_its_placeholders() -> None:
    assert HandoffSettings(common=CommonSettings(environment="development"))
    assert HandoffSettings(common=CommonSettings(environment="test"))


def test_webhooks_verify_with_the_standard_webhooks_library_as_receivers_have_it() -> None:
    body = b'{"type":"handoff.assigned"}'
    sent_at = datetime.now(UTC)
    signature = standard_webhook(SecretStr(WEBHOOK)).sign("ntf_1", sent_at, body)
    headers = {
        "webhook-id": "ntf_1",
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signature,
    }

    assert Webhook(WEBHOOK).verify(body, headers) == {"type": "handoff.assigned"}
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK).verify(b'{"type":"handoff.breached"}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another key of 24 bytes!").decode()).verify(
            body, headers
        )


def test_a_secret_not_in_the_standard_format_signs_with_its_bytes() -> None:
    secret = "an operator's own secret of enough bytes"
    sent_at = datetime.now(UTC)
    signature = standard_webhook(SecretStr(secret)).sign("ntf_2", sent_at, b"{}")
    headers = {
        "webhook-id": "ntf_2",
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signature,
    }

    assert Webhook(secret.encode()).verify(b"{}", headers) == {}
