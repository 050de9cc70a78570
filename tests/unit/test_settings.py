from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from funnel_common.settings import CommonSettings, require_real_secret


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNEL_KAFKA_TOPIC_PREFIX", "staging.")
    monkeypatch.setenv("FUNNEL_KAFKA_TOPIC_PARTITIONS", "6")

    settings = CommonSettings()

    assert settings.topic("funnel.leads") == "staging.funnel.leads"
    assert settings.kafka_topic_partitions == 6


def test_unknown_reporting_timezone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        CommonSettings(reporting_timezone="Mars/Olympus")


def test_placeholder_secret_is_refused_in_production_only() -> None:
    placeholder = SecretStr("dev-not-a-secret")

    assert require_real_secret(placeholder, name="x", environment="development") is placeholder
    with pytest.raises(ValueError, match="real secret"):
        require_real_secret(placeholder, name="x", environment="production")
