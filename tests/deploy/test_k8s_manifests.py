"""deploy/k8s/: each overlay renders with kustomize, and every object is valid.

Built-in kinds are validated strictly against the Kubernetes OpenAPI schemas bundled
in the kubernetes-validate wheel (offline). The custom resources (Strimzi Kafka,
KafkaNodePool, KafkaTopic; CloudNativePG Cluster, Database, ScheduledBackup and the
Barman Cloud plugin's ObjectStore; Prometheus Operator PodMonitor and PrometheusRule)
have no bundled schema, so they are checked structurally here: apiVersion, kind,
metadata and the spec keys their operators require, plus the values this platform
depends on (KRaft, replication, retention, topics, roles, backups, the Secrets the
services read). Network policies: test_network_policies.py; the production recipe and
every reference it must resolve: test_prod_recipe.py.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections import Counter
from functools import cache
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic_settings import BaseSettings

from funnel_common.events import ALL_TOPICS
from funnel_common.kafka import TOPIC_CONFIGS
from funnel_common.settings import PLACEHOLDER_SECRET_PREFIX, CommonSettings
from funnel_tools.dashboards import DEPLOY
from handoff.settings import HandoffSettings
from lead_intake.settings import IntakeSettings
from metrics.settings import MetricsSettings
from tests.deploy import rules_to_k8s
from tests.deploy.netpol import selects

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
COMPONENTS = ("web", "worker")
# The Deployments: the web one keeps the service's name, the worker's adds "-worker".
DEPLOYMENTS = {
    (name if component == "web" else f"{name}-worker"): (name, component)
    for name in SERVICES
    for component in COMPONENTS
}
# Consumer groups read every partition of their topics: more workers than that idle.
CONSUMERS = ("handoff", "metrics")
# Each service's own PostgreSQL role (and schema): tools/src/funnel_tools/pgroles.py.
ROLES = {"lead-intake": "intake", "handoff": "handoff", "metrics": "metrics"}
# The operator commands' job templates (jobs.yaml): the `funnel` command each runs.
JOBS = {
    "funnel-migrate": [["funnel", "migrate", service] for service in SERVICES],
    "funnel-token-admin": [
        ["funnel", "token", "create", "--role", "admin", "--subject", "first-admin", "--days", "30"]
    ],
    "funnel-replay": [["funnel", "replay"]],
}
# Topics `funnel replay` rebuilds metrics from: their records are kept for good.
REPLAYED = {"funnel.leads", "funnel.handoffs", "funnel.deals", "funnel.accounts", "funnel.targets"}
# Custom resources: the spec keys their operators refuse to work without.
CUSTOM_RESOURCES = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): {"kafka"},
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): {"replicas", "roles", "storage"},
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): {"partitions", "replicas"},
    ("postgresql.cnpg.io/v1", "Cluster"): {"instances", "storage"},
    ("postgresql.cnpg.io/v1", "Database"): {"name", "owner", "cluster"},
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): {"schedule", "cluster"},
    ("barmancloud.cnpg.io/v1", "ObjectStore"): {"configuration"},
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


def pod_labels(deployment: Manifest) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def pods(manifests: tuple[Manifest, ...]) -> dict[str, dict[str, str]]:
    """Each Deployment's pod labels, by Deployment name."""
    return {name: pod_labels(d) for name, d in of_kind(manifests, "Deployment").items()}


def job_pod_spec(cronjob: Manifest) -> Manifest:
    spec: Manifest = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def pod_specs(manifests: tuple[Manifest, ...]) -> dict[str, Manifest]:
    """Every pod template the platform runs: the Deployments' and the job templates'."""
    specs = {name: pod_spec(d) for name, d in of_kind(manifests, "Deployment").items()}
    specs |= {name: job_pod_spec(c) for name, c in of_kind(manifests, "CronJob").items()}
    return specs


def service_of(container: Manifest) -> str:
    """The service whose image a container runs."""
    image: str = container["image"].rsplit("/", 1)[-1].split(":")[0]
    return image


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def manifests(overlay: str) -> tuple[Manifest, ...]:
    return render(overlay)


def test_every_built_in_object_is_valid_against_the_kubernetes_schema(
    overlay: str, manifests: tuple[Manifest, ...]
) -> None:
    validated = Counter[str]()
    for manifest in manifests:
        if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_RESOURCES:
            continue
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        validated[manifest["kind"]] += 1

    validated.pop("Secret", None)  # dev's placeholders; see the test below
    policies = {"dev": 8, "prod": 10}  # the base's seven, and the components' (netpol tests)
    assert validated == {
        "Namespace": 1,
        "ConfigMap": 1,
        "Deployment": 6,
        "Service": 3,
        "HorizontalPodAutoscaler": 3,
        "PodDisruptionBudget": 6,
        "NetworkPolicy": policies[overlay],
        "CronJob": len(JOBS),
    }


def test_the_validator_really_rejects_a_broken_object() -> None:
    deployment = dict(of_kind(render("prod"), "Deployment")["lead-intake"])
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "three"}}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_custom_resources_have_their_required_structure(
    overlay: str, manifests: tuple[Manifest, ...]
) -> None:
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

    backups = {"ObjectStore": 1, "ScheduledBackup": 1} if overlay == "prod" else {}
    assert found == {
        "Kafka": 1,
        "KafkaNodePool": 1,
        "KafkaTopic": len(TOPICS),
        "Cluster": 1,
        "Database": 1,
        "PodMonitor": 2,
        "PrometheusRule": 1,
        **backups,
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


def test_each_service_has_a_web_and_a_worker_deployment_labelled_as_such(
    manifests: tuple[Manifest, ...],
) -> None:
    deployments = of_kind(manifests, "Deployment")

    assert set(deployments) == set(DEPLOYMENTS)
    for name, deployment in deployments.items():
        service, component = DEPLOYMENTS[name]
        expected = {"app.kubernetes.io/name": service, "app.kubernetes.io/component": component}
        assert deployment["spec"]["selector"]["matchLabels"] == expected
        assert expected.items() <= deployment["metadata"]["labels"].items()
        assert expected.items() <= pod_labels(deployment).items()
        (container,) = pod_spec(deployment)["containers"]
        assert container["name"] == name
        assert container["args"][:3] == [
            "uvicorn",
            "--factory",
            f"{service.replace('-', '_')}.{component}:create_app",
        ]


def test_each_process_has_probes_resources_and_a_locked_down_container(
    manifests: tuple[Manifest, ...],
) -> None:
    for name, deployment in of_kind(manifests, "Deployment").items():
        service, component = DEPLOYMENTS[name]
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        (port,) = container["ports"]
        expected_port = SERVICES[service][1] if component == "web" else WORKER_PORTS[service]
        assert (port["name"], port["containerPort"]) == ("http", expected_port)
        assert container["args"][container["args"].index("--port") + 1] == str(expected_port)
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
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


def test_web_and_worker_run_the_same_image(manifests: tuple[Manifest, ...]) -> None:
    deployments = of_kind(manifests, "Deployment")
    for service in SERVICES:
        web = pod_spec(deployments[service])["containers"][0]
        worker = pod_spec(deployments[f"{service}-worker"])["containers"][0]
        assert web["image"] == worker["image"]
        assert web["image"].split(":")[0].endswith(f"shared-funnel/{service}")


def test_lead_intakes_worker_a_relay_alone_is_sized_below_its_web(
    manifests: tuple[Manifest, ...],
) -> None:
    deployments = of_kind(manifests, "Deployment")
    web = pod_spec(deployments["lead-intake"])["containers"][0]["resources"]
    worker = pod_spec(deployments["lead-intake-worker"])["containers"][0]["resources"]

    assert cpu(worker["requests"]["cpu"]) < cpu(web["requests"]["cpu"])
    assert memory(worker["requests"]["memory"]) < memory(web["requests"]["memory"])
    assert memory(worker["limits"]["memory"]) < memory(web["limits"]["memory"])


def test_migrations_run_in_an_init_container_with_the_funnel_command(
    manifests: tuple[Manifest, ...],
) -> None:
    for name, deployment in of_kind(manifests, "Deployment").items():
        (init,) = pod_spec(deployment)["initContainers"]
        assert init["name"] == "migrate"
        assert init["command"] == ["funnel", "migrate", DEPLOYMENTS[name][0]], name


def test_config_comes_from_the_configmap_and_secrets_only_by_reference(
    manifests: tuple[Manifest, ...],
) -> None:
    configmaps = of_kind(manifests, "ConfigMap")
    assert set(configmaps) == {"funnel-config"}
    for name, spec in pod_specs(manifests).items():
        for each in [*spec["containers"], *spec.get("initContainers", [])]:
            service = service_of(each)
            prefix = SERVICES[service][0]
            assert [ref["configMapRef"]["name"] for ref in each["envFrom"]] == ["funnel-config"]
            env = {variable["name"]: variable for variable in each["env"]}
            # The service's own role (postgres.yaml), never a shared application user.
            assert env[f"FUNNEL_{prefix}_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": f"funnel-db-{ROLES[service]}",
                "key": "uri",
            }, name
            auth = env["FUNNEL_AUTH_SECRET"]["valueFrom"]["secretKeyRef"]
            assert auth["name"].startswith("funnel-auth")
            for variable in env.values():
                assert "postgresql://" not in str(variable.get("value", ""))
                if any(word in variable["name"] for word in ("SECRET", "PASSWORD", "URL")):
                    assert "secretKeyRef" in variable["valueFrom"], variable["name"]


def test_production_ships_no_secret_and_dev_only_placeholders() -> None:
    assert of_kind(render("prod"), "Secret") == {}, "production secrets are created out of band"
    for name, secret in of_kind(render("dev"), "Secret").items():
        for key, value in secret["data"].items():
            text = base64.b64decode(value).decode()
            if key == "username":
                continue
            if key == "uri":  # postgresql://<role>:<password>@host/db
                text = text.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
            assert text.startswith(PLACEHOLDER_SECRET_PREFIX), (name, key)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_controller_is_the_trusted_proxy(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without it every visitor arrives as the ingress pod, and one rate limit covers all.
    (config,) = of_kind(render(overlay), "ConfigMap").values()
    raw = config["data"].get("FUNNEL_TRUSTED_PROXIES")
    assert raw, "FUNNEL_TRUSTED_PROXIES is not set: visitors are limited per ingress pod"

    monkeypatch.setenv("FUNNEL_TRUSTED_PROXIES", raw)
    trusted = CommonSettings().trusted_proxies  # read as a service reads it
    networks = [ip_network(entry) for entry in trusted]
    # A pod network the ingress controller's pods are in (kind's and Calico's defaults).
    for pod in ("10.244.1.7", "192.168.3.9"):
        assert any(ip_address(pod) in network for network in networks), pod
    assert not any(network.is_global for network in networks), "a public address trusted"


def test_every_setting_named_in_the_manifests_exists_in_the_services() -> None:
    # A typo in an environment variable is silently ignored by pydantic-settings.
    manifests = render("prod")
    common = {f"FUNNEL_{field.upper()}" for field in CommonSettings.model_fields}
    (config,) = of_kind(manifests, "ConfigMap").values()

    assert set(config["data"]) <= common
    for name, spec in pod_specs(manifests).items():
        for each in [*spec["containers"], *spec.get("initContainers", [])]:
            prefix, _, settings = SERVICES[service_of(each)]
            own = {f"FUNNEL_{prefix}_{field.upper()}" for field in settings.model_fields}
            assert {variable["name"] for variable in each["env"]} <= own | common, name


def test_operator_jobs_are_suspended_templates_with_the_funnel_command(
    manifests: tuple[Manifest, ...],
) -> None:
    cronjobs = of_kind(manifests, "CronJob")

    assert set(cronjobs) == set(JOBS)
    for name, cronjob in cronjobs.items():
        # `kubectl apply` must never migrate, mint a token or replay by itself.
        assert cronjob["spec"]["suspend"] is True
        job = cronjob["spec"]["jobTemplate"]["spec"]
        assert job["backoffLimit"] == 0, "a retried token job would mint two tokens"
        spec = job_pod_spec(cronjob)
        assert spec["restartPolicy"] == "Never"
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert [c["command"] for c in spec["containers"]] == JOBS[name]
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "memory" in container["resources"]["limits"]
        labels = job["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "job"
        assert labels["app.kubernetes.io/instance"] == name
    # The token is printed to the job's log: the job and its pod go soon after.
    token = cronjobs["funnel-token-admin"]["spec"]["jobTemplate"]["spec"]
    assert token["ttlSecondsAfterFinished"] <= 600
    deployments = of_kind(manifests, "Deployment")
    images = {pod_spec(d)["containers"][0]["image"] for d in deployments.values()}
    for cronjob in cronjobs.values():
        assert {c["image"] for c in job_pod_spec(cronjob)["containers"]} <= images


def test_each_service_has_its_own_postgres_role_owning_its_schema(
    manifests: tuple[Manifest, ...],
) -> None:
    (cluster,) = of_kind(manifests, "Cluster").values()
    (database,) = of_kind(manifests, "Database").values()

    roles = {role["name"]: role for role in cluster["spec"]["managed"]["roles"]}
    assert set(roles) == set(ROLES.values())
    for role in roles.values():
        assert role["login"] is True
        assert role["passwordSecret"] == {"name": f"funnel-db-{role['name']}"}
        assert not role.get("superuser")
        assert not role.get("createdb")
    assert database["spec"]["cluster"] == {"name": cluster["metadata"]["name"]}
    assert database["spec"]["name"] == cluster["spec"]["bootstrap"]["initdb"]["database"]
    assert database["spec"]["schemas"] == [{"name": role, "owner": role} for role in ROLES.values()]
    # Only metrics creates schemas (funnel replay); the same grant as funnel dev's.
    grants = cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]
    assert "GRANT CREATE ON DATABASE funnel TO metrics" in grants


def test_production_backs_postgres_up_to_an_object_store() -> None:
    manifests = render("prod")
    (cluster,) = of_kind(manifests, "Cluster").values()
    (store,) = of_kind(manifests, "ObjectStore").values()
    (backup,) = of_kind(manifests, "ScheduledBackup").values()

    [plugin] = cluster["spec"]["plugins"]
    assert plugin["name"] == "barman-cloud.cloudnative-pg.io"
    assert plugin["isWALArchiver"] is True
    assert plugin["parameters"]["barmanObjectName"] == store["metadata"]["name"]
    assert store["spec"]["configuration"]["destinationPath"].startswith("s3://")
    assert re.fullmatch(r"[1-9]\d*[dwm]", store["spec"]["retentionPolicy"])
    assert backup["spec"]["cluster"] == {"name": cluster["metadata"]["name"]}
    assert backup["spec"]["method"] == "plugin"
    assert backup["spec"]["pluginConfiguration"] == {"name": plugin["name"]}
    # Six fields, seconds first: CloudNativePG's schedule format.
    assert len(backup["spec"]["schedule"].split()) == 6
    assert of_kind(render("dev"), "ObjectStore") == {}


def test_the_web_service_hpa_and_pdb_select_the_web_pods_only(
    manifests: tuple[Manifest, ...],
) -> None:
    services = of_kind(manifests, "Service")
    hpas = of_kind(manifests, "HorizontalPodAutoscaler")
    pdbs = of_kind(manifests, "PodDisruptionBudget")
    deployments = of_kind(manifests, "Deployment")
    labels = pods(manifests)

    assert set(services) == set(hpas) == set(SERVICES)
    assert set(pdbs) == set(DEPLOYMENTS)
    for name in SERVICES:
        selector = {"matchLabels": services[name]["spec"]["selector"]}
        # An HPA measures the pods its target's selector matches: workers must not count.
        assert {d for d, pod in labels.items() if selects(selector, pod)} == {name}
        assert {
            d for d, pod in labels.items() if selects(deployments[name]["spec"]["selector"], pod)
        } == {name}
        assert services[name]["spec"]["ports"][0]["targetPort"] == "http"
        assert hpas[name]["spec"]["scaleTargetRef"]["name"] == name
        assert hpas[name]["spec"]["minReplicas"] <= deployments[name]["spec"]["replicas"]
    for name, pdb in pdbs.items():
        assert {d for d, pod in labels.items() if selects(pdb["spec"]["selector"], pod)} == {name}
    for pod in labels.values():
        assert pod["app.kubernetes.io/part-of"] == "shared-funnel"


def test_workers_have_no_service_and_no_cpu_autoscaler(manifests: tuple[Manifest, ...]) -> None:
    # Nothing calls a worker, and consumers scale by partitions, not by CPU.
    targets = {
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in of_kind(manifests, "HorizontalPodAutoscaler").values()
    }
    workers = {name for name, (_, component) in DEPLOYMENTS.items() if component == "worker"}
    labels = pods(manifests)

    assert targets & workers == set()
    for service in of_kind(manifests, "Service").values():
        selector = {"matchLabels": service["spec"]["selector"]}
        assert not any(selects(selector, labels[worker]) for worker in workers)


def test_consumer_workers_never_outnumber_the_partitions(manifests: tuple[Manifest, ...]) -> None:
    deployments = of_kind(manifests, "Deployment")
    (config,) = of_kind(manifests, "ConfigMap").values()
    partitions = {
        topic["spec"]["partitions"] for topic in of_kind(manifests, "KafkaTopic").values()
    }

    assert partitions == {int(config["data"]["FUNNEL_KAFKA_TOPIC_PARTITIONS"])}
    for service in CONSUMERS:
        assert deployments[f"{service}-worker"]["spec"]["replicas"] <= min(partitions)


def test_one_pod_monitor_scrapes_web_and_worker_pods_on_their_http_port(
    manifests: tuple[Manifest, ...],
) -> None:
    monitor = of_kind(manifests, "PodMonitor")["shared-funnel"]
    spec = monitor["spec"]

    assert {d for d, pod in pods(manifests).items() if selects(spec["selector"], pod)} == set(
        DEPLOYMENTS
    )
    # job = the service (as in deploy/prometheus/*.yml), component = web | worker.
    assert spec["jobLabel"] == "app.kubernetes.io/name"
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    assert endpoint["relabelings"] == [
        {
            "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
            "targetLabel": "component",
        }
    ]
    assert of_kind(manifests, "ServiceMonitor") == {}


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
        # What replay reads is kept for good; a record that expired is an event lost.
        if topic["spec"]["topicName"] in REPLAYED:
            assert topic["spec"]["config"]["retention.ms"] == -1, topic["spec"]["topicName"]
        # What the services create themselves (funnel_common.kafka), Strimzi creates too.
        for name, value in TOPIC_CONFIGS.get(topic["spec"]["topicName"], {}).items():
            assert str(topic["spec"]["config"][name]) == value, (topic["spec"]["topicName"], name)
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
    deployments = of_kind(manifests, "Deployment")
    for name, deployment in deployments.items():
        assert ":" in pod_spec(deployment)["containers"][0]["image"].rsplit("/", 1)[-1]
        service, component = DEPLOYMENTS[name]
        if component == "web" or service in CONSUMERS:
            assert deployment["spec"]["replicas"] == 3, name
    # lead-intake's worker is its relay alone: a leader and a standby.
    assert deployments["lead-intake-worker"]["spec"]["replicas"] == 2
    for name, pdb in of_kind(manifests, "PodDisruptionBudget").items():
        if DEPLOYMENTS[name][1] == "web":
            assert pdb["spec"]["minAvailable"] == 2
        else:
            # Never a budget that blocks every eviction (a node drain would hang).
            assert pdb["spec"]["maxUnavailable"] == 1
            assert deployments[name]["spec"]["replicas"] >= 2


def test_the_migrate_init_container_migrates_a_real_database(database_url: str) -> None:
    deployments = of_kind(render("prod"), "Deployment")
    for name in SERVICES:
        (init,) = pod_spec(deployments[name])["initContainers"]
        # The worker's init container is the same (checked above): run each once.
        assert init == pod_spec(deployments[f"{name}-worker"])["initContainers"][0]
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
        # `funnel` as the image installs it (here beside this interpreter).
        command = [str(Path(sys.executable).with_name(init["command"][0])), *init["command"][1:]]

        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

        # The container's log is both streams (metrics' command prints to stderr).
        assert first.returncode == 0, first.stderr
        assert re.match(rf"{name}: [1-9]\d* migration\(s\) applied\n", first.stdout + first.stderr)
        assert again.returncode == 0, again.stderr
        assert again.stdout + again.stderr == f"{name}: 0 migration(s) applied\n"


def test_the_prometheus_rule_object_carries_exactly_the_shipped_rules() -> None:
    (rule,) = of_kind(render("prod"), "PrometheusRule").values()

    assert rules_to_k8s.TARGET.read_text() == rules_to_k8s.render(), (
        "deploy/k8s/base/prometheus-rules.yaml is stale: "
        "run .venv/bin/python -m tests.deploy.rules_to_k8s"
    )
    assert rule["spec"]["groups"] == rules_to_k8s.rule_groups()
