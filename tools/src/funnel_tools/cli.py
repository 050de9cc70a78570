"""The development commands ``funnel`` mounts when this package is installed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from funnel_tools import dev, importer, seed

Needs = Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]]


def mount(app: typer.Typer, needs: Needs) -> None:
    """Add ``dev``, ``import`` and ``seed`` to the ``funnel`` command; ``import`` and
    ``seed`` find the running platform as the operator commands do (``needs``)."""
    app.command(
        "dev", help="Start the embedded platform: PostgreSQL, broker and the three services."
    )(dev.run)
    app.command(
        "import", help="Import leads, deals or accounts from a CSV file through lead-intake."
    )(needs()(importer.run))
    # seed issues its tokens straight into handoff's database, as `funnel token` does.
    app.command(
        "seed", help="Drive a realistic simulated funnel through the running platform's APIs."
    )(needs("FUNNEL_HANDOFF_DATABASE_URL")(seed.run))
