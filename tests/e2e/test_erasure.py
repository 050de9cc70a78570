"""A person erased through `funnel privacy` leaves nothing readable anywhere; figures stay.

`funnel dev` runs every service as its own process with its real logs. One person sends
two forms (a lead and a merge), a rep rejects their lead with a note naming them, and a
deal is won on their email; another person is the control. The person is exported,
erased with the CLI, and then every column of every table of every schema, every record
of every topic (read with a raw Kafka client, from the beginning, as replay reads them)
and every log line are searched for their email, phone, names, title, extra field and the
note: as sent, in any case, JSON-escaped and in base64. The funnel, plan and metric
figures are the same before and after, and after a replay; the export is empty, a second
erasure answers the same, and the person posting again is a new lead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from typer.testing import CliRunner

from funnel_cli.main import app as cli
from funnel_common.events import ALL_TOPICS
from funnel_common.signing import SIGNATURE_HEADER, sign
from funnel_tools.devplatform import DevPlatform, free_ports, start_dev
from funnel_tools.embedded import wait_until
from handoff.sla import ALWAYS
from lead_intake.settings import IntakeSettings
from tests.metrics.support import parse_samples

pytestmark = pytest.mark.e2e

# Series of the metrics service that are figures of the funnel (not of the processes
# serving it, which move with every request and poll).
_NOT_FIGURES = re.compile(
    r"^(python_|process_|funnel_http_|funnel_consumer_|funnel_outbox_|funnel_relay_|"
    r"funnel_inbox_|funnel_events_|funnel_replay_|funnel_db_|funnel_kafka_|funnel_build_)"
)


def _unique(prefix: str) -> str:
    return prefix + secrets.token_hex(5)


def _person() -> dict[str, Any]:
    digits = "".join(secrets.choice("123456789") for _ in range(9))
    return {
        "email": f"{_unique('erasee')}@{_unique('mail')}.example",
        "phone": f"+49 15{digits}",
        # Not ASCII: a JSON-escaped copy (\u00eb) is looked for too.
        "first_name": _unique("Zoë"),
        "last_name": _unique("Lastname"),
        "title": _unique("Chief"),
        "company": _unique("Company"),
        "country": "DE",
        "company_size": 500,
        "source": "webinar",
        "campaign": _unique("campaign"),
        "favourite_colour": _unique("colour"),
    }


def _needles(person: dict[str, Any], note: str) -> set[str]:
    """Every personal value, as sent and as the platform normalises it."""
    values = {person[k] for k in ("email", "phone", "first_name", "last_name", "title")}
    values |= {person["favourite_colour"], note, person["email"].split("@")[0]}
    values.add(person["phone"].replace(" ", ""))
    values.add(person["phone"].replace(" ", "")[3:])
    return values


def _forms(value: str) -> tuple[set[str], set[str]]:
    """``value`` as it could be stored: itself and JSON-escaped (in any case), and in
    base64, standard and URL-safe, at each of the three alignments a value can have inside
    longer data (case matters there)."""
    plain = {value.lower(), json.dumps(value)[1:-1].lower()}
    encoded: set[str] = set()
    for shift in range(3):
        text = base64.b64encode(b"\0" * shift + value.encode()).decode()
        # Without the characters that also depend on the neighbouring bytes.
        core = text[(shift * 4 + 2) // 3 + 1 : -4]
        encoded |= {core, core.replace("+", "-").replace("/", "_")}
    return plain, encoded


def _found(haystack: str, needles: set[str]) -> list[str]:
    lowered = haystack.lower()
    found = []
    for needle in needles:
        plain, encoded = _forms(needle)
        if any(form in lowered for form in plain) or any(form in haystack for form in encoded):
            found.append(needle)
    return found


async def _tables(database_url: str) -> dict[str, Any]:
    """Every row of every table of every schema, as text (bytea decoded as UTF-8)."""
    connection = await asyncpg.connect(database_url)
    try:
        tables = await connection.fetch(
            """SELECT table_schema, table_name FROM information_schema.tables
               WHERE table_type = 'BASE TABLE'
                 AND table_schema NOT IN ('pg_catalog', 'information_schema')"""
        )
        found: dict[str, Any] = {}
        for table in tables:
            name = f'"{table["table_schema"]}"."{table["table_name"]}"'
            rows = await connection.fetch(f"SELECT * FROM {name}")
            found[name] = "\n".join(
                " ".join(
                    value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                    for value in row.values()
                )
                for row in rows
            )
    finally:
        await connection.close()
    return found


async def _topics(bootstrap: str) -> dict[str, str]:
    """Every record of every topic from the beginning (keys, values, headers)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: dict[str, list[str]] = {topic: [] for topic in ALL_TOPICS}
    try:
        await consumer.topics()  # the metadata of every topic
        partitions = [
            TopicPartition(topic, p)
            for topic in ALL_TOPICS
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        assert {tp.topic for tp in partitions} == set(ALL_TOPICS)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        deadline = time.monotonic() + 60
        while await behind() and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                for record in batch:
                    parts = [record.key or b"", record.value or b""]
                    parts += [value for _, value in record.headers]
                    text = " ".join(p.decode("utf-8", "replace") for p in parts)
                    found[record.topic].append(text)
        assert not await behind(), "the topics not read to their end"
    finally:
        await consumer.stop()
    return {topic: "\n".join(texts) for topic, texts in found.items()}


def _logs(dev: DevPlatform) -> dict[str, Any]:
    logs = {
        path.name: path.read_text(errors="replace")
        for path in (dev.data_dir / "logs").glob("*.log")
    }
    logs["dev.out"] = dev.output.read_text(errors="replace")
    return logs


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DevPlatform]:
    ports = free_ports()
    while len(set(ports.values())) < len(ports):  # free_port can hand out one port twice
        ports = free_ports()
    platform = start_dev(tmp_path / "funnel", ports, tmp_path / "dev.out")
    # `funnel privacy`, `funnel token` and `funnel replay` find this platform as they
    # find any `funnel dev`: by its state file. What they adopt from it into the
    # environment is undone after the test.
    monkeypatch.setenv("FUNNEL_DEV_DATA_DIR", str(platform.data_dir))
    adopted = json.loads((platform.data_dir / "platform.json").read_text())["env"]
    for name in adopted:
        # setenv first: delenv of an unset name records nothing to undo, and the CLI's
        # adoption would then outlive the test (on Apache Kafka, Tansu's short session
        # timeout leaked this way into later tests' consumers).
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    try:
        yield platform
    finally:
        platform.stop()


def _funnel(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (args[:2], result.output, result.exception)
    return result.output


class _Run:
    """The platform's HTTP clients and the figures it shows."""

    def __init__(self, dev: DevPlatform, token: str) -> None:
        admin = {"authorization": f"Bearer {token}"}
        self.dev = dev
        self.intake = httpx.Client(base_url=dev.url("intake", ""), headers=admin, timeout=15)
        self.handoff = httpx.Client(base_url=dev.url("handoff", ""), headers=admin, timeout=15)
        self.metrics = httpx.Client(base_url=dev.url("metrics", ""), headers=admin, timeout=15)

    def post_lead(self, person: dict[str, Any]) -> None:
        answer = self.intake.post("/v1/leads", json=person)
        assert answer.status_code == 202, answer.text

    def queue(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.handoff.get("/v1/handoffs").json()["items"]
        return items

    def figures(self) -> dict[str, Any]:
        exposition = parse_samples(self.metrics.get("/metrics").text)
        return {
            "funnel": self.metrics.get("/v1/funnel").json(),
            "plan": self.metrics.get("/v1/plan").json(),
            "metrics": {
                series: value
                for series, value in exposition.items()
                if series[0].startswith("funnel_") and not _NOT_FIGURES.match(series[0])
            },
        }


def _drive(run: _Run, person: dict[str, Any], other: dict[str, Any]) -> str:
    """The person's lead, a merge onto it, a rejection with a note naming them and a won
    deal on their email; the control person's lead accepted. The note."""
    policy = {"business_minutes": 60, "calendar": ALWAYS.model_dump(mode="json")}
    assert run.handoff.put("/v1/sla-policies/gdpr-sla", json=policy).status_code == 200
    team = {"countries": ["DE"], "sla_policy": "gdpr-sla"}
    assert run.handoff.put("/v1/teams/gdpr-team", json=team).status_code == 200
    rep = {"team_id": "gdpr-team", "capacity": 100}
    assert run.handoff.put("/v1/reps/rep-1", json=rep).status_code == 200

    run.post_lead(person)
    run.post_lead({**person, "campaign": _unique("again")})
    run.post_lead(other)
    wait_until(lambda: len(run.queue()) == 2, timeout=60, what="a handoff per person")
    by_email = {item["profile"]["email"]: item for item in run.queue()}
    # The values went all the way through (a scan that finds none of them later is not
    # scanning for values the platform never had).
    assert by_email[person["email"]]["profile"]["last_name"] == person["last_name"]
    note = f"called {person['first_name']} {person['last_name']} on {person['phone']}"
    rejected = run.handoff.post(
        f"/v1/handoffs/{by_email[person['email']]['handoff_id']}/reject",
        json={"reason": "other", "note": note},
    )
    assert rejected.status_code == 200, rejected.text
    accepted = run.handoff.post(f"/v1/handoffs/{by_email[other['email']]['handoff_id']}/accept")
    assert accepted.status_code == 200, accepted.text

    crm = IntakeSettings().crm_webhook_secret.get_secret_value()
    for event in ("opened", "won"):
        deal = {
            "webhook_id": _unique("w"),
            "event": event,
            "deal_id": "gdpr-deal",
            "email": person["email"],
            "amount_cents": 700_000,
            "currency": "USD",
        }
        raw = json.dumps(deal).encode()
        signed = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(crm, int(time.time()), raw),
        }
        assert run.intake.post("/v1/deals", content=raw, headers=signed).status_code == 200
    assert (
        run.metrics.put("/v1/targets/2026-Q4", json={"amount_cents": 9_000_000}).status_code == 200
    )

    def counted() -> bool:
        total = run.metrics.get("/v1/funnel").json()["stages"]["all_time"]["total"]
        return bool(total["accepted"] == 1 and total["rejected"] == 1 and total["won"] == 1)

    wait_until(counted, timeout=60, what="the run counted in metrics")
    return note


def test_an_erased_person_is_nowhere_and_every_figure_stays(
    dev: DevPlatform, tmp_path: Path
) -> None:
    token = _funnel("token", "create", "--role", "admin", "--subject", "dpo").strip()
    run = _Run(dev, token)
    person, other = _person(), _person()
    note = _drive(run, person, other)

    exported = tmp_path / "export.json"
    _funnel("privacy", "export", person["email"], "--out", str(exported), "--token", token)
    document = json.loads(exported.read_text())
    [lead] = document["lead_intake"]["leads"]
    assert lead["profile"]["first_name"] == person["first_name"]
    assert lead["extra"] == {"favourite_colour": person["favourite_colour"]}
    assert len(lead["touches"]) == 1
    [handoff] = document["handoff"]
    assert [d["note"] for d in handoff["decisions"]] == [note]
    assert handoff["handoffs"][0]["profile"]["phone"] == person["phone"].replace(" ", "")
    figures = run.figures()

    def pack_notes() -> Any:
        return run.metrics.get("/v1/review").json()["notes"]

    # The review pack shows the sealed note, opened with metrics' copy of the key.
    wait_until(lambda: pack_notes() == {"other": [note]}, timeout=60, what="the pack's note")

    erased = _funnel("privacy", "erase", person["email"], "--yes", "--token", token)
    assert lead["lead_id"] in erased

    def handoff_forgot() -> bool:
        answer = run.handoff.get(f"/v1/privacy/people/{lead['lead_id']}").json()
        return bool(answer["erased"])

    wait_until(handoff_forgot, timeout=60, what="handoff to hear of the erasure")
    # metrics forgets the key and the note in one transaction: the note gone from the
    # pack means no copy of the key is left there either.
    wait_until(lambda: pack_notes() == {}, timeout=60, what="metrics to hear of the erasure")
    needles = _needles(person, note)
    tables = asyncio.run(_tables(dev.database_url))
    topics = asyncio.run(_topics(dev.bootstrap_servers))
    leaks = [
        (where, found)
        for stores in (tables, topics, _logs(dev))
        for where, text in stores.items()
        if (found := _found(text, needles))
    ]
    assert leaks == []
    # The scan saw the data it looks in: every schema, the control person in clear in
    # lead-intake's row, and the person's company (not personal data) in handoff's copy.
    schemas = {name.split(".")[0].strip('"') for name in tables}
    assert {"intake", "handoff", "metrics"} <= schemas
    assert _found(tables['"intake"."leads"'], {other["email"]})
    assert person["company"] in tables['"handoff"."handoffs"']
    # No copy of the person's key is left; the erasure is audited, with ids only.
    assert [name for name in tables if name.endswith('"person_keys"')]
    assert not [
        name
        for name in tables
        if name.endswith('"person_keys"') and lead["lead_id"] in tables[name]
    ]
    audit = [line for line in topics["funnel.leads"].splitlines() if "person.erased" in line]
    [erasure] = audit
    # The key's tombstone on funnel.people was taken as one, not parked as junk.
    assert topics["funnel.dlq"] == ""
    assert lead["lead_id"] in erasure
    assert '"requested_by":"dpo"' in erasure.replace(" ", "")

    assert run.figures() == figures
    # Nothing is left to export; the handoff and decisions remain, without the person.
    _funnel("privacy", "export", person["email"], "--out", str(exported), "--token", token)
    assert json.loads(exported.read_text())["lead_intake"]["lead_ids"] == []
    kept = run.handoff.get(f"/v1/privacy/people/{lead['lead_id']}").json()
    assert [d["note"] for d in kept["decisions"]] == [None]
    assert "phone" not in kept["handoffs"][0]["profile"]
    # Idempotent: erasing again (by email, by lead id) answers as the first time did.
    email = {"email": person["email"]}
    assert run.intake.delete("/v1/privacy/people", params=email).status_code == 204
    assert run.intake.delete(f"/v1/privacy/people/{lead['lead_id']}").status_code == 204

    _funnel("replay")
    assert run.figures() == figures

    run.post_lead(person)

    def new_lead() -> list[str]:
        ids: list[str] = run.intake.get("/v1/privacy/people", params=email).json()["lead_ids"]
        return ids

    wait_until(lambda: len(new_lead()) == 1, timeout=30, what="the person's new lead")
    assert new_lead() != [lead["lead_id"]]
