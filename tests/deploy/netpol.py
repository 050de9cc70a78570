"""A small evaluator of Kubernetes NetworkPolicy egress, for the rendered manifests.

It follows the API's semantics (https://kubernetes.io/docs/concepts/services-networking/
network-policies/): a pod selected by no Egress policy may go anywhere; a selected pod
may reach a destination when some selecting policy has a rule whose peers match it
(pods in the policy's namespace by ``podSelector``, pods of matching namespaces by
``namespaceSelector``, both for both; addresses by ``ipBlock`` with its ``except``) and
whose ports match (none listed: every port). Allowed traffic is the union of all
selecting policies. Good enough to say which of a list of destinations each of our pods
reaches; not a CNI.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

Manifest = dict[str, Any]


def selects(selector: Manifest, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) matches ``labels``."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


@dataclass(frozen=True)
class Destination:
    """Somewhere a pod may try to connect: a pod (namespace and labels) or an address."""

    name: str
    port: int
    protocol: str = "TCP"
    namespace: str | None = None
    namespace_labels: dict[str, str] = field(default_factory=dict)
    pod_labels: dict[str, str] | None = None
    ip: str | None = None


def _peer_matches(peer: Manifest, policy_namespace: str, to: Destination) -> bool:
    if "ipBlock" in peer:
        if to.ip is None:
            return False
        address = ipaddress.ip_address(to.ip)
        block = peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if to.pod_labels is None:
        return False
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], to.namespace_labels)
    else:
        in_namespace = to.namespace == policy_namespace
    pods = peer.get("podSelector")
    return bool(in_namespace) and (pods is None or selects(pods, to.pod_labels))


def _port_matches(port: Manifest, to: Destination) -> bool:
    if port.get("protocol", "TCP") != to.protocol:
        return False
    if "port" not in port:
        return True
    first = port["port"]
    if not isinstance(first, int):
        raise AssertionError(f"named egress port {first!r}: not evaluated here")
    last: int = port.get("endPort", first)
    return first <= to.port <= last


def egress_allowed(
    policies: list[Manifest], namespace: str, pod_labels: dict[str, str], to: Destination
) -> bool:
    """Whether a pod with ``pod_labels`` in ``namespace`` may connect to ``to``."""
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace", namespace) == namespace
        and "Egress" in p["spec"].get("policyTypes", [])
        and selects(p["spec"]["podSelector"], pod_labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("egress", []):
            peers = rule.get("to")
            ports = rule.get("ports")
            to_ok = not peers or any(
                _peer_matches(peer, policy["metadata"].get("namespace", namespace), to)
                for peer in peers
            )
            ports_ok = not ports or any(_port_matches(port, to) for port in ports)
            if to_ok and ports_ok:
                return True
    return False
