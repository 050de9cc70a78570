"""The settings reference, ``docs/settings.md``, generated from the pydantic models.

``python -m funnel_tools.settings_doc write`` (``make settings-doc``) writes it; a test
fails when a model and the checked-in page differ, as for the event schemas.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from funnel_common.settings import CommonSettings
from funnel_tools.dev import DevSettings
from funnel_tools.importer import ImportSettings
from handoff.settings import HandoffSettings
from lead_intake.connectors.hubspot import HubSpotSettings
from lead_intake.connectors.salesforce import SalesforceSettings
from lead_intake.connectors.stripe import StripeSettings
from lead_intake.settings import IntakeSettings
from metrics.settings import MetricsSettings

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "settings.md"

SECTIONS: list[tuple[str, type[BaseSettings], str]] = [
    ("Every service", CommonSettings, "Read by all three services, web and worker alike."),
    ("lead-intake", IntakeSettings, "Forms, qualification, webhooks and imports."),
    ("lead-intake: HubSpot", HubSpotSettings, "The HubSpot connector (docs/connectors.md)."),
    ("lead-intake: Salesforce", SalesforceSettings, "The Salesforce connector."),
    ("lead-intake: Stripe", StripeSettings, "The Stripe connector."),
    ("handoff", HandoffSettings, "Routing, SLA timers and notifications."),
    ("metrics", MetricsSettings, "The funnel figures."),
    ("`funnel dev`", DevSettings, "The embedded platform on a laptop (development only)."),
    ("`funnel import`", ImportSettings, "The CSV importer (development tooling)."),
]


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "(required)"
    else:
        value = info.default
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return "placeholder (`dev-…`)" if secret.startswith("dev-") else "(secret)"
    if isinstance(value, Path):
        value = value.relative_to(ROOT) if value.is_relative_to(ROOT) else value
    if value is None:
        return "unset"
    if value == "":
        return "(empty)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | dict):
        import json

        return f"`{json.dumps(value, separators=(',', ':'))}`"
    return f"`{value}`"


def _rows(model: type[BaseSettings]) -> list[str]:
    prefix = str(model.model_config.get("env_prefix", ""))
    # A model's own settings first, then those it shares with others (e.g. EmailSettings).
    own = model.__annotations__
    fields = sorted(model.model_fields.items(), key=lambda field: field[0] not in own)
    rows = []
    for name, info in fields:
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseSettings):
            continue  # a nested model with its own prefix (e.g. `common`) has its own table
        description = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name.upper()}` | {_default(info)} | {description} |")
    return rows


def render() -> str:
    """The page as it should be."""
    lines = [
        "# Settings reference",
        "",
        "Generated from the pydantic settings models by `make settings-doc`; a test fails",
        "when this page and the models differ. Settings come from the environment. The",
        "defaults are the embedded platform's; production refuses the `dev-` placeholders.",
        "",
    ]
    for title, model, about in SECTIONS:
        lines += [
            f"## {title}",
            "",
            about,
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
            *_rows(model),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[1:] != ["write"]:
        sys.stderr.write("usage: python -m funnel_tools.settings_doc write\n")
        return 2
    PAGE.write_text(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
