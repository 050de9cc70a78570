"""A bad rules or forms file stops lead-intake before it serves anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lead_intake.configfile import ConfigFileError
from lead_intake.settings import IntakeSettings
from lead_intake.web import create_app


def test_a_bad_rules_file_stops_start_up_naming_the_line(tmp_path: Path) -> None:
    rules = tmp_path / "qualification.yaml"
    rules.write_text('version: "1"\nmql_threshold: 50\nintent:\n  - rule: demo\n    points: x\n')

    with pytest.raises(ConfigFileError, match=r"qualification.yaml, line 5: intent.0.points"):
        create_app(IntakeSettings(qualification_rules_file=rules))


def test_a_forms_file_without_the_default_form_stops_start_up(tmp_path: Path) -> None:
    forms = tmp_path / "forms.yaml"
    forms.write_text("forms:\n  landing:\n    form_type: pricing\n")

    with pytest.raises(ConfigFileError, match="'default' form is required"):
        create_app(IntakeSettings(forms_file=forms))


REAL_AUTH_SECRET = "Vq3kR9xZ2mT7bW4nY8cF1hJ6pL0sD5gA"  # 32 bytes, not a placeholder


def test_placeholder_webhook_secrets_are_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="FUNNEL_INTAKE_CRM_WEBHOOK_SECRET"):
        IntakeSettings.model_validate(
            {"common": {"environment": "production", "auth_secret": REAL_AUTH_SECRET}}
        )
