"""docs/settings.md is generated from the settings models and kept in step with them."""

from __future__ import annotations

from funnel_tools import settings_doc


def test_the_settings_reference_matches_the_models() -> None:
    assert settings_doc.PAGE.read_text() == settings_doc.render(), "run `make settings-doc`"


def test_every_setting_says_what_it_is_for() -> None:
    undocumented = [
        f"{model.__name__}.{name}"
        for _, model, _ in settings_doc.SECTIONS
        for name, info in model.model_fields.items()
        if name != "common" and not info.description
    ]
    assert undocumented == []
