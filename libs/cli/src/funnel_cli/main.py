"""``funnel``: the platform's command line."""

from __future__ import annotations

import typer

from funnel_cli import dev, importer, replay, seed, tokens

app = typer.Typer(
    help="Shared Funnel: one live revenue funnel for marketing and sales.", no_args_is_help=True
)


@app.callback()
def main() -> None:
    """Shared Funnel: one live revenue funnel for marketing and sales."""


app.command("dev", help="Start the embedded platform: PostgreSQL, broker and the three services.")(
    dev.run
)
app.command(
    "replay", help="Rebuild the metrics projections from the retained events, check, switch."
)(replay.run)

app.command("import", help="Import leads, deals or accounts from a CSV file through lead-intake.")(
    importer.run
)
app.command("seed", help="Drive a realistic simulated funnel through the running platform's APIs.")(
    seed.run
)
app.add_typer(tokens.app, name="token")


if __name__ == "__main__":
    app()
