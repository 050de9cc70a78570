"""``funnel privacy``: an admin exports or erases one person's data (docs/privacy.md).

Both commands speak to the services' APIs with an admin token (``--token`` or
``FUNNEL_TOKEN``), never to their databases: lead-intake answers for its data and says
which leads are the person's, handoff for its copies of each lead. They find the
services of the running ``funnel dev`` (or ``FUNNEL_INTAKE_URL`` and
``FUNNEL_HANDOFF_URL``). Nothing personal is printed: the export goes to its file.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

INTAKE_URL = "FUNNEL_INTAKE_URL"
HANDOFF_URL = "FUNNEL_HANDOFF_URL"
PEOPLE = "/v1/privacy/people"

HELP = "A person's data: export it to a file, or erase it everywhere (admin token)."

Token = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="FUNNEL_TOKEN",
        show_envvar=True,
        help="An admin token (`funnel token create --role admin`).",
    ),
]
Email = Annotated[str, typer.Argument(help="The person's email address.")]


def _refused(answer: httpx.Response, what: str) -> typer.Exit:
    """One line saying why a service refused, and exit status 1."""
    try:
        problem: dict[str, Any] = answer.json()
        reason = problem.get("detail") or problem.get("title") or answer.reason_phrase
        errors = problem.get("errors") or []
        if errors:
            reason = f"{reason}: " + "; ".join(
                f"{error.get('field')}: {error.get('message')}" for error in errors
            )
    except ValueError:
        reason = answer.reason_phrase
    typer.echo(f"funnel: {what} refused ({answer.status_code}): {reason}", err=True)
    return typer.Exit(1)


def _client(token: str) -> httpx.Client:
    return httpx.Client(timeout=30, headers={"authorization": f"Bearer {token}"})


def _lead_ids(client: httpx.Client, email: str) -> list[str]:
    answer = client.get(f"{os.environ[INTAKE_URL]}{PEOPLE}", params={"email": email})
    if answer.status_code != 200:
        raise _refused(answer, "lead-intake")
    return [str(lead_id) for lead_id in answer.json()["lead_ids"]]


def export(
    email: Email,
    out: Annotated[Path, typer.Option("--out", help="The JSON file to write.")],
    token: Token,
) -> None:
    """Write everything the platform holds about the person with EMAIL to a JSON file.

    Their leads and merged submissions (lead-intake), their handoffs with every decision
    and note, and the notifications sent about them (handoff)."""
    with _client(token) as client:
        intake = client.get(f"{os.environ[INTAKE_URL]}{PEOPLE}", params={"email": email})
        if intake.status_code != 200:
            raise _refused(intake, "lead-intake")
        found: dict[str, Any] = intake.json()
        handoff = []
        for lead_id in found["lead_ids"]:
            answer = client.get(f"{os.environ[HANDOFF_URL]}{PEOPLE}/{lead_id}")
            if answer.status_code != 200:
                raise _refused(answer, "handoff")
            handoff.append(answer.json())
    document = {
        "email": email,
        "exported_at": datetime.now(UTC).isoformat(),
        "lead_intake": found,
        "handoff": handoff,
    }
    # Personal data: readable by this user only, like the platform's state file.
    out.touch(mode=0o600, exist_ok=True)
    out.chmod(0o600)
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    typer.echo(f"{len(found['lead_ids'])} lead(s) exported to {out}")


def erase(
    email: Email,
    token: Token,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase the person with EMAIL everywhere; every figure stays as it was.

    Afterwards nothing readable about them is left in any table, topic or log
    (docs/privacy.md). Idempotent: erasing again changes nothing."""
    with _client(token) as client:
        lead_ids = _lead_ids(client, email)
        if not lead_ids:
            typer.echo("Nothing about this person is held (or they were erased already).")
            return
        if not yes:
            typer.confirm(
                f"Erase the personal data of {len(lead_ids)} lead(s) for good?", abort=True
            )
        answer = client.delete(f"{os.environ[INTAKE_URL]}{PEOPLE}", params={"email": email})
        if answer.status_code != 204:
            raise _refused(answer, "lead-intake")
    typer.echo(f"Erased {len(lead_ids)} lead(s): {', '.join(lead_ids)}")
