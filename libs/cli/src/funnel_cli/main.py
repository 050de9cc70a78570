"""``funnel``: the platform's command line.

The operator commands belong to their services (``token`` to handoff, ``replay`` to
metrics, ``migrate`` to each) and are mounted here; ``privacy`` speaks to lead-intake's
and handoff's APIs together (``funnel_cli.privacy``). The development tools (``dev``,
``seed``, ``import``) live in ``funnel_tools``, which service images do not install:
where it is missing, so are they.

Every command that talks to the platform finds the one ``funnel dev`` started, on
whatever ports it chose (``funnel_cli.platform``), and a failure an operator can fix (a
database that is down, a wrong URL, a refused setting) is one line and exit status 1
(``funnel_cli.errors``), never a traceback.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import logging
import os
from collections.abc import Callable
from typing import Any

import typer

from funnel_cli import privacy
from funnel_cli.errors import explain
from funnel_cli.platform import adopt_running_platform
from handoff import cli as handoff_cli
from lead_intake import cli as intake_cli
from metrics import cli as metrics_cli

app = typer.Typer(
    help="Shared Funnel: one live revenue funnel for marketing and sales.", no_args_is_help=True
)

# What each command needs from the environment or a running `funnel dev`.
HANDOFF_DATABASE = "FUNNEL_HANDOFF_DATABASE_URL"
DATABASES = {
    "lead-intake": "FUNNEL_INTAKE_DATABASE_URL",
    "handoff": HANDOFF_DATABASE,
    "metrics": "FUNNEL_METRICS_DATABASE_URL",
}
_used: dict[str, str] = {}


def needs(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run a command with the platform's settings: ``names`` from the environment, or
    from the running ``funnel dev`` (refused when neither has them)."""

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_platform(*args: Any, **kwargs: Any) -> Any:
            adopt_running_platform(names)
            databases = [name for name in names if name.endswith("_DATABASE_URL")]
            if databases:
                _used["database_url"] = os.environ[databases[0]]
            return command(*args, **kwargs)

        return with_platform

    return wrap


@app.callback()
def main() -> None:
    """Shared Funnel: one live revenue funnel for marketing and sales."""


app.command(
    "replay", help="Rebuild the metrics projections from the retained events, check, switch."
)(needs(DATABASES["metrics"], "FUNNEL_KAFKA_BOOTSTRAP_SERVERS")(metrics_cli.replay))

token_app = typer.Typer(help=handoff_cli.tokens_app.info.help, no_args_is_help=True)
for registered in handoff_cli.tokens_app.registered_commands:
    mounted = copy.copy(registered)
    assert registered.callback is not None
    mounted.callback = needs(HANDOFF_DATABASE)(registered.callback)
    token_app.registered_commands.append(mounted)
app.add_typer(token_app, name="token")

migrate_app = typer.Typer(
    help="Apply a service's pending database migrations (what its start-up does first).",
    no_args_is_help=True,
)
migrate_app.command("lead-intake")(needs(DATABASES["lead-intake"])(intake_cli.migrate))
migrate_app.command("handoff")(needs(DATABASES["handoff"])(handoff_cli.migrate))
migrate_app.command("metrics")(needs(DATABASES["metrics"])(metrics_cli.migrate))
app.add_typer(migrate_app, name="migrate")

privacy_app = typer.Typer(help=privacy.HELP, no_args_is_help=True)
for name, command in (("export", privacy.export), ("erase", privacy.erase)):
    privacy_app.command(name)(needs(privacy.INTAKE_URL, privacy.HANDOFF_URL)(command))
app.add_typer(privacy_app, name="privacy")

if importlib.util.find_spec("funnel_tools") is not None:
    from funnel_tools.cli import mount

    mount(app, needs)


def run() -> None:
    """The ``funnel`` executable: the commands, with operator errors as one line."""
    # aiokafka logs every failed connection attempt; the one line below says it once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        app()
    except Exception as error:
        message = explain(error, database_url=_used.get("database_url"))
        if message is None:
            raise
        typer.echo(f"funnel: {message}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    run()
