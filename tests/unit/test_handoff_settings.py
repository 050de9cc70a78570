from __future__ import annotations

import pytest
from pydantic import SecretStr

from funnel_common.settings import CommonSettings
from handoff.notify import sign, verify
from handoff.settings import HandoffSettings


def test_handoff_settings_come_from_their_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNEL_HANDOFF_SCAN_INTERVAL_SECONDS", "0.1")
    monkeypatch.setenv("FUNNEL_HANDOFF_WEBHOOK_MAX_ATTEMPTS", "3")

    settings = HandoffSettings()

    assert (settings.scan_interval_seconds, settings.webhook_max_attempts) == (0.1, 3)


def test_the_placeholder_webhook_secret_holds_notifications_in_production_only() -> None:
    production = CommonSettings(environment="production", auth_secret=SecretStr("real-one"))

    assert not HandoffSettings(common=production).webhooks_can_be_signed
    assert HandoffSettings(
        common=production, webhook_secret=SecretStr("real")
    ).webhooks_can_be_signed
    assert HandoffSettings(common=CommonSettings(environment="test")).webhooks_can_be_signed


def test_webhook_signatures_cover_body_and_time() -> None:
    secret = SecretStr("s3cret")
    header = sign(secret, b'{"a":1}', 1_700_000_000)

    assert verify(secret, b'{"a":1}', header)
    assert not verify(secret, b'{"a":2}', header)
    assert not verify(SecretStr("other"), b'{"a":1}', header)
    assert not verify(secret, b'{"a":1}', header.replace("t=1700000000", "t=1700000001"))
    assert not verify(secret, b'{"a":1}', "garbage")
