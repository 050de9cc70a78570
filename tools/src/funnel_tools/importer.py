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
import io
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
from lead_intake.models import FORM_NUMBERS, AccountWebhook, DealWebhook


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


# Each row is tried this often when the connection fails (then lead-intake is not there).
_ATTEMPTS = 3

PATHS = {Kind.leads: "/v1/leads", Kind.deals: "/v1/deals", Kind.accounts: "/v1/accounts/events"}


@dataclass(frozen=True)
class BadRow:
    line: int
    status: int  # 0: not sent (the row itself is malformed)
    problem: str


@dataclass
class ImportReport:
    applied: int = 0
    unchanged: int = 0
    bad: list[BadRow] = field(default_factory=list)


class ImportFileError(ValueError):
    """The file cannot be imported at all (not UTF-8, a wrong header): one message."""


class ServiceUnreachable(ConnectionError):
    """lead-intake is not there (down, a wrong URL): one message, nothing more sent."""


# Columns whose cells are numbers: JSON must carry them as numbers (the API refuses
# "100" for 100), and a CSV cell is always text.
NUMBERS: dict[Kind, dict[str, type[int] | type[float]]] = {
    Kind.leads: dict(FORM_NUMBERS),
    Kind.deals: {"amount_cents": int},
    Kind.accounts: {"arr_cents": int},
}
REQUIRED: dict[Kind, set[str]] = {
    Kind.leads: {"email"},
    Kind.deals: {"deal_id", "event"},
    Kind.accounts: {"account_id", "event"},
}
# Deal and account rows become webhooks, which take no other field; a lead's unknown
# columns are kept with it (``extra``).
ALLOWED: dict[Kind, set[str] | None] = {
    Kind.leads: None,
    Kind.deals: set(DealWebhook.model_fields) - {"webhook_id"},
    Kind.accounts: set(AccountWebhook.model_fields) - {"webhook_id"},
}


def _header_problem(kind: Kind, header: list[str]) -> str | None:
    names = {name.strip() for name in header}
    missing = sorted(REQUIRED[kind] - names)
    allowed = ALLOWED[kind]
    unknown = sorted(names - allowed - {""}) if allowed is not None else []
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)}")
    if "" in names:
        problems.append("a column without a name")
    if not problems:
        return None
    return f"the header does not fit {kind.value}: {'; '.join(problems)}"


def _typed(kind: Kind, name: str, value: str) -> str | int | float:
    number = NUMBERS[kind].get(name)
    if number is None:
        return value
    try:
        return number(value)
    except ValueError:
        return value  # sent as text: the API's answer names the field


def _decoded(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ImportFileError(
            f"{path} is not UTF-8 (byte 0x{data[error.start]:02x} on line {line}); save it "
            "as UTF-8 (CSV UTF-8 in a spreadsheet) and run the import again"
        ) from error


def rows(path: Path, kind: Kind) -> Iterator[tuple[int, dict[str, Any] | BadRow]]:
    """(line number in the file, the row's non-empty cells typed for the API, or why the
    row cannot be sent) for each data row; :class:`ImportFileError` when the file itself
    cannot be imported."""
    reader = csv.reader(io.StringIO(_decoded(path), newline=""))
    header = next(reader, None)
    if header is None:
        raise ImportFileError(f"{path} is empty: the first line must name the columns")
    if (problem := _header_problem(kind, header)) is not None:
        raise ImportFileError(f"{path}: {problem}")
    names = [name.strip() for name in header]
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(names):
            extra = len(cells) - len(names)
            yield line, BadRow(line, 0, f"{extra} cell(s) more than the header has columns")
            continue
        yield (
            line,
            {
                name: _typed(kind, name, value.strip())
                for name, value in zip(names, cells, strict=False)
                if value.strip()
            },
        )


def _row_id(kind: Kind, cells: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps([kind, cells], sort_keys=True).encode()).hexdigest()
    return f"import-{digest[:40]}"


def _problem_text(answer: httpx.Response) -> str:
    try:
        body: Any = answer.json()
    except ValueError:
        return answer.text[:200] or answer.reason_phrase
    if not isinstance(body, dict):
        return answer.reason_phrase
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(
            f"{error.get('field', '?')}: {error.get('message', '')}"
            for error in errors
            if isinstance(error, dict)
        )
    return str(body.get("detail") or body.get("title") or answer.reason_phrase)


async def import_row(
    client: httpx.AsyncClient, kind: Kind, cells: dict[str, Any], secret: str, now: int
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
    """Post every row; collect what was applied, unchanged, and refused (with its line).

    :class:`ImportFileError` when the file cannot be imported at all (nothing is sent),
    :class:`ServiceUnreachable` when lead-intake is not at the client's URL."""
    report = ImportReport()
    data = list(rows(path, kind))
    with Progress(
        TextColumn(f"importing {kind.value}"), BarColumn(), MofNCompleteColumn(),
        console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task(kind.value, total=len(data))
        for line, cells in data:
            if isinstance(cells, BadRow):
                report.bad.append(cells)
            else:
                _tally(report, kind, line, await _send(client, kind, cells, secret, clock))
            progress.advance(task)
    return report


async def _send(
    client: httpx.AsyncClient,
    kind: Kind,
    cells: dict[str, Any],
    secret: str,
    clock: Callable[[], float],
) -> httpx.Response:
    for attempt in range(_ATTEMPTS):
        try:
            answer = await import_row(client, kind, cells, secret, int(clock()))
            break
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
            raise ServiceUnreachable(f"{client.base_url} is not a URL lead-intake can be at "
                                     f"({error}); check --url") from error  # fmt: skip
        except httpx.TransportError as error:
            # A server closes a connection after answering 500; a pooled connection's
            # next request then fails to read. Sending the row again is safe: its
            # idempotency key or webhook id makes a second post change nothing.
            if attempt + 1 == _ATTEMPTS:
                raise ServiceUnreachable(
                    f"cannot reach lead-intake at {client.base_url} ({type(error).__name__}"
                    f"{': ' if str(error) else ''}{error}); is it running, and is --url right?"
                ) from error
    # lead-intake never answers these for its own routes: the URL is another server's.
    if answer.status_code in (404, 405):
        raise ServiceUnreachable(
            f"{client.base_url} answered {answer.status_code} for {PATHS[kind]}: it is not "
            "lead-intake; check --url"
        )
    return answer


def _tally(report: ImportReport, kind: Kind, line: int, answer: httpx.Response) -> None:
    if answer.is_success or answer.status_code == 303:
        replayed = answer.headers.get("idempotent-replayed") == "true"
        duplicate = kind is not Kind.leads and answer.json().get("status") == "duplicate"
        if replayed or duplicate:
            report.unchanged += 1
        else:
            report.applied += 1
    else:
        report.bad.append(BadRow(line, answer.status_code, _problem_text(answer)))


def print_report(report: ImportReport, console: Console) -> None:
    console.print(
        f"[green]{report.applied} applied[/], {report.unchanged} unchanged, "
        f"[red]{len(report.bad)} bad[/]"
    )
    if report.bad:
        table = Table("line", "status", "problem", title="Rows not imported")
        for bad in report.bad:
            table.add_row(str(bad.line), str(bad.status) if bad.status else "not sent", bad.problem)
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

    try:
        report = asyncio.run(go())
    except (ImportFileError, ServiceUnreachable) as error:
        # One line, no traceback: nothing (or nothing more) was sent.
        console.print(f"[red]funnel import: {error}[/]", soft_wrap=True)
        raise typer.Exit(2) from error
    print_report(report, console)
    if report.bad:
        raise typer.Exit(1)
