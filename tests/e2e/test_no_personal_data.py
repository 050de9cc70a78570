"""No email, phone or name in any log line or metric label, after real traffic.

`funnel dev` runs the platform as separate processes writing their real logs; leads
carry unique, unguessable emails, phones, names and companies, reps decide, webhooks
arrive and team notifications fail (their bodies carry the lead's profile). Then every
log file and every /metrics exposition is scanned for those values. The scan proves it
saw the run (the failed notifications' ids are in the logs), so an empty log cannot
pass, and every label value must come from a bounded set.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from funnel_cli.main import app as cli
from funnel_common.events import ALL_TOPICS
from funnel_common.signing import SIGNATURE_HEADER, sign
from funnel_tools.devplatform import DevPlatform, free_ports, start_dev
from funnel_tools.embedded import free_port, wait_until
from handoff.sla import ALWAYS
from lead_intake.settings import IntakeSettings
from metrics.settings import MetricsSettings
from tests.hostile import HOSTILE
from tests.metrics.support import parse_samples

pytestmark = pytest.mark.e2e

LEADS = 4
# Label name -> the shape every value must have: bounded, never free text.
BOUNDED_LABELS = {
    "service": r"lead-intake|handoff|metrics",
    "method": r"GET|POST|PUT|DELETE|other",
    "route": r"(/[a-z0-9{}_.-]*)+|unmatched",
    "status": r"[1-5]\d\d|queued|assigned|escalated|accepted|rejected",
    "stage": r"[a-z_]+",
    "group": r"funnel\.[a-z-]+|[a-z-]+",
    "topic": "|".join(re.escape(topic) for topic in ALL_TOPICS),
    "partition": r"\d+",
    "outcome": r"[a-z_]+",
    "state": r"[a-z_]+",
    "le": r"[0-9.e+-]+|\+Inf",
    "form": r"[a-z0-9_-]+",
    "form_id": r"[a-z0-9_-]+",
    "integration": r"crm|billing",
    "channel": r"webhook|slack|email",
    "kind": r"[a-z_]+",
    "basis": r"count|value",
    "period": r"\d{4}-Q[1-4]",
    "reason": r"[a-z_]+",
    # Only configured sources are labels (the rest count as "other"); campaigns never.
    "source": "|".join(map(re.escape, [*MetricsSettings().sources, "other", "unattributed"])),
    # SLA policies are named by an admin (PUT /v1/sla-policies/{name}), like teams.
    "policy": r"[a-z0-9_-]+",
    "currency": r"[A-Z]{3}",
    "implementation": r"CPython",
    "major": r"\d+",
    "minor": r"\d+",
    "patchlevel": r"\d+",
    "version": r"[\d.]+",
    "generation": r"\d+",
    "team": r"pii-team",
}


def _unique(prefix: str) -> str:
    return prefix + secrets.token_hex(6)


def _people() -> list[dict[str, str]]:
    people = []
    for _ in range(LEADS):
        digits = "".join(secrets.choice("123456789") for _ in range(9))
        people.append(
            {
                "email": f"{_unique('mailbox')}@{_unique('domain')}.example",
                "phone": f"+49 15{digits}",
                "first_name": _unique("Firstname"),
                "last_name": _unique("Lastname"),
                "company": _unique("Companyname"),
                "source": _unique("source"),
                "campaign": _unique("campaign"),
            }
        )
    return people


def _token(dev: DevPlatform, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.setenv("FUNNEL_HANDOFF_DATABASE_URL", dev.database_url)
    created = CliRunner().invoke(cli, ["token", "create", *args])
    assert created.exit_code == 0, created.output
    return created.output.strip()


def _drive(dev: DevPlatform, monkeypatch: pytest.MonkeyPatch, people: list[dict[str, str]]) -> None:
    """Traffic through all three services, as their users send it."""
    token = _token(dev, monkeypatch, "--role", "admin", "--subject", "root")
    admin = {"authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=dev.url("intake", ""), timeout=10) as intake,
        httpx.Client(base_url=dev.url("handoff", ""), headers=admin, timeout=10) as handoff,
        httpx.Client(base_url=dev.url("metrics", ""), headers=admin, timeout=10) as metrics,
    ):
        _roster(handoff)
        _leads_and_decisions(intake, handoff, people)
        _webhooks_and_target(intake, metrics, people)

        def counted() -> bool:
            total = metrics.get("/v1/funnel").json()["stages"]["all_time"]["total"]
            return bool(
                total["captured"] == LEADS + 1 and total["accepted"] == 1 and total["rejected"] == 1
            )

        wait_until(counted, timeout=30, what="the run counted in metrics")


def _roster(handoff: httpx.Client) -> None:
    # Nothing listens there: every notification fails, and its failure is logged.
    dead_hook = f"http://127.0.0.1:{free_port()}/hook"
    policy = {
        "business_minutes": 60,
        "calendar": ALWAYS.model_dump(mode="json"),
    }
    assert handoff.put("/v1/sla-policies/pii-sla", json=policy).status_code == 200
    team = {"countries": ["DE"], "sla_policy": "pii-sla", "webhooks": [{"url": dead_hook}]}
    assert handoff.put("/v1/teams/pii-team", json=team).status_code == 200
    rep = {"team_id": "pii-team", "capacity": 100}
    assert handoff.put("/v1/reps/rep-1", json=rep).status_code == 200


def _leads_and_decisions(
    intake: httpx.Client, handoff: httpx.Client, people: list[dict[str, str]]
) -> None:
    for person in people:
        lead = {
            **person,
            "title": "VP Sales",
            "company_size": 500,
            "country": "DE",
            "hobby": person["first_name"],
        }
        answer = intake.post("/v1/leads", json=lead)
        assert answer.status_code == 202, answer.text
        person["receipt_id"] = answer.json()["receipt_id"]
    # Refusals must not echo what was sent either, in the answer's log or anywhere.
    bad = {"email": f"not-an-email {people[0]['first_name']}", "phone": people[0]["company"]}
    assert intake.post("/v1/leads", json=bad).status_code == 422
    hostile = {
        "email": _unique("hostile") + "@example.org",
        "company": HOSTILE["crlf"],
        "title": HOSTILE["quotes"],
    }
    assert intake.post("/v1/leads", json=hostile).status_code == 202

    def queue() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = handoff.get("/v1/handoffs").json()["items"]
        return items

    # Readable once each lead's key (funnel.people) has reached handoff too.
    wait_until(
        lambda: [bool(item["profile"].get("email")) for item in queue()] == [True] * LEADS,
        timeout=30,
        what="a handoff per lead, its contact details readable",
    )
    # The values went all the way through: a rep sees them (so a scan that finds none
    # of them later is not scanning for values the platform never had).
    profiles = {item["profile"]["email"]: item["profile"] for item in queue()}
    assert {person["email"] for person in people} == set(profiles)
    assert all(profiles[p["email"]]["company"] == p["company"] for p in people)
    first, second, *_ = queue()
    assert handoff.post(f"/v1/handoffs/{first['handoff_id']}/accept").status_code == 200
    note = f"spoke to {people[0]['first_name']} at {people[0]['phone']}"
    rejected = handoff.post(
        f"/v1/handoffs/{second['handoff_id']}/reject", json={"reason": "other", "note": note}
    )
    assert rejected.status_code == 200, rejected.text


def _webhooks_and_target(
    intake: httpx.Client, metrics: httpx.Client, people: list[dict[str, str]]
) -> None:
    crm = IntakeSettings().crm_webhook_secret.get_secret_value()
    for event in ("opened", "won"):
        deal = {
            "webhook_id": _unique("w"),
            "event": event,
            "deal_id": "pii-deal",
            "email": people[0]["email"],
            "amount_cents": 500_000,
            "currency": "USD",
        }
        raw = json.dumps(deal).encode()
        signed = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(crm, int(time.time()), raw),
        }
        assert intake.post("/v1/deals", content=raw, headers=signed).status_code == 200
    assert metrics.put("/v1/targets/2026-Q4", json={"amount_cents": 1_000_000}).status_code == 200


def _secrets(people: list[dict[str, str]]) -> set[str]:
    """Every distinctive value, as sent and as the platform normalises it."""
    found: set[str] = set()
    for person in people:
        found |= {person[key] for key in ("email", "phone", "first_name", "last_name", "company")}
        found.add(person["email"].split("@")[0])
        found.add(person["phone"].replace(" ", ""))
        found.add(person["phone"].replace(" ", "")[3:])
    return found


async def _notification_ids(database_url: str) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT id FROM handoff.notifications WHERE attempts > 0")
    finally:
        await connection.close()
    return [str(row["id"]) for row in rows]


def _json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_logs_and_metric_labels_carry_no_personal_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = _people()
    dev = start_dev(
        tmp_path / "funnel",
        free_ports(),
        tmp_path / "dev.out",
        extra_env={"FUNNEL_HANDOFF_WEBHOOK_SECRET": secrets.token_hex(16)},
    )
    try:
        _drive(dev, monkeypatch, people)
        expositions = {
            service: httpx.get(dev.url(service, "/metrics"), timeout=10).text
            for service in ("intake", "handoff", "metrics")
        }
        notified = asyncio.run(_notification_ids(dev.database_url))
    finally:
        dev.stop()
    logs = {
        path.name: path.read_text(errors="replace")
        for path in (tmp_path / "funnel" / "logs").glob("*.log")
    }
    logs["dev.out"] = (tmp_path / "dev.out").read_text(errors="replace")

    leaks = [
        (where, value)
        for where, text in {**logs, **expositions}.items()
        for value in _secrets(people)
        if value.lower() in text.lower()
    ]
    assert leaks == []
    # The scan saw the run: the failed notifications (their bodies hold the profiles)
    # were logged by id.
    assert notified
    handoff_logs = logs["handoff.log"] + logs.get("handoff-worker.log", "")
    assert all(notification in handoff_logs for notification in notified)
    for name in ("lead-intake.log", "handoff.log", "metrics.log"):
        for line in logs[name].splitlines():
            assert _json_object(line), (name, line)
    unbounded = [
        (service, name, value)
        for service, text in expositions.items()
        for (_, labels) in parse_samples(text)
        for name, value in labels
        if not re.fullmatch(BOUNDED_LABELS.get(name, "(?!)"), value)
    ]
    assert unbounded == []
