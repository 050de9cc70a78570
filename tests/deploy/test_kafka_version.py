"""One Apache Kafka version everywhere: the broker the tests run (tools/kafka/pom.xml and
its checksummed jars), compose's image and Strimzi's Kafka resource; and the topics
`funnel replay` reads keep their records wherever they are declared (Strimzi, compose,
and the platform's own topic creation)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import yaml

from funnel_common.kafka import TOPIC_CONFIGS
from metrics.handlers import TOPICS as REPLAYED_TOPICS
from tests.deploy.test_k8s_manifests import of_kind, render

ROOT = Path(__file__).resolve().parents[2]
POM_NAMESPACE = {"m": "http://maven.apache.org/POM/4.0.0"}

# Kafka versions that Strimzi 0.51.0 (its kafka-versions.yaml, supported: true) runs.
# 0.51 is the last Strimzi release serving kafka.strimzi.io/v1beta2, the API of
# deploy/k8s; Strimzi 1.0-1.2 (v1 API only) support 4.2.x and 4.3.x, so 4.2.0 is the
# newest version both lines run.
STRIMZI_0_51_KAFKA_VERSIONS = {"4.1.0", "4.1.1", "4.2.0"}


def kafka_version_of_the_tests() -> str:
    pom = ElementTree.parse(ROOT / "tools/kafka/pom.xml")
    version = pom.findtext("m:properties/m:kafka.version", namespaces=POM_NAMESPACE)
    assert version, "tools/kafka/pom.xml names no kafka.version"
    return version


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    return loaded


def test_the_tested_broker_compose_and_strimzi_name_the_same_kafka_version() -> None:
    version = kafka_version_of_the_tests()
    images = {
        service["image"]
        for service in compose()["services"].values()
        if str(service.get("image", "")).startswith("apache/kafka")
    }
    (kafka,) = of_kind(render("prod"), "Kafka").values()
    pinned_jars = (ROOT / "tools/kafka/jars.sha256").read_text()

    assert f"kafka_2.13-{version}.jar" in pinned_jars
    assert images == {f"apache/kafka:{version}"}
    assert kafka["spec"]["kafka"]["version"] == version
    assert version in STRIMZI_0_51_KAFKA_VERSIONS
    major_minor = ".".join(version.split(".")[:2])
    assert kafka["spec"]["kafka"]["metadataVersion"].startswith(f"{major_minor}-IV")


def test_replayed_topics_keep_their_records_in_strimzi_and_compose() -> None:
    topics = {
        topic["spec"]["topicName"]: topic["spec"]["config"]
        for topic in of_kind(render("prod"), "KafkaTopic").values()
    }
    script = "".join(compose()["services"]["kafka-topics"]["command"])

    for name in REPLAYED_TOPICS:
        kept = topics[name].get("retention.ms") == -1
        compacted = topics[name].get("cleanup.policy") == "compact"  # the latest per key
        assert kept or compacted, name
        if kept:
            assert TOPIC_CONFIGS[name] == {"retention.ms": "-1"}, name
        else:
            assert TOPIC_CONFIGS[name]["cleanup.policy"] == "compact", name
        # What the platform creates is what Strimzi declares (its ISR setting aside).
        declared = {key: str(value) for key, value in topics[name].items()}
        declared.pop("min.insync.replicas", None)
        assert declared == TOPIC_CONFIGS[name], name
    assert "retention=-1" in script
    assert re.search(r"\[ \"\$\$topic\" = funnel\.dlq \]", script)
