"""deploy/k8s/: each overlay renders with kustomize, and every object is valid.

Built-in kinds are validated strictly against the Kubernetes OpenAPI schemas bundled
in the kubernetes-validate wheel (offline). The custom resources (Strimzi Kafka,
KafkaNodePool, KafkaTopic; CloudNativePG Cluster; Prometheus Operator ServiceMonitor)
have no bundled schema, so they are checked structurally here: apiVersion, kind,
metadata and the spec keys their operators require, plus the values this platform
depends on (KRaft, replication, topics, the Secret name the services read).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic_settings import BaseSettings

from funnel_common.events import ALL_TOPICS
from funnel_common.settings import PLACEHOLDER_SECRET_PREFIX, CommonSettings
from funnel_tools.dashboards import DEPLOY
from handoff.settings import HandoffSettings
from lead_intake.settings import IntakeSettings
from metrics.settings import MetricsSettings
from tests.deploy import rules_to_k8s

K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = kubernetes_validate.latest_version()
# Every topic of the catalogue, so a new one cannot be forgotten in production.
TOPICS = set(ALL_TOPICS)
# Annotated: mypy joins the three settings classes to their metaclass otherwise.
SERVICES: dict[str, tuple[str, int, type[BaseSettings]]] = {
    "lead-intake": ("INTAKE", 8001, IntakeSettings),
    "handoff": ("HANDOFF", 8002, HandoffSettings),
    "metrics": ("METRICS", 8003, MetricsSettings),
}
# Each service's worker process serves /healthz, /readyz and /metrics on its own port.
WORKER_PORTS = {"lead-intake": 8011, "handoff": 8012, "metrics": 8013}
# Custom resources: the spec keys their operators refuse to work without.
CUSTOM_RESOURCES = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): {"kafka"},
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): {"replicas", "roles", "storage"},
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): {"partitions", "replicas"},
    ("postgresql.cnpg.io/v1", "Cluster"): {"instances", "storage"},
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {"selector", "endpoints"},
    ("monitoring.coreos.com/v1", "PodMonitor"): {"selector", "podMetricsEndpoints"},
    ("monitoring.coreos.com/v1", "PrometheusRule"): {"groups"},
}

Manifest = dict[str, Any]


def kubectl() -> str:
    return str(Path(sys.executable).with_name("kubectl"))


@cache
def render(overlay: str) -> tuple[Manifest, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(manifests: tuple[Manifest, ...], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_spec(deployment: Manifest) -> Manifest:
    spec: Manifest = deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(params=OVERLAYS)
def manifests(request: pytest.FixtureRequest) -> tuple[Manifest, ...]:
    return render(request.param)


def test_every_built_in_object_is_valid_against_the_kubernetes_schema(
    manifests: tuple[Manifest, ...],
) -> None:
    validated = Counter[str]()
    for manifest in manifests:
        if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_RESOURCES:
            continue
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        validated[manifest["kind"]] += 1

    validated.pop("Secret", None)  # dev's placeholder; see the test below
    assert validated == {
        "Namespace": 1,
        "ConfigMap": 1,
        "Deployment": 3,
        "Service": 3,
        "HorizontalPodAutoscaler": 3,
        "PodDisruptionBudget": 3,
        "NetworkPolicy": 4,
    }


def test_the_validator_really_rejects_a_broken_object() -> None:
    deployment = dict(of_kind(render("prod"), "Deployment")["lead-intake"])
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "three"}}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_custom_resources_have_their_required_structure(manifests: tuple[Manifest, ...]) -> None:
    found = Counter[str]()
    for manifest in manifests:
        required = CUSTOM_RESOURCES.get((manifest["apiVersion"], manifest["kind"]))
        if required is None:
            continue
        assert manifest["metadata"]["name"]
        (namespace,) = of_kind(manifests, "Namespace")
        assert manifest["metadata"]["namespace"] == namespace
        assert required <= set(manifest["spec"]), manifest["metadata"]["name"]
        found[manifest["kind"]] += 1

    assert found == {
        "Kafka": 1,
        "KafkaNodePool": 1,
        "KafkaTopic": len(TOPICS),
        "Cluster": 1,
        "ServiceMonitor": 1,
        "PodMonitor": 1,
        "PrometheusRule": 1,
    }


@pytest.mark.parametrize(
    ("overlay", "expected"), [("dev", "shared-funnel-dev"), ("prod", "shared-funnel")]
)
def test_everything_lands_in_the_overlay_namespace(overlay: str, expected: str) -> None:
    manifests = render(overlay)
    (namespace,) = of_kind(manifests, "Namespace")

    assert namespace == expected
    for manifest in manifests:
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == expected, manifest["metadata"]["name"]


def test_each_service_has_probes_resources_and_a_locked_down_container(
    manifests: tuple[Manifest, ...],
) -> None:
    deployments = of_kind(manifests, "Deployment")

    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        port = container["ports"][0]
        assert (port["name"], port["containerPort"]) == ("http", SERVICES[name][1])
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        for each in [container, *spec["initContainers"]]:
            context = each["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert each["image"] == container["image"]


def test_migrations_run_in_an_init_container_before_the_service(
    manifests: tuple[Manifest, ...],
) -> None:
    for name, deployment in of_kind(manifests, "Deployment").items():
        (init,) = pod_spec(deployment)["initContainers"]
        assert init["name"] == "migrate"
        assert "migrate_dsn" in init["command"][-1], name


def test_config_comes_from_the_configmap_and_secrets_only_by_reference(
    manifests: tuple[Manifest, ...],
) -> None:
    configmaps = of_kind(manifests, "ConfigMap")
    (cluster_name,) = of_kind(manifests, "Cluster")
    for name, deployment in of_kind(manifests, "Deployment").items():
        prefix = SERVICES[name][0]
        spec = pod_spec(deployment)
        for each in [*spec["containers"], *spec["initContainers"]]:
            assert [ref["configMapRef"]["name"] for ref in each["envFrom"]] == ["funnel-config"]
            assert set(configmaps) == {"funnel-config"}
            env = {variable["name"]: variable for variable in each["env"]}
            # CloudNativePG writes the application user's URI to "<cluster>-app".
            assert env[f"FUNNEL_{prefix}_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": f"{cluster_name}-app",
                "key": "uri",
            }
            auth = env["FUNNEL_AUTH_SECRET"]["valueFrom"]["secretKeyRef"]
            assert auth["name"].startswith("funnel-auth")
            for variable in env.values():
                assert "postgresql://" not in str(variable.get("value", ""))
                if any(word in variable["name"] for word in ("SECRET", "PASSWORD", "URL")):
                    assert "secretKeyRef" in variable["valueFrom"], variable["name"]


def test_production_ships_no_secret_and_dev_only_placeholders() -> None:
    assert of_kind(render("prod"), "Secret") == {}, "production secrets are created out of band"
    for secret in of_kind(render("dev"), "Secret").values():
        for value in secret["data"].values():
            assert base64.b64decode(value).decode().startswith(PLACEHOLDER_SECRET_PREFIX)


def test_every_setting_named_in_the_manifests_exists_in_the_services() -> None:
    # A typo in an environment variable is silently ignored by pydantic-settings.
    manifests = render("prod")
    common = {f"FUNNEL_{field.upper()}" for field in CommonSettings.model_fields}
    (config,) = of_kind(manifests, "ConfigMap").values()

    assert set(config["data"]) <= common
    for name, deployment in of_kind(manifests, "Deployment").items():
        prefix, _, settings = SERVICES[name]
        own = {f"FUNNEL_{prefix}_{field.upper()}" for field in settings.model_fields}
        for each in pod_spec(deployment)["containers"]:
            assert {variable["name"] for variable in each["env"]} <= own | common


def test_services_hpas_and_pdbs_select_the_deployments_pods(
    manifests: tuple[Manifest, ...],
) -> None:
    services = of_kind(manifests, "Service")
    hpas = of_kind(manifests, "HorizontalPodAutoscaler")
    pdbs = of_kind(manifests, "PodDisruptionBudget")
    for name, deployment in of_kind(manifests, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert services[name]["spec"]["selector"].items() <= labels.items()
        assert services[name]["spec"]["ports"][0]["targetPort"] == "http"
        assert pdbs[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert hpas[name]["spec"]["scaleTargetRef"]["name"] == name
        assert hpas[name]["spec"]["minReplicas"] <= deployment["spec"]["replicas"]
        assert labels["app.kubernetes.io/part-of"] == "shared-funnel"


def test_the_service_monitor_scrapes_every_service_port_named_http(
    manifests: tuple[Manifest, ...],
) -> None:
    (monitor,) = of_kind(manifests, "ServiceMonitor").values()
    selector = monitor["spec"]["selector"]["matchLabels"]

    selected = [
        service
        for service in of_kind(manifests, "Service").values()
        if selector.items() <= service["metadata"]["labels"].items()
    ]
    assert len(selected) == 3
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]


def test_network_policies_deny_by_default_and_open_only_kafka_postgres_and_dns(
    manifests: tuple[Manifest, ...],
) -> None:
    policies = of_kind(manifests, "NetworkPolicy")
    deny = policies["services-default-deny"]["spec"]
    egress = policies["services-egress"]["spec"]["egress"]

    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    ports = sorted(port["port"] for rule in egress for port in rule["ports"])
    assert ports == [53, 53, 5432, 9092]


def test_kafka_is_kraft_with_the_platforms_topics(manifests: tuple[Manifest, ...]) -> None:
    (kafka,) = of_kind(manifests, "Kafka").values()
    (pool,) = of_kind(manifests, "KafkaNodePool").values()
    topics = of_kind(manifests, "KafkaTopic").values()

    assert kafka["metadata"]["annotations"] == {
        "strimzi.io/node-pools": "enabled",
        "strimzi.io/kraft": "enabled",
    }
    assert "zookeeper" not in kafka["spec"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert {topic["spec"]["topicName"] for topic in topics} == TOPICS
    for topic in topics:
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert topic["spec"]["replicas"] <= pool["spec"]["replicas"]
    (config,) = of_kind(manifests, "ConfigMap").values()
    bootstrap = config["data"]["FUNNEL_KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap == f"{kafka['metadata']['name']}-kafka-bootstrap:9092"
    assert config["data"]["FUNNEL_KAFKA_ENABLE_IDEMPOTENCE"] == "true"


def test_production_has_replication_three_min_insync_two_and_three_of_everything() -> None:
    manifests = render("prod")
    (kafka,) = of_kind(manifests, "Kafka").values()
    (pool,) = of_kind(manifests, "KafkaNodePool").values()
    (cluster,) = of_kind(manifests, "Cluster").values()
    (config,) = of_kind(manifests, "ConfigMap").values()

    assert pool["spec"]["replicas"] == 3
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    assert kafka["spec"]["kafka"]["config"]["default.replication.factor"] == 3
    for topic in of_kind(manifests, "KafkaTopic").values():
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == 2
    assert cluster["spec"]["instances"] == 3
    assert config["data"]["FUNNEL_ENVIRONMENT"] == "production"
    for deployment in of_kind(manifests, "Deployment").values():
        assert deployment["spec"]["replicas"] == 3
        assert ":" in pod_spec(deployment)["containers"][0]["image"].rsplit("/", 1)[-1]
    for pdb in of_kind(manifests, "PodDisruptionBudget").values():
        assert pdb["spec"]["minAvailable"] == 2


def test_the_migrate_init_container_migrates_a_real_database(database_url: str) -> None:
    for name, deployment in of_kind(render("prod"), "Deployment").items():
        (init,) = pod_spec(deployment)["initContainers"]
        prefix = SERVICES[name][0]
        # Every secret the init container reads, with a real-looking value (lead-intake
        # has integration secrets besides FUNNEL_AUTH_SECRET).
        secrets = {
            variable["name"]: f"a-real-secret-for-{variable['name'].lower()}"
            for variable in init["env"]
            if "secretKeyRef" in variable.get("valueFrom", {})
        }
        env = {
            **os.environ,
            **secrets,
            f"FUNNEL_{prefix}_DATABASE_URL": database_url,
            "FUNNEL_ENVIRONMENT": "production",
        }
        command = [sys.executable, *init["command"][1:]]

        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

        assert first.returncode == 0, first.stderr
        assert "migrations applied: [" in first.stdout, first.stdout
        assert again.stdout.strip() == "migrations applied: none pending", again.stdout


def test_the_prometheus_rule_object_carries_exactly_the_shipped_rules() -> None:
    (rule,) = of_kind(render("prod"), "PrometheusRule").values()

    assert rules_to_k8s.TARGET.read_text() == rules_to_k8s.render(), (
        "deploy/k8s/base/prometheus-rules.yaml is stale: "
        "run .venv/bin/python -m tests.deploy.rules_to_k8s"
    )
    assert rule["spec"]["groups"] == rules_to_k8s.rule_groups()
