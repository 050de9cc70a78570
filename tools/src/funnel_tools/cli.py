"""The development commands ``funnel`` mounts when this package is installed."""

from __future__ import annotations

import typer

from funnel_tools import dev, importer, seed


def mount(app: typer.Typer) -> None:
    """Add ``dev``, ``import`` and ``seed`` to the ``funnel`` command."""
    app.command(
        "dev", help="Start the embedded platform: PostgreSQL, broker and the three services."
    )(dev.run)
    app.command(
        "import", help="Import leads, deals or accounts from a CSV file through lead-intake."
    )(importer.run)
    app.command(
        "seed", help="Drive a realistic simulated funnel through the running platform's APIs."
    )(seed.run)
