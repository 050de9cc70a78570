"""The HTTP half of ``funnel seed``: :func:`execute` carries a plan out against running
services: handoff (roster, decisions), lead-intake (leads, signed CRM and billing
webhooks, via the importer's signing) and metrics (the quarter's target); :func:`run` is
the command.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from funnel_common.signing import SIGNATURE_HEADER, sign
from funnel_tools.importer import ImportSettings, Kind, import_row
from funnel_tools.seed.plan import REPS, SLA_POLICIES, TEAMS, Expect, Lead, Plan, Webhook, make_plan


@dataclass
class Outcome:
    leads: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    rejected: int = 0
    conflicts: int = 0
    undecided: int = 0
    breaches: int = 0
    typos_refused: int = 0
    deals: Counter[str] = field(default_factory=Counter)
    accounts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _put(client: httpx.AsyncClient, url: str, token: str, body: dict[str, Any]) -> None:
    answer = await client.put(url, json=body, headers=_bearer(token))
    answer.raise_for_status()


async def _breaches_recorded(client: httpx.AsyncClient, metrics: str) -> int:
    """SLA breaches metrics has counted, all time (the counter, summed over policies;
    /v1/funnel's are those of one quarter)."""
    answer = await client.get(f"{metrics}/metrics")
    answer.raise_for_status()
    return round(
        sum(
            float(line.rpartition(" ")[2])
            for line in answer.text.splitlines()
            if line.startswith("funnel_handoff_sla_breaches_total")
        )
    )


async def _post_lead(
    client: httpx.AsyncClient, intake: str, settings: ImportSettings, lead: Lead
) -> httpx.Response:
    """Post a lead signed with the import secret, as `funnel import` does: the per-client
    rate limit is for the open web, and would hold 200 leads to 20 a minute. Unlike the
    importer, no idempotency key from the body: a repeat touch must merge, not replay."""
    raw = json.dumps(lead.payload).encode()
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(settings.secret_for(Kind.leads), int(time.time()), raw),
    }
    return await client.post(f"{intake}/v1/leads", content=raw, headers=headers)


async def _post_webhook(client: httpx.AsyncClient, webhook: Webhook, secret: str) -> httpx.Response:
    """Post a signed webhook. A 2xx means committed, so the next event of the same deal
    or account sees it."""
    return await import_row(client, webhook.kind, webhook.payload, secret, int(time.time()))


async def execute(
    plan: Plan,
    *,
    intake: str,
    handoff: str,
    metrics: str,
    settings: ImportSettings,
    console: Console,
    decide_timeout: float = 60.0,
    breach_timeout: float = 60.0,
) -> Outcome:
    from handoff.cli import _create

    outcome = Outcome()
    admin = await _create("admin", "seed-admin", None, 1)
    rep_tokens = {rep: await _create("rep", rep, None, 1) for rep in REPS}
    roster = 1 + len(TEAMS) + len(REPS)
    total = roster + len(plan.leads) + len(plan.typos) + len(plan.decisions)
    total += len(plan.deals) + len(plan.accounts)
    total += 1 + plan.breaches  # the target, then the breaches metrics records
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn())
    # Absolute URLs for handoff and metrics; the importer's signed posts are relative.
    async with httpx.AsyncClient(base_url=intake, timeout=30) as client:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("roster", total=total)
            for name, policy in SLA_POLICIES.items():
                await _put(client, f"{handoff}/v1/sla-policies/{name}", admin, policy)
            progress.advance(task)
            # Breaches are counted in metrics for all time: this run's are what it adds.
            breaches_before = await _breaches_recorded(client, metrics)
            for team_id, team in TEAMS.items():
                await _put(client, f"{handoff}/v1/teams/{team_id}", admin, team)
                progress.advance(task)
            for rep_id, (team_id, weight) in REPS.items():
                body = {"team_id": team_id, "capacity": 10_000, "weight": weight}
                await _put(client, f"{handoff}/v1/reps/{rep_id}", admin, body)
                progress.advance(task)

            progress.update(task, description="leads")
            # Typos spread among the leads, so the 422 counter moves while scraped.
            spacing = len(plan.leads) / (len(plan.typos) + 1)
            typos_after = Counter(
                max(0, int((n + 1) * spacing) - 1) for n in range(len(plan.typos))
            )
            typos = iter(plan.typos)
            for index, lead in enumerate(plan.leads):
                answer = await _post_lead(client, intake, settings, lead)
                if answer.is_success:
                    outcome.leads[answer.json()["status"]] += 1
                else:
                    outcome.leads["refused"] += 1
                    outcome.failures.append(f"lead {lead.email}: {answer.status_code}")
                progress.advance(task)
                for typo in itertools.islice(typos, typos_after[index]):
                    answer = await _post_lead(
                        client, intake, settings, Lead(typo["email"], typo, "captured")
                    )
                    if answer.status_code == 422:
                        outcome.typos_refused += 1
                    else:
                        outcome.failures.append(f"mistyped lead: {answer.status_code}, not 422")
                    progress.advance(task)

            progress.update(task, description="reps deciding")
            pending = dict(plan.decisions)
            deadline = time.monotonic() + decide_timeout
            while pending and time.monotonic() < deadline:
                progressed = False
                for rep_id, token in rep_tokens.items():
                    answer = await client.get(
                        f"{handoff}/v1/handoffs",
                        params={"status": "assigned", "limit": 500},
                        headers=_bearer(token),
                    )
                    answer.raise_for_status()
                    for item in answer.json()["items"]:
                        decision = pending.pop(str(item["profile"].get("email", "")), None)
                        if decision is None:
                            continue
                        progressed = True
                        url = f"{handoff}/v1/handoffs/{item['handoff_id']}"
                        if decision.accept:
                            result = await client.post(f"{url}/accept", headers=_bearer(token))
                        else:
                            body = {"reason": decision.reason}
                            if decision.note:
                                body["note"] = decision.note
                            result = await client.post(
                                f"{url}/reject", json=body, headers=_bearer(token)
                            )
                        if result.status_code == 409:
                            outcome.conflicts += 1
                        elif result.is_success:
                            outcome.accepted += decision.accept
                            outcome.rejected += not decision.accept
                        else:
                            outcome.failures.append(f"decision {rep_id}: {result.status_code}")
                        progress.advance(task)
                if not progressed:
                    await asyncio.sleep(0.2)  # handoffs arrive through the broker
            outcome.undecided = len(pending)
            progress.advance(task, len(pending))

            for label, webhooks, counter in (
                ("deals", plan.deals, outcome.deals),
                ("accounts", plan.accounts, outcome.accounts),
            ):
                progress.update(task, description=label)
                for webhook in webhooks:
                    secret = settings.secret_for(webhook.kind)
                    answer = await _post_webhook(client, webhook, secret)
                    if answer.is_success:
                        counter[webhook.payload["event"]] += 1
                    else:
                        what = webhook.payload["webhook_id"]
                        outcome.failures.append(f"{what}: {answer.status_code} {answer.text[:120]}")
                    progress.advance(task)

            progress.update(task, description="target")
            await _put(
                client, f"{metrics}/v1/targets/{plan.period}", admin,
                {"amount_cents": plan.target_cents},
            )  # fmt: skip
            progress.advance(task)

            # The unanswered demo requests breach within seconds of being assigned, most
            # of them while the rest was posted; wait until metrics has counted them all.
            progress.update(task, description="SLA breaches")
            deadline = time.monotonic() + breach_timeout
            while outcome.breaches < plan.breaches and time.monotonic() < deadline:
                recorded = await _breaches_recorded(client, metrics) - breaches_before
                progress.advance(task, max(0, min(recorded, plan.breaches) - outcome.breaches))
                outcome.breaches = max(outcome.breaches, recorded)
                if outcome.breaches < plan.breaches:
                    await asyncio.sleep(0.25)  # the scanner and the broker work meanwhile
    return outcome


def _summary(plan: Plan, outcome: Outcome, console: Console) -> None:
    table = Table("what", "planned", "done", title=f"funnel seed: {plan.period}")
    table.add_row("leads posted", str(len(plan.leads)), str(sum(outcome.leads.values())))
    outcomes: tuple[Expect, ...] = ("qualified", "captured", "disqualified")
    for status in outcomes:
        table.add_row(f"  {status}", str(plan.expected(status)), str(outcome.leads[status]))
    merged = str(len(plan.leads) - plan.unique_leads)
    table.add_row("  merged", merged, str(outcome.leads["merged"]))
    table.add_row("mistyped, refused (422)", str(len(plan.typos)), str(outcome.typos_refused))
    planned_accepts = sum(decision.accept for decision in plan.decisions.values())
    table.add_row("handoffs accepted", str(planned_accepts), str(outcome.accepted))
    table.add_row(
        "handoffs rejected", str(len(plan.decisions) - planned_accepts), str(outcome.rejected)
    )
    for event in ("opened", "won", "lost"):
        table.add_row(
            f"deals {event}", str(plan.count(plan.deals, event)), str(outcome.deals[event])
        )
    for event in ("activated", "arr_changed", "churned"):
        table.add_row(
            f"accounts {event}", str(plan.count(plan.accounts, event)), str(outcome.accounts[event])
        )
    table.add_row("handoffs left unanswered", str(len(plan.unanswered)), str(len(plan.unanswered)))
    table.add_row("  SLA breaches", str(plan.breaches), str(outcome.breaches))
    table.add_row("target (cents)", str(plan.target_cents), "set")
    console.print(table)
    if outcome.breaches < plan.breaches:
        console.print(
            f"[yellow]{plan.breaches - outcome.breaches} planned SLA breaches "
            "not recorded by metrics in time[/]"
        )
    if outcome.undecided or outcome.conflicts:
        console.print(
            f"[yellow]{outcome.undecided} handoffs never reached a rep in time, "
            f"{outcome.conflicts} decisions lost a race[/]"
        )
    for failure in outcome.failures[:20]:
        console.print(f"[red]{failure}[/]")


def run(
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed plans the same funnel.")
    ] = 1,
    leads: Annotated[int, typer.Option(min=1, max=100_000, help="How many lead posts.")] = 200,
    breach_share: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of qualified leads that come in as demo requests nobody answers "
            "(each breaches the seconds-long SLA twice, then goes to the manager).",
        ),
    ] = 0.1,
    run_tag: Annotated[
        str | None,
        typer.Option("--run", help="Tag in every id (default: the time), so reruns add data."),
    ] = None,
    intake_url: Annotated[str | None, typer.Option(help="lead-intake's URL.")] = None,
    handoff_url: Annotated[
        str, typer.Option(envvar="FUNNEL_SEED_HANDOFF_URL", help="handoff's URL.")
    ] = "http://127.0.0.1:8002",
    metrics_url: Annotated[
        str, typer.Option(envvar="FUNNEL_SEED_METRICS_URL", help="metrics' URL.")
    ] = "http://127.0.0.1:8003",
    decide_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for qualified leads to reach the reps.")
    ] = 60.0,
    breach_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for metrics to record the SLA breaches.")
    ] = 60.0,
) -> None:
    """Drive a simulated funnel: roster, leads, decisions, SLA breaches, deals, accounts, target."""
    settings = ImportSettings()
    console = Console(stderr=True)
    tag = run_tag or datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    plan = make_plan(seed, leads, tag, datetime.now(UTC), unanswered_share=breach_share)
    outcome = asyncio.run(
        execute(
            plan,
            intake=(intake_url or settings.url).rstrip("/"),
            handoff=handoff_url.rstrip("/"),
            metrics=metrics_url.rstrip("/"),
            settings=settings,
            console=console,
            decide_timeout=decide_timeout,
            breach_timeout=breach_timeout,
        )
    )
    _summary(plan, outcome, console)
    if outcome.failures:
        raise typer.Exit(1)
