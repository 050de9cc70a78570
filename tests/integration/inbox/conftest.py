from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest
import pytest_asyncio

from funnel_common.kafka import ensure_topics
from funnel_common.settings import CommonSettings
from funnel_tools.embedded import EmbeddedBroker, EmbeddedPostgres
from tests.brokers import Tansu
from tests.conftest import require_system_tool
from tests.integration.handoff.support import Handoffs, handoff_settings, running_handoffs

ROOT = Path(__file__).resolve().parents[3]
# axe-core from npm (MPL-2.0), pinned; installed once into the git-ignored .tools/.
AXE_VERSION = "4.10.3"
AXE_DIR = ROOT / ".tools" / f"axe-core-{AXE_VERSION}"


@pytest.fixture
async def handoffs(database_url: str, settings: CommonSettings) -> AsyncIterator[Handoffs]:
    """handoff without background workers, reached over plain http."""
    async with running_handoffs(handoff_settings(database_url, settings)) as running:
        yield running


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, fetched with npm the first time (CI has npm; without it, and
    unless FUNNEL_REQUIRE_SYSTEM_TOOLS=1, the accessibility checks skip)."""
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = require_system_tool("npm", "installs axe-core for the inbox's accessibility checks")
        # Into a directory of our own, then renamed: two test runs never see half of it.
        staging = AXE_DIR.with_name(f"{AXE_DIR.name}.{os.getpid()}")
        package = f"axe-core@{AXE_VERSION}"
        subprocess.run(
            [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", package],
            check=True,
            capture_output=True,
            timeout=300,
        )
        with contextlib.suppress(OSError):  # another run finished first: use its copy
            staging.rename(AXE_DIR)
        shutil.rmtree(staging, ignore_errors=True)
    return script.read_text()


@pytest.fixture(scope="module")
def module_database_url(postgres: EmbeddedPostgres) -> str:
    """A database shared by one module's tests (each uses its own teams and reps)."""
    name = f"inbox_{os.getpid()}_{uuid4().hex[:8]}"
    postgres.create_database(name)
    return postgres.dsn(name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_topics(tansu_broker: EmbeddedBroker) -> CommonSettings:
    """Topics of one module, as the ``settings`` fixture makes them for one test (on the
    session's embedded broker, with its client settings)."""
    settings = CommonSettings(
        environment="test",
        **Tansu(tansu_broker).client_settings(),
        kafka_bootstrap_servers=tansu_broker.bootstrap_servers,
        kafka_topic_prefix=f"t{uuid4().hex[:10]}.",
        kafka_topic_partitions=2,
        outbox_poll_interval_seconds=0.5,
        consumer_retry_backoff_seconds=0.01,
        log_format="text",
    )
    await ensure_topics(settings)
    return settings
