"""The three services use the same module names for the same roles (STYLE.md), so a
newcomer who has read one finds anything in another."""

from __future__ import annotations

import importlib

import pytest
from fastapi import APIRouter

SERVICES = ("lead_intake", "handoff", "metrics")
# The roles every service has; each may add modules of its own domain.
ROLES = ("runtime", "web", "worker", "settings", "api", "store", "cli")


@pytest.mark.parametrize("package", SERVICES)
def test_every_service_has_a_module_for_each_role(package: str) -> None:
    for role in ROLES:
        importlib.import_module(f"{package}.{role}")
    web = importlib.import_module(f"{package}.web")
    worker = importlib.import_module(f"{package}.worker")
    assert callable(web.create_app)
    assert callable(worker.create_app)


@pytest.mark.parametrize("package", SERVICES)
def test_the_service_names_itself_once(package: str) -> None:
    runtime = importlib.import_module(f"{package}.runtime")
    assert runtime.SERVICE in ("lead-intake", "handoff", "metrics")


@pytest.mark.parametrize("package", SERVICES)
def test_api_builds_or_is_a_router(package: str) -> None:
    api = importlib.import_module(f"{package}.api")
    assert isinstance(api.router, APIRouter) or callable(api.router)
