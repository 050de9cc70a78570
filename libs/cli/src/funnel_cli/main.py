"""``funnel``: the platform's command line.

The operator commands belong to their services (``token`` to handoff, ``replay`` to
metrics, ``migrate`` to each) and are mounted here. The development tools (``dev``,
``seed``, ``import``) live in ``funnel_tools``, which service images do not install:
where it is missing, so are they.
"""

from __future__ import annotations

import importlib.util

import typer

from handoff import cli as handoff_cli
from lead_intake import cli as intake_cli
from metrics import cli as metrics_cli

app = typer.Typer(
    help="Shared Funnel: one live revenue funnel for marketing and sales.", no_args_is_help=True
)


@app.callback()
def main() -> None:
    """Shared Funnel: one live revenue funnel for marketing and sales."""


app.command(
    "replay", help="Rebuild the metrics projections from the retained events, check, switch."
)(metrics_cli.replay)
app.add_typer(handoff_cli.tokens_app, name="token")

migrate_app = typer.Typer(
    help="Apply a service's pending database migrations (what its start-up does first).",
    no_args_is_help=True,
)
migrate_app.command("lead-intake")(intake_cli.migrate)
migrate_app.command("handoff")(handoff_cli.migrate)
migrate_app.command("metrics")(metrics_cli.migrate)
app.add_typer(migrate_app, name="migrate")

if importlib.util.find_spec("funnel_tools") is not None:
    from funnel_tools.cli import mount

    mount(app)


if __name__ == "__main__":
    app()
