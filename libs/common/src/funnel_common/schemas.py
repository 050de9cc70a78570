"""JSON Schemas of the event catalogue, generated into ``libs/common/schemas``.

``python -m funnel_common.schemas write`` regenerates them (``make schemas``);
``check`` exits non-zero when a model and its checked-in schema differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from funnel_common.events import EVENT_BY_TYPE

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def render_schemas() -> dict[str, str]:
    """File name → JSON Schema text, one per event type."""
    rendered = {}
    for event_type, model in sorted(EVENT_BY_TYPE.items()):
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"https://shared-funnel.dev/schemas/{event_type}.json"
        rendered[f"{event_type}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def drift(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing, stale or no longer generated."""
    expected = render_schemas()
    present = {path.name for path in directory.glob("*.json")}
    stale = [
        name
        for name, text in expected.items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]
    return sorted(stale + sorted(present - expected.keys()))


def write(directory: Path = SCHEMA_DIR) -> None:
    """Regenerate every schema file and remove those of events no longer in the catalogue."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = render_schemas()
    for path in directory.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (directory / name).write_text(text)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command == "write":
        write()
    else:
        differing = drift()
        if differing:
            sys.stderr.write("schemas differ from the models: " + ", ".join(differing) + "\n")
            sys.exit(1)
