"""Every alert links its runbook section, and names only jobs the PodMonitor produces."""

from __future__ import annotations

import re

from funnel_tools.dashboards import ROOT, rules
from tests.deploy.netpol import selects
from tests.deploy.test_k8s_manifests import of_kind, pods, render

RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/shared-funnel/shared-funnel/blob/main/docs/runbooks.md"
_JOB_MATCHER = re.compile(r'\bjob\s*(=~|=|!=|!~)\s*"([^"]*)"')


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def sections() -> dict[str, str]:
    """docs/runbooks.md's second-level sections, by anchor: their text."""
    parts = re.split(r"^## (.+)$", RUNBOOKS.read_text(), flags=re.M)
    return {
        github_anchor(title): body for title, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def test_every_alert_links_a_runbook_section_that_says_what_to_do() -> None:
    found = sections()
    alerts = [rule for rule in rules() if "alert" in rule]

    assert alerts
    for rule in alerts:
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base == RUNBOOK_BASE, rule["alert"]
        assert anchor == github_anchor(rule["alert"]), rule["alert"]
        assert anchor in found, f"docs/runbooks.md has no section for {rule['alert']}"
        for part in ("**What**", "**Impact**", "**Diagnose**", "**Fix**"):
            assert part in found[anchor], (rule["alert"], part)


def test_the_runbooks_cover_the_database_outage_and_a_restore_drill() -> None:
    found = sections()

    assert "postgresql-is-down" in found
    drill = found["restore-drill"]
    assert "bootstrap" in drill
    assert "barmanObjectName: funnel-backups" in drill
    assert "serverName: funnel-db" in drill


def podmonitor_jobs() -> set[str]:
    """The `job` values the PodMonitor gives the pods it scrapes."""
    manifests = render("prod")
    monitor = of_kind(manifests, "PodMonitor")["shared-funnel"]["spec"]
    scraped = [
        labels for labels in pods(manifests).values() if selects(monitor["selector"], labels)
    ]
    return {labels[monitor["jobLabel"]] for labels in scraped}


def test_every_job_a_rule_names_is_one_the_podmonitor_produces() -> None:
    jobs = podmonitor_jobs()
    named = 0

    assert jobs == {"lead-intake", "handoff", "metrics"}
    for rule in rules():
        for operator, value in _JOB_MATCHER.findall(rule["expr"]):
            named += 1
            wanted = set(value.split("|")) if operator == "=~" else {value}
            assert wanted <= jobs, (rule.get("alert") or rule.get("record"), wanted)
    assert named > 0
