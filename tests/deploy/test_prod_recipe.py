"""The production recipe in docs/operations.md starts what the prod overlay needs.

The recipe is run as written (bash), with a ``kubectl`` on PATH that records what it is
asked to do instead of talking to a cluster. Then every reference in the rendered prod
overlay (the pods' Secrets and ConfigMaps, CloudNativePG's managed roles, the backup
object store's credentials) must resolve to something the recipe created or the overlay
ships, with the keys asked for. And each service's settings, built from the manifests'
environment with the recipe's secrets, load in production, and refuse a placeholder.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from funnel_common.settings import PLACEHOLDER_SECRET_PREFIX
from funnel_tools.dashboards import ROOT
from tests.deploy.test_k8s_manifests import (
    SERVICES,
    Manifest,
    of_kind,
    pod_specs,
    render,
    service_of,
)

OPERATIONS = ROOT / "docs" / "operations.md"
NAMESPACE = "shared-funnel"
# Records each call as one JSON line: its arguments.
RECORDING_KUBECTL = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["KUBECTL_RECORD"], "a") as record:
    record.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def recipe() -> str:
    text = OPERATIONS.read_text()
    found = re.search(r"<!-- recipe:prod -->\n```sh\n(.*?)```\n<!-- /recipe:prod -->", text, re.S)
    assert found, "docs/operations.md has no production recipe block"
    return found.group(1)


@dataclass
class Created:
    """What the recipe asked kubectl for."""

    namespaces: set[str] = field(default_factory=set)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    secret_types: dict[str, str] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)


def _parse(calls: list[list[str]]) -> Created:
    created = Created()
    for args in calls:
        namespace = args[args.index("-n") + 1] if "-n" in args else None
        words = [a for i, a in enumerate(args) if a != "-n" and (i == 0 or args[i - 1] != "-n")]
        if words[:2] == ["create", "namespace"]:
            created.namespaces.add(words[2])
        elif words[:3] == ["create", "secret", "generic"]:
            assert namespace == NAMESPACE, args
            name = words[3]
            literals = [
                w.removeprefix("--from-literal=") for w in words if w.startswith("--from-literal=")
            ]
            created.secrets[name] = dict(literal.split("=", 1) for literal in literals)
            types = [w.removeprefix("--type=") for w in words if w.startswith("--type=")]
            created.secret_types[name] = types[0] if types else "Opaque"
        elif words[:2] == ["apply", "-k"]:
            created.applied.append(words[2])
        else:
            raise AssertionError(
                f"the recipe runs a kubectl command this test does not know: {args}"
            )
    return created


@cache
def run_recipe(workdir: Path) -> Created:
    bin_dir = workdir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(RECORDING_KUBECTL)
    kubectl.chmod(0o755)
    record = workdir / "kubectl.jsonl"
    record.write_text("")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "KUBECTL_RECORD": str(record),
        "BACKUP_ACCESS_KEY_ID": "AKIAEXAMPLEBACKUPKEY",
        "BACKUP_SECRET_ACCESS_KEY": "a-backup-secret-access-key-from-the-cloud",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", recipe()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return _parse([json.loads(line) for line in record.read_text().splitlines()])


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory) -> Created:
    return run_recipe(tmp_path_factory.mktemp("recipe"))


@dataclass(frozen=True)
class Reference:
    kind: str  # Secret | ConfigMap
    name: str
    key: str | None
    where: str


def _pod_references(name: str, spec: Manifest) -> list[Reference]:
    found = []
    for container in [*spec["containers"], *spec.get("initContainers", [])]:
        where = f"{name}/{container['name']}"
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                found.append(Reference("Secret", source["secretRef"]["name"], None, where))
            if "configMapRef" in source:
                found.append(Reference("ConfigMap", source["configMapRef"]["name"], None, where))
        for variable in container.get("env", []):
            value_from = variable.get("valueFrom", {})
            if "secretKeyRef" in value_from:
                ref = value_from["secretKeyRef"]
                found.append(Reference("Secret", ref["name"], ref["key"], where))
            if "configMapKeyRef" in value_from:
                ref = value_from["configMapKeyRef"]
                found.append(Reference("ConfigMap", ref["name"], ref["key"], where))
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            found.append(Reference("Secret", volume["secret"]["secretName"], None, name))
        if "configMap" in volume:
            found.append(Reference("ConfigMap", volume["configMap"]["name"], None, name))
    return found


def references(manifests: tuple[Manifest, ...]) -> list[Reference]:
    """Every Secret and ConfigMap something in the overlay reads."""
    found = [
        ref for name, spec in pod_specs(manifests).items() for ref in _pod_references(name, spec)
    ]
    for cluster in of_kind(manifests, "Cluster").values():
        for role in cluster["spec"].get("managed", {}).get("roles", []):
            secret = role["passwordSecret"]["name"]
            for key in ("username", "password"):
                found.append(Reference("Secret", secret, key, f"Cluster role {role['name']}"))
        for field_name in ("superuserSecret",):
            if field_name in cluster["spec"]:
                found.append(
                    Reference("Secret", cluster["spec"][field_name]["name"], None, "Cluster")
                )
    for store in of_kind(manifests, "ObjectStore").values():
        credentials = store["spec"]["configuration"].get("s3Credentials", {})
        for ref in credentials.values():
            if isinstance(ref, dict) and "name" in ref:
                found.append(Reference("Secret", ref["name"], ref["key"], "ObjectStore"))
    return found


def test_the_recipe_creates_the_namespace_and_applies_the_prod_overlay(created: Created) -> None:
    assert created.namespaces == {NAMESPACE}
    assert created.applied == ["deploy/k8s/overlays/prod"]
    (namespace,) = of_kind(render("prod"), "Namespace")
    assert namespace == NAMESPACE


def test_every_secret_and_configmap_the_overlay_reads_is_created_or_shipped(
    created: Created,
) -> None:
    manifests = render("prod")
    shipped = {
        "Secret": {
            name: set(s.get("data", {})) | set(s.get("stringData", {}))
            for name, s in of_kind(manifests, "Secret").items()
        },
        "ConfigMap": {
            name: set(c.get("data", {})) for name, c in of_kind(manifests, "ConfigMap").items()
        },
    }
    made = {"Secret": {name: set(keys) for name, keys in created.secrets.items()}, "ConfigMap": {}}
    refs = references(manifests)

    assert {ref.name for ref in refs if ref.kind == "Secret"} >= {"funnel-auth", "funnel-backup-s3"}
    for ref in refs:
        keys = shipped[ref.kind].get(ref.name, made[ref.kind].get(ref.name))
        assert keys is not None, f"{ref.where} reads {ref.kind} {ref.name}, which nothing creates"
        assert ref.key is None or ref.key in keys, f"{ref.where} reads {ref.name}:{ref.key}"
    # Nothing made for nobody: every created Secret is read by something.
    assert set(created.secrets) == {ref.name for ref in refs if ref.kind == "Secret"}


def test_the_recipes_secrets_are_random_distinct_and_the_roles_match(created: Created) -> None:
    values = [
        v
        for name, keys in created.secrets.items()
        for k, v in keys.items()
        if k not in ("username", "uri")
    ]
    assert len(values) == len(set(values)), "one value used for two secrets"
    for value in values:
        assert len(value) >= 20
        assert not value.startswith(PLACEHOLDER_SECRET_PREFIX)
    cluster = next(iter(of_kind(render("prod"), "Cluster").values()))
    for role in cluster["spec"]["managed"]["roles"]:
        secret = created.secrets[role["passwordSecret"]["name"]]
        # CloudNativePG reads a basic-auth Secret whose username is the role's name.
        assert created.secret_types[role["passwordSecret"]["name"]] == "kubernetes.io/basic-auth"
        assert secret["username"] == role["name"]
        assert secret["uri"] == (
            f"postgresql://{role['name']}:{secret['password']}@funnel-db-rw:5432/funnel"
        )


def _container_env(
    container: Manifest, config: dict[str, str], secrets: dict[str, dict[str, str]]
) -> dict[str, str]:
    env = dict(config)
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def _load(container: Manifest, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in list(os.environ):
        if name.startswith("FUNNEL_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return SERVICES[service_of(container)][2]()


def _containers() -> list[tuple[str, Manifest]]:
    return [
        (f"{name}/{container['name']}", container)
        for name, spec in pod_specs(render("prod")).items()
        for container in [*spec["containers"], *spec.get("initContainers", [])]
    ]


def test_each_process_starts_in_production_with_the_recipes_secrets(
    created: Created, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config,) = of_kind(render("prod"), "ConfigMap").values()
    assert config["data"]["FUNNEL_ENVIRONMENT"] == "production"

    for where, container in _containers():
        settings = _load(
            container, _container_env(container, config["data"], created.secrets), monkeypatch
        )
        assert settings.common.environment == "production", where


@pytest.mark.parametrize("where", [where for where, _ in _containers()])
def test_a_placeholder_in_any_secret_a_process_reads_stops_it(
    where: str, created: Created, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config,) = of_kind(render("prod"), "ConfigMap").values()
    container = dict(_containers())[where]
    secret_variables = [
        v["name"]
        for v in container["env"]
        if "secretKeyRef" in v.get("valueFrom", {}) and not v["name"].endswith("_DATABASE_URL")
    ]
    assert "FUNNEL_AUTH_SECRET" in secret_variables

    for variable in secret_variables:
        env = _container_env(container, config["data"], created.secrets)
        env[variable] = f"{PLACEHOLDER_SECRET_PREFIX}{variable.lower()}-change-me"
        with pytest.raises(ValidationError, match=variable):
            _load(container, env, monkeypatch)


def test_the_recipe_is_one_shell_script_an_operator_can_paste() -> None:
    for line in recipe().splitlines():
        shlex.split(line.rstrip("\\"))  # balanced quotes on each line
    assert "openssl rand" in recipe()
