"""The lead sources allow-list (config/sources.yaml) is one configuration shared by
lead-intake's forms and metrics: every form's default source and every source the docs
show in an example is on it, so none of them is reported as `other`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from metrics.settings import REPO_CONFIG, MetricsSettings, load_sources

ROOT = REPO_CONFIG.parent
# `"source": "webinar"`, `"utm_source": "newsletter"`, `utm_source=ads`, `source=...`
_EXAMPLE = re.compile(r'"(?:utm_)?source"\s*:\s*"([^"]+)"|\b(?:utm_)?source=([A-Za-z0-9_-]+)')


def allowed() -> set[str]:
    return set(load_sources(REPO_CONFIG / "sources.yaml"))


def documented_sources() -> dict[str, set[str]]:
    """Each doc page (README.md, docs/*.md) and the example sources it shows."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found: dict[str, set[str]] = {}
    for page in pages:
        sources = {one or other for one, other in _EXAMPLE.findall(page.read_text())}
        if sources:
            found[str(page.relative_to(ROOT))] = sources
    return found


def test_every_forms_default_source_is_on_the_allow_list() -> None:
    forms = yaml.safe_load((REPO_CONFIG / "forms.yaml").read_text())["forms"]

    defaults = {name: form.get("default_source", "website") for name, form in forms.items()}

    assert defaults
    assert {name: source for name, source in defaults.items() if source not in allowed()} == {}


def test_every_source_in_the_docs_examples_is_on_the_allow_list() -> None:
    examples = documented_sources()

    assert examples, "the docs show no example source: the pattern no longer matches them"
    assert {
        page: sorted(sources - allowed())
        for page, sources in examples.items()
        if sources - allowed()
    } == {}


def test_metrics_reads_the_shared_allow_list_by_default() -> None:
    assert set(MetricsSettings().sources) == allowed()


def test_a_missing_or_malformed_allow_list_stops_metrics_at_start_up(tmp_path: Path) -> None:
    malformed = tmp_path / "sources.yaml"
    malformed.write_text("sources: []\n")

    with pytest.raises(ValueError, match="sources"):
        MetricsSettings(sources_file=tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="sources"):
        MetricsSettings(sources_file=malformed)
