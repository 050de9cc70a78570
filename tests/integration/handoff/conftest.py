from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from funnel_common.settings import CommonSettings
from tests.integration.handoff.support import Handoffs, handoff_settings, running_handoffs


@pytest.fixture
async def handoffs(database_url: str, settings: CommonSettings) -> AsyncIterator[Handoffs]:
    """handoff without background workers: tests drive the SLA scanner with their own clock."""
    async with running_handoffs(handoff_settings(database_url, settings)) as running:
        yield running
