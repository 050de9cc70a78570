"""`funnel dev` as a user runs it: supervised processes, restarts, clean stop, kept data;
on the embedded broker (`make run`) and on Apache Kafka (`funnel dev --broker kafka`)."""

from __future__ import annotations

import itertools
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from funnel_tools.devplatform import DevPlatform, free_ports, start_dev
from funnel_tools.embedded import port_open, wait_until
from tests.brokers import BrokerKind, kafka_lib_dir_or_skip

# A Kafka node starts in 5-60 s on a loaded 2-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

LEAD = {"email": "katherine@example.com", "source": "webinar"}


@pytest.fixture
def ports() -> dict[str, int]:
    return free_ports()


@pytest.fixture
def dev(tmp_path: Path, ports: dict[str, int], broker_kind: BrokerKind) -> Iterator[DevPlatform]:
    if broker_kind == "kafka":
        kafka_lib_dir_or_skip()  # `funnel dev --broker kafka` needs Java (and Maven, once)
    platform = start_dev(tmp_path / "funnel", ports, tmp_path / "dev.out", broker=broker_kind)
    yield platform
    platform.stop()


_lead_numbers = itertools.count()


def _post(platform: DevPlatform) -> bool:
    # A different person each time: the same email again is a merge, not a capture.
    lead = {**LEAD, "email": f"katherine.{next(_lead_numbers)}@example.com"}
    return httpx.post(platform.url("intake", "/v1/leads"), json=lead).status_code == 202


def test_killed_services_are_restarted_and_no_lead_is_lost_or_counted_twice(
    dev: DevPlatform, tmp_path: Path, ports: dict[str, int]
) -> None:
    accepted = 0
    for service in ("intake", "metrics", "handoff"):
        accepted += sum(_post(dev) for _ in range(3))
        victim = dev.pid_listening_on(service)

        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda s=service, v=victim: dev.ready(s) and dev.listener(s) not in (None, v),
            timeout=60,
            what=f"{service} to be restarted",
        )
        accepted += sum(_post(dev) for _ in range(3))

    wait_until(lambda: dev.captured() == accepted, timeout=30, what=f"{accepted} leads counted")
    assert accepted == 18
    assert "restarting" in dev.output.read_text()
    # The supervisor's own messages are JSON lines in its log file too.
    supervised = (dev.data_dir / "logs" / "supervisor.log").read_text().splitlines()
    restarts = [json.loads(line) for line in supervised if "restarting" in line]
    assert {entry["program"] for entry in restarts} == {"lead-intake", "metrics", "handoff"}
    assert all(entry["returncode"] == -signal.SIGKILL for entry in restarts)

    dev.stop()

    assert dev.process.returncode == 0
    assert not any(port_open(port) for port in ports.values())
    survivors = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert survivors == [], "orphan processes survived the stop"

    again = start_dev(tmp_path / "funnel", ports, tmp_path / "dev-again.out", broker=dev.broker)
    try:
        assert again.captured() == accepted
        accepted += _post(again)
        wait_until(lambda: again.captured() == accepted, timeout=30, what="the next lead counted")
    finally:
        again.stop()


# On both brokers: the README's example on Apache Kafka, and a Kafka node killed and
# started again on its storage. Killing and restarting the services (above) asks nothing
# of the broker that the fault suite does not ask on both.
@pytest.mark.both_brokers
def test_the_readme_example_is_served_and_a_killed_broker_comes_back_with_what_it_held(
    dev: DevPlatform,
) -> None:
    # The README's curl example, as written there.
    answer = httpx.post(
        dev.url("intake", "/v1/leads"),
        headers={"content-type": "application/json"},
        content=b'{"email": "ada@example.com", "source": "webinar"}',
    )
    # The README's answer: a receipt, the same for a new or a known person.
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "received"
    assert answer.json()["receipt_id"]
    wait_until(lambda: dev.captured() == 1, timeout=30, what="the README's lead counted")
    metrics = httpx.get(dev.url("metrics", "/metrics")).text
    assert "funnel_leads_captured_total 1.0" in metrics.splitlines()

    accepted = 1 + sum(_post(dev) for _ in range(5))
    wait_until(lambda: dev.captured() == accepted, timeout=30, what="first leads counted")
    broker = dev.pid_listening_on("broker")

    os.kill(broker, signal.SIGKILL)
    wait_until(
        lambda: dev.listener("broker") not in (None, broker),
        # Tansu is back at once; a Kafka node's JVM takes 5-60 s on a loaded machine.
        timeout=30 if dev.broker == "tansu" else 150,
        what="the broker to be restarted",
    )
    accepted += sum(_post(dev) for _ in range(5))

    wait_until(lambda: dev.captured() == accepted, timeout=90, what=f"{accepted} leads counted")
    assert "broker exited" in dev.output.read_text()
    if dev.broker == "tansu":
        broker_log = (dev.data_dir / "logs" / "broker.log").read_text().splitlines()
        assert [json.loads(line)["service"] for line in broker_log].count("broker") == len(
            broker_log
        )
        assert sum("listening on" in line for line in broker_log) == 2  # before and after
    else:
        # The Kafka node logs with Log4j in its own directory (docs/operations.md).
        server_log = (dev.data_dir / "kafka" / "node-1" / "server.log").read_text()
        assert server_log.count("Kafka Server started") == 2  # before and after the kill
