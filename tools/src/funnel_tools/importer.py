"""``funnel import leads|deals|accounts FILE.csv``: bulk intake for teams without an integration.

Each row is posted to lead-intake's own endpoints, so it gets exactly the validation a
form or webhook gets. Posts are signed (the import secret for leads, the CRM and billing
secrets for outcomes); leads carry an ``Idempotency-Key`` and outcomes a ``webhook_id``
derived from the row's content, so running the same file twice changes nothing.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from funnel_common.signing import SIGNATURE_HEADER, sign


class Kind(StrEnum):
    leads = "leads"
    deals = "deals"
    accounts = "accounts"


class ImportSettings(BaseSettings):
    """Where lead-intake listens and the secrets it expects (the service's own settings)."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_INTAKE_", extra="ignore")

    url: str = Field(default="http://127.0.0.1:8001", description="where `funnel import` posts")
    import_secret: SecretStr = Field(
        default=SecretStr("dev-import-secret"), description="signs the lead rows"
    )
    crm_webhook_secret: SecretStr = Field(
        default=SecretStr("dev-crm-webhook-secret"), description="signs the deal rows"
    )
    billing_webhook_secret: SecretStr = Field(
        default=SecretStr("dev-billing-webhook-secret"), description="signs the account rows"
    )

    def secret_for(self, kind: Kind) -> str:
        secret = {
            Kind.leads: self.import_secret,
            Kind.deals: self.crm_webhook_secret,
            Kind.accounts: self.billing_webhook_secret,
        }[kind]
        return secret.get_secret_value()


PATHS = {Kind.leads: "/v1/leads", Kind.deals: "/v1/deals", Kind.accounts: "/v1/accounts/events"}


@dataclass(frozen=True)
class BadRow:
    line: int
    status: int
    problem: str


@dataclass
class ImportReport:
    applied: int = 0
    unchanged: int = 0
    bad: list[BadRow] = field(default_factory=list)


def rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number in the file, non-empty cells) for each data row."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        for row in reader:
            cells = {
                name.strip(): value.strip()
                for name, value in row.items()
                if name and isinstance(value, str) and value.strip()
            }
            yield reader.line_num, cells


def _row_id(kind: Kind, cells: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps([kind, cells], sort_keys=True).encode()).hexdigest()
    return f"import-{digest[:40]}"


def _problem_text(answer: httpx.Response) -> str:
    try:
        body: dict[str, Any] = answer.json()
    except ValueError:
        return answer.text[:200] or answer.reason_phrase
    errors = body.get("errors")
    if errors:
        return "; ".join(f"{error['field']}: {error['message']}" for error in errors)
    return str(body.get("detail") or body.get("title") or answer.reason_phrase)


async def import_row(
    client: httpx.AsyncClient, kind: Kind, cells: dict[str, str], secret: str, now: int
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if kind is Kind.leads:
        headers["idempotency-key"] = _row_id(kind, cells)
        payload = cells
    else:
        payload = {"webhook_id": _row_id(kind, cells), **cells}
    raw = json.dumps(payload).encode()
    headers[SIGNATURE_HEADER] = sign(secret, now, raw)
    return await client.post(PATHS[kind], content=raw, headers=headers)


async def import_file(
    kind: Kind,
    path: Path,
    client: httpx.AsyncClient,
    secret: str,
    console: Console,
    clock: Callable[[], float] = time.time,
) -> ImportReport:
    """Post every row; collect what was applied, unchanged, and refused (with its line)."""
    report = ImportReport()
    data = list(rows(path))
    with Progress(
        TextColumn(f"importing {kind.value}"), BarColumn(), MofNCompleteColumn(),
        console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task(kind.value, total=len(data))
        for line, cells in data:
            answer = await import_row(client, kind, cells, secret, int(clock()))
            if answer.is_success or answer.status_code == 303:
                replayed = answer.headers.get("idempotent-replayed") == "true"
                duplicate = kind is not Kind.leads and answer.json().get("status") == "duplicate"
                if replayed or duplicate:
                    report.unchanged += 1
                else:
                    report.applied += 1
            else:
                report.bad.append(BadRow(line, answer.status_code, _problem_text(answer)))
            progress.advance(task)
    return report


def print_report(report: ImportReport, console: Console) -> None:
    console.print(
        f"[green]{report.applied} applied[/], {report.unchanged} unchanged, "
        f"[red]{len(report.bad)} bad[/]"
    )
    if report.bad:
        table = Table("line", "status", "problem", title="Rows not imported")
        for bad in report.bad:
            table.add_row(str(bad.line), str(bad.status), bad.problem)
        console.print(table)


def run(
    kind: Annotated[Kind, typer.Argument(help="What the file holds.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A CSV file.")],
    url: Annotated[str | None, typer.Option(help="lead-intake's URL.")] = None,
) -> None:
    """Import a CSV file of leads, deals or accounts; bad rows are listed by line."""
    settings = ImportSettings()
    console = Console(stderr=True)

    async def go() -> ImportReport:
        async with httpx.AsyncClient(base_url=url or settings.url, timeout=30) as client:
            return await import_file(kind, file, client, settings.secret_for(kind), console)

    report = asyncio.run(go())
    print_report(report, console)
    if report.bad:
        raise typer.Exit(1)
