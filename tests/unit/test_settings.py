from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from funnel_common.settings import CommonSettings, require_real_secret, require_real_secrets
from lead_intake.settings import IntakeSettings
from metrics.settings import MetricsSettings

REAL = {
    "a": "Vq3kR9xZ2mT7bW4nY8cF1hJ6pL0sD5gA",
    "b": "Hn4Qe8Wm2Tz6Ky0Lp3Xc7Vb1Nf5Rg9Js",
    "c": "Cz2Mv6Bx0Nq4Lw8Kr1Ht5Gy9Fp3Dj7Se",
    "d": "Tw9Ly3Kp7Hx1Gq5Fn0Dm4Cs8Bv2Zr6Aj",
    "e": "Pk5Rb1Mx9Tq3Wn7Lc2Hz6Jd0Vg4Fy8Se",
}


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
    assert require_real_secret(placeholder, name="x", environment="test") is placeholder
    with pytest.raises(ValueError, match="real secret"):
        require_real_secret(placeholder, name="x", environment="production")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "is blank"),
        ("   ", "is blank"),
        ("Vq3kR9xZ2mT7bW4nY8cF1hJ6pL0sD5", "shorter than 32 bytes"),
        ("a-long-enough-value-CHANGE-ME-before-going-live", "looks like a placeholder"),
        ("our-Placeholder-value-for-the-webhook-secret", "looks like a placeholder"),
        ("Dev-auth-secret-for-a-dev-cluster-0123456789", "looks like a placeholder"),
        ("SECRET-0123456789-0123456789-0123456789", "looks like a placeholder"),
        ("example-0123456789-0123456789-0123456789", "looks like a placeholder"),
        # A Standard Webhooks secret is judged by the key it encodes too.
        ("whsec_ZGV2LWhhbmRvZmYtd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l", "looks like a placeholder"),
    ],
)
def test_blank_short_and_placeholder_secrets_are_refused_in_production(
    value: str, why: str
) -> None:
    with pytest.raises(ValueError, match=f"FUNNEL_X (is )?{why}"):
        require_real_secrets({"FUNNEL_X": SecretStr(value)}, environment="production")


def test_one_value_for_two_integrations_is_refused_naming_both_not_the_value() -> None:
    secrets = {"FUNNEL_A": SecretStr(REAL["a"]), "FUNNEL_B": SecretStr(REAL["a"])}

    with pytest.raises(ValueError, match="FUNNEL_B has the same value as FUNNEL_A") as refused:
        require_real_secrets(secrets, environment="production")
    assert REAL["a"] not in str(refused.value)


def test_intake_refuses_its_auth_secret_reused_for_a_webhook_in_production() -> None:
    common = CommonSettings(
        environment="production",
        auth_secret=SecretStr(REAL["a"]),
        personal_data_key=SecretStr(REAL["e"]),
    )
    distinct = {
        "crm_webhook_secret": SecretStr(REAL["b"]),
        "billing_webhook_secret": SecretStr(REAL["c"]),
        "import_secret": SecretStr(REAL["d"]),
    }

    assert IntakeSettings.model_validate({"common": common, **distinct})
    with pytest.raises(ValidationError, match="FUNNEL_INTAKE_CRM_WEBHOOK_SECRET has the same"):
        IntakeSettings.model_validate(
            {"common": common, **distinct, "crm_webhook_secret": SecretStr(REAL["a"])}
        )


def test_the_personal_data_key_is_required_where_personal_data_is_read() -> None:
    # lead-intake and handoff read personal data: a placeholder key is refused there in
    # production; metrics never reads any and is not given the key.
    common = CommonSettings(environment="production", auth_secret=SecretStr(REAL["a"]))
    distinct = {
        "crm_webhook_secret": SecretStr(REAL["b"]),
        "billing_webhook_secret": SecretStr(REAL["c"]),
        "import_secret": SecretStr(REAL["d"]),
    }

    with pytest.raises(ValidationError, match="FUNNEL_PERSONAL_DATA_KEY") as refused:
        IntakeSettings.model_validate({"common": common, **distinct})
    assert "dev-personal" not in str(refused.value)
    assert MetricsSettings.model_validate({"common": common})
