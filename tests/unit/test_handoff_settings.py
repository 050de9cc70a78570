from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from funnel_common.settings import CommonSettings
from handoff.notify import sign, verify
from handoff.settings import HandoffSettings


def test_handoff_settings_come_from_their_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNEL_HANDOFF_SCAN_INTERVAL_SECONDS", "0.1")
    monkeypatch.setenv("FUNNEL_HANDOFF_WEBHOOK_MAX_ATTEMPTS", "3")

    settings = HandoffSettings()

    assert (settings.scan_interval_seconds, settings.webhook_max_attempts) == (0.1, 3)


def test_the_placeholder_webhook_secret_is_refused_in_production() -> None:
    production = CommonSettings(environment="production", auth_secret=SecretStr("real-one"))

    with pytest.raises(ValidationError, match="FUNNEL_HANDOFF_WEBHOOK_SECRET"):
        HandoffSettings(common=production)
    assert HandoffSettings(common=production, webhook_secret=SecretStr("also-real"))


def test_webhook_signatures_cover_body_and_time() -> None:
    secret = SecretStr("s3cret")
    header = sign(secret, b'{"a":1}', 1_700_000_000)

    assert verify(secret, b'{"a":1}', header)
    assert not verify(secret, b'{"a":2}', header)
    assert not verify(SecretStr("other"), b'{"a":1}', header)
    assert not verify(secret, b'{"a":1}', header.replace("t=1700000000", "t=1700000001"))
    assert not verify(secret, b'{"a":1}', "garbage")
