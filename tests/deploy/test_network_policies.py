"""The rendered NetworkPolicies let exactly the configured traffic through.

Each overlay is rendered, and every pod the platform runs (the six Deployments and the
three operator job templates) is asked, through an evaluator of the policies
(``tests.deploy.netpol``), which of a list of destinations it may reach. Default deny,
then: DNS and PostgreSQL for all; Kafka for the workers and `funnel replay`; and what
the overlay opted into from deploy/k8s/components/: handoff's notifier out to HTTP(S)
webhooks (egress-webhooks) and SMTP submission (egress-smtp), and every process to the
OpenTelemetry collector (otlp). Never the cloud's metadata endpoint, private
addresses, another namespace's database or any other port.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache

import pytest
import yaml

from tests.deploy.netpol import Destination, Manifest, egress_allowed, selects
from tests.deploy.test_k8s_manifests import K8S, kubectl, of_kind, pods, render

NAMESPACE_LABEL = "kubernetes.io/metadata.name"
INTERNET = "203.0.113.10"  # TEST-NET-3: some address on the internet
MAIL_SERVER = "203.0.113.25"


def _pod(
    name: str, namespace: str | None, port: int, labels: dict[str, str], **more: str
) -> Destination:
    return Destination(
        name,
        port,
        namespace=namespace,
        namespace_labels={NAMESPACE_LABEL: namespace} if namespace else {},
        pod_labels=labels,
        protocol=more.get("protocol", "TCP"),
    )


def destinations(namespace: str) -> list[Destination]:
    postgres = {"cnpg.io/cluster": "funnel-db"}
    kafka = {"strimzi.io/cluster": "funnel", "strimzi.io/kind": "Kafka"}
    collector = {"app.kubernetes.io/name": "opentelemetry-collector"}
    return [
        _pod("dns", "kube-system", 53, {"k8s-app": "kube-dns"}, protocol="UDP"),
        _pod("dns-tcp", "kube-system", 53, {"k8s-app": "kube-dns"}),
        _pod("postgres", namespace, 5432, postgres),
        _pod("kafka", namespace, 9092, kafka),
        _pod("otlp-grpc", "observability", 4317, collector),
        _pod("otlp-http", "observability", 4318, collector),
        Destination("webhook-https", 443, ip=INTERNET),
        Destination("webhook-http", 80, ip=INTERNET),
        Destination("smtp-submission", 587, ip=MAIL_SERVER),
        Destination("smtps", 465, ip=MAIL_SERVER),
        # Never: another port, plain SMTP relaying, private and metadata addresses,
        # someone else's database, the collector's other ports, a pod in the cluster.
        Destination("internet-ssh", 22, ip=INTERNET),
        Destination("smtp-relay", 25, ip=MAIL_SERVER),
        Destination("cloud-metadata", 80, ip="169.254.169.254"),
        Destination("private-https", 443, ip="10.20.30.40"),
        Destination("private-smtp", 587, ip="192.168.1.25"),
        _pod("another-namespaces-postgres", "other", 5432, postgres),
        _pod("collector-admin", "observability", 13133, collector),
        _pod("kafka-elsewhere", "other", 9092, kafka),
    ]


BASE = {"dns", "dns-tcp", "postgres"}
COMPONENTS = {
    "base": set[str](),
    "dev": {"egress-webhooks"},
    "prod": {"egress-webhooks", "egress-smtp", "otlp"},
}


def expected(workload: str, component: str, instance: str, opted_in: set[str]) -> set[str]:
    reach = set(BASE)
    if component == "worker" or instance == "funnel-replay":
        reach.add("kafka")
    if workload == "handoff-worker":
        if "egress-webhooks" in opted_in:
            reach |= {"webhook-https", "webhook-http"}
        if "egress-smtp" in opted_in:
            reach |= {"smtp-submission", "smtps"}
    if "otlp" in opted_in:
        reach |= {"otlp-grpc", "otlp-http"}
    return reach


@cache
def rendered(overlay: str) -> tuple[Manifest, ...]:
    if overlay != "base":
        return render(overlay)
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "base")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def workloads(manifests: tuple[Manifest, ...]) -> dict[str, dict[str, str]]:
    """Every pod the platform runs, by workload name: its labels."""
    found = pods(manifests)
    for name, cronjob in of_kind(manifests, "CronJob").items():
        found[name] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return found


@pytest.mark.parametrize("overlay", COMPONENTS)
def test_each_pod_reaches_exactly_what_is_configured(overlay: str) -> None:
    manifests = rendered(overlay)
    [namespace] = of_kind(manifests, "Namespace")
    policies = list(of_kind(manifests, "NetworkPolicy").values())

    for workload, labels in workloads(manifests).items():
        reached = {
            to.name
            for to in destinations(namespace)
            if egress_allowed(policies, namespace, labels, to)
        }
        component = labels["app.kubernetes.io/component"]
        instance = labels.get("app.kubernetes.io/instance", "")
        assert reached == expected(workload, component, instance, COMPONENTS[overlay]), workload


def test_the_evaluator_denies_by_default_and_unions_the_policies() -> None:
    labels = {"app": "x"}
    deny = {"metadata": {}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    https = {
        "metadata": {},
        "spec": {
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}],
        },
    }
    out = Destination("out", 443, ip=INTERNET)

    assert egress_allowed([], "ns", labels, out)
    assert not egress_allowed([deny], "ns", labels, out)
    assert egress_allowed([deny, https], "ns", labels, out)
    assert not egress_allowed([deny, https], "ns", labels, Destination("ssh", 22, ip=INTERNET))


def test_each_process_accepts_connections_only_from_what_calls_it() -> None:
    manifests = render("prod")
    policies = [
        p["spec"]
        for p in of_kind(manifests, "NetworkPolicy").values()
        if "Ingress" in p["spec"]["policyTypes"]
    ]
    for workload, labels in workloads(manifests).items():
        sources = {
            peer["namespaceSelector"]["matchLabels"][NAMESPACE_LABEL]
            for spec in policies
            if selects(spec["podSelector"], labels)
            for rule in spec.get("ingress", [])
            for peer in rule["from"]
        }
        component = labels["app.kubernetes.io/component"]
        expected_sources = {
            "web": {"ingress-nginx", "monitoring"},
            "worker": {"monitoring"},
            "job": set(),
        }[component]
        assert sources == expected_sources, workload
        # Default deny covers every pod, so a job with no ingress rule accepts nothing.
        assert selects(
            of_kind(manifests, "NetworkPolicy")["services-default-deny"]["spec"]["podSelector"],
            labels,
        ), workload


def test_only_workers_and_replay_are_peers_of_the_kafka_listener() -> None:
    manifests = render("prod")
    (kafka,) = of_kind(manifests, "Kafka").values()
    (listener,) = kafka["spec"]["kafka"]["listeners"]

    for workload, labels in workloads(manifests).items():
        reaches = any(
            selects(peer["podSelector"], labels) for peer in listener["networkPolicyPeers"]
        )
        kafka_client = (
            labels["app.kubernetes.io/component"] == "worker"
            or labels.get("app.kubernetes.io/instance") == "funnel-replay"
        )
        assert reaches is kafka_client, workload
