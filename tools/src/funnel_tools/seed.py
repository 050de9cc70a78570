"""``funnel seed``: a realistic simulated funnel, driven through the platform's public APIs.

Two halves. :func:`make_plan` is pure: from the seed (and the run tag, which only names
things) it decides the roster, every lead, every rep decision, every deal and account
event. :func:`execute` is the thin HTTP half that carries the plan out against running
services: handoff (roster, decisions), lead-intake (leads, signed CRM and billing
webhooks, via the importer's signing) and metrics (the quarter's target).

The run tag (``--run``, default: the current time) goes into every email, deal,
account and webhook id, so a second run adds more data instead of replaying the first;
the same ``--seed`` with the same ``--run`` plans exactly the same thing.

SLA breaches are real: a planned share of the qualified leads comes in as demo requests,
which the teams answer under a seconds-long policy (``seed-hot``), and the reps leave
them alone. handoff's scanner breaches each one, reassigns it to the team's other rep,
breaches it again and escalates it to the manager, through the same path as production.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from funnel_common.signing import SIGNATURE_HEADER, sign
from funnel_tools.importer import ImportSettings, Kind, import_row
from handoff.sla import ALWAYS

TEAMS: dict[str, dict[str, Any]] = {
    # Lowest priority number wins; the Americas team takes everything EMEA does not.
    "seed-emea": {
        "manager_id": "seed-mia",
        "countries": ["GB", "IE", "DE", "FR", "NL", "SE", "DK", "NO"],
        "priority": 10,
        "sla_policy": "seed-standard",
        "form_type_policies": {"demo_request": "seed-hot"},
    },
    "seed-americas": {
        "manager_id": "seed-sam",
        "countries": [],
        "priority": 50,
        "sla_policy": "seed-standard",
        "form_type_policies": {"demo_request": "seed-hot"},
    },
}
REPS = {
    "seed-ana": ("seed-emea", 2),
    "seed-ben": ("seed-emea", 1),
    "seed-cho": ("seed-americas", 2),
    "seed-dev": ("seed-americas", 1),
}
ALWAYS_OPEN = ALWAYS.model_dump(mode="json")
SLA_POLICIES: dict[str, dict[str, Any]] = {
    # Generous: every planned decision is in time, however slow the machine.
    "seed-standard": {"business_minutes": 240, "at_risk_percent": 75, "calendar": ALWAYS_OPEN},
    # Seconds, so the breaches of a demo happen while it runs. One reassignment, then
    # the manager: two breaches per unanswered lead (each team has two reps).
    "seed-hot": {
        "business_minutes": 0.05,
        "at_risk_percent": 50,
        "calendar": ALWAYS_OPEN,
        "on_breach": {"reassign_up_to": 1, "then": "escalate_to_manager"},
    },
}
BREACHES_PER_UNANSWERED = 2
# The sample landing page's form (config/forms.yaml) is a demo request: the teams route
# those under seed-hot.
DEMO_FORM = {"form_id": "landing-page", "form_key": "pk_landing_7d1f3c"}
# Sources from metrics' default label allow-list (FUNNEL_METRICS_SOURCES), so the boards
# split by them instead of showing "other".
SOURCES = {
    "paid_search": ["q4-search", "brand"],
    "paid_social": ["q4-abm"],
    "webinar": ["webinar-nov"],
    "email": ["nov-digest"],
    "event": ["saas-summit"],
    "organic": [""],
}
FIRST = ["ada", "ben", "chloe", "dan", "eva", "felix", "grace", "hugo", "iris", "jon", "kim"]
LAST = ["lovelace", "berg", "okafor", "moreau", "silva", "novak", "tan", "weber", "costa"]
COMPANIES = ["acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne"]
SENIOR = ["CTO", "VP Sales", "Head of Marketing", "Director of Operations", "CEO", "Founder"]
JUNIOR = ["Engineer", "Analyst", "Developer", "Designer", "Consultant"]
CORE = ["US", "CA", "GB", "DE", "FR", "NL", "SE", "AU", "IE"]
ELSEWHERE = ["BR", "IN", "MX", "JP", "ZA"]
REJECTIONS = ["not_a_fit", "no_budget", "bad_contact_data", "other"]
LOSS_REASONS = ["price", "competitor", "no_decision", "timing"]

Expect = Literal["qualified", "captured", "disqualified"]


@dataclass(frozen=True)
class Lead:
    email: str
    payload: dict[str, Any]
    expect: Expect
    repeat: bool = False  # a second touch of an earlier lead: merged, not a new lead
    unanswered: bool = False  # a demo request nobody answers: it breaches the SLA


@dataclass(frozen=True)
class Decision:
    email: str
    accept: bool
    reason: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Webhook:
    kind: Kind
    payload: dict[str, Any]


@dataclass
class Plan:
    period: str
    leads: list[Lead] = field(default_factory=list)
    decisions: dict[str, Decision] = field(default_factory=dict)
    deals: list[Webhook] = field(default_factory=list)
    accounts: list[Webhook] = field(default_factory=list)
    target_cents: int = 0
    typos: list[dict[str, Any]] = field(default_factory=list)  # refused with a 422

    @property
    def unique_leads(self) -> int:
        return sum(not lead.repeat for lead in self.leads)

    @property
    def unanswered(self) -> list[str]:
        """Emails of the qualified leads the reps leave to breach."""
        return [lead.email for lead in self.leads if lead.unanswered and not lead.repeat]

    @property
    def breaches(self) -> int:
        return BREACHES_PER_UNANSWERED * len(self.unanswered)

    def expected(self, outcome: Expect) -> int:
        return sum(lead.expect == outcome and not lead.repeat for lead in self.leads)

    def count(self, webhooks: list[Webhook], event: str) -> int:
        return sum(webhook.payload["event"] == event for webhook in webhooks)


def quarter_of(moment: datetime) -> tuple[str, datetime]:
    """``YYYY-Qn`` and the quarter's first instant (UTC)."""
    quarter = (moment.month - 1) // 3
    start = datetime(moment.year, quarter * 3 + 1, 1, tzinfo=UTC)
    return f"{moment.year}-Q{quarter + 1}", start


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def make_plan(
    seed: int, leads: int, run: str, now: datetime, *, unanswered_share: float = 0.1
) -> Plan:
    """Everything the run will do, from the seed alone (``run`` and ``now`` only name and date).

    ``unanswered_share`` of the qualified leads are demo requests the reps leave to breach.
    They are drawn from their own generator, so the share changes nothing else about a lead.
    """
    rng = random.Random(seed)
    breach_rng = random.Random(f"{seed}-unanswered")
    period, quarter_start = quarter_of(now)
    plan = Plan(period=period)

    def recent(max_hours: float) -> datetime:
        """A moment in the last ``max_hours``, never before the quarter began."""
        return max(quarter_start, now - timedelta(hours=rng.uniform(0.5, max_hours)))

    new: list[Lead] = []
    repeats: list[Lead] = []  # posted after every new lead: a touch of a lead already stored
    for number in range(leads):
        if new and rng.random() < 0.06:
            earlier = rng.choice(new)
            # Its own utm_content: a signed post with the same body would be a replay.
            touch = {**earlier.payload, "utm_content": f"touch-{number}"}
            repeats.append(Lead(earlier.email, touch, earlier.expect, True, earlier.unanswered))
            continue
        first, last, company = rng.choice(FIRST), rng.choice(LAST), rng.choice(COMPANIES)
        source = rng.choice(sorted(SOURCES))
        campaign = rng.choice(SOURCES[source])
        roll = rng.random()
        if roll < 0.55:
            expect: Expect = "qualified"
            title, size, country = rng.choice(SENIOR), rng.randint(60, 5000), rng.choice(CORE)
            domain = f"{company}.example.com"
        elif roll < 0.9:
            expect = "captured"
            title, size = rng.choice(JUNIOR), rng.randint(2, 45)
            country = rng.choice(ELSEWHERE)
            domain = f"{company}.example.com"
        else:
            expect = "disqualified"
            title, size, country = rng.choice(SENIOR), rng.randint(200, 900), rng.choice(CORE)
            domain = f"{company}-uni.edu"
        email = f"{first}.{last}.{run}-{number}@{domain}"
        payload: dict[str, Any] = {
            "email": email,
            "first_name": first.title(),
            "last_name": last.title(),
            "company": company.title(),
            "title": title,
            "company_size": size,
            "country": country,
            "source": source,
            "utm_source": source,
        }
        if campaign:
            payload["campaign"] = campaign
            payload["utm_campaign"] = campaign
        unanswered = expect == "qualified" and breach_rng.random() < unanswered_share
        if unanswered:
            payload.update(DEMO_FORM)
        lead = Lead(email, payload, expect, unanswered=unanswered)
        new.append(lead)
    plan.leads = new + repeats
    # Forms get mistyped addresses too; refused at the edge, they are the error panels'
    # living data. Their own generator leaves the rest of the plan as it is.
    typo_rng = random.Random(f"{seed}-typos")
    for number in range(max(1, leads // 50)):
        first, last = typo_rng.choice(FIRST), typo_rng.choice(LAST)
        source = typo_rng.choice(sorted(SOURCES))
        email = f"{first}.{last}.{run}-typo{number}.example.com"  # the @ went missing
        plan.typos.append({"email": email, "source": source, "utm_source": source})

    accepted: list[Lead] = []
    for lead in new:
        if lead.expect != "qualified" or lead.unanswered:
            continue
        if rng.random() < 0.8:
            plan.decisions[lead.email] = Decision(lead.email, True)
            accepted.append(lead)
        else:
            reason = rng.choice(REJECTIONS)
            note = "reseller, not an end customer" if reason == "other" else None
            plan.decisions[lead.email] = Decision(lead.email, False, reason, note)

    hook = 0

    def webhook_id(prefix: str) -> str:
        nonlocal hook
        hook += 1
        return f"seed-{run}-{prefix}-{hook}"

    won_deals: list[tuple[str, int]] = []
    for index, lead in enumerate(accepted):
        if rng.random() > 0.75:
            continue
        deal_id = f"SEED-{run}-D{index}"
        amount = rng.randrange(5_000, 80_000, 500) * 100
        opened_at = recent(72)
        close_by = now.date() + timedelta(days=rng.randint(3, 40))
        _, next_quarter = quarter_of(quarter_start + timedelta(days=100))
        close_by = min(close_by, next_quarter.date() - timedelta(days=1))
        base = {"deal_id": deal_id, "email": lead.email}
        plan.deals.append(Webhook(Kind.deals, {
            "webhook_id": webhook_id("deal"), "event": "opened", **base,
            "amount_cents": amount, "stage": "discovery",
            "expected_close_date": close_by.isoformat(), "occurred_at": _iso(opened_at),
        }))  # fmt: skip
        fate = rng.random()
        if fate < 0.45:
            closed = min(now, opened_at + timedelta(hours=rng.uniform(1, 48)))
            plan.deals.append(Webhook(Kind.deals, {
                "webhook_id": webhook_id("deal"), "event": "won", **base,
                "amount_cents": amount, "closed_on": closed.date().isoformat(),
                "occurred_at": _iso(closed),
            }))  # fmt: skip
            won_deals.append((deal_id, amount))
        elif fate < 0.7:
            closed = min(now, opened_at + timedelta(hours=rng.uniform(1, 48)))
            plan.deals.append(Webhook(Kind.deals, {
                "webhook_id": webhook_id("deal"), "event": "lost", **base,
                "reason": rng.choice(LOSS_REASONS), "closed_on": closed.date().isoformat(),
                "occurred_at": _iso(closed),
            }))  # fmt: skip

    def account(event: str, account_id: str, when: datetime, **extra: Any) -> Webhook:
        return Webhook(Kind.accounts, {
            "webhook_id": webhook_id("acct"), "event": event, "account_id": account_id,
            "occurred_at": _iso(when), **extra,
        })  # fmt: skip

    for index, (deal_id, amount) in enumerate(won_deals):
        plan.accounts.append(
            account("activated", f"SEED-{run}-A{index}", now, arr_cents=amount, deal_id=deal_id)
        )
    # Customers from before this quarter (the retention cohort): some grow, some shrink,
    # one churns, all back-dated.
    existing = max(3, leads // 20)
    for index in range(existing):
        account_id = f"SEED-{run}-C{index}"
        arr = rng.randrange(10_000, 120_000, 1_000) * 100
        since = quarter_start - timedelta(days=rng.randint(30, 400))
        plan.accounts.append(account("activated", account_id, since, arr_cents=arr))
        if index == 0:
            plan.accounts.append(account("churned", account_id, recent(24 * 20)))
        elif rng.random() < 0.6:
            change = rng.choice([0.8, 1.1, 1.25, 1.5])
            new_arr = int(arr * change) // 100 * 100
            plan.accounts.append(
                account("arr_changed", account_id, recent(24 * 20), arr_cents=new_arr)
            )

    # Won so far plus what the open pipeline covers about 2.5 times over: coverage a
    # little under the healthy band, target not met yet, so every plan figure has a value.
    decided = {w.payload["deal_id"] for w in plan.deals if w.payload["event"] in ("won", "lost")}
    open_pipeline = sum(
        w.payload["amount_cents"]
        for w in plan.deals
        if w.payload["event"] == "opened" and w.payload["deal_id"] not in decided
    )
    won = sum(amount for _, amount in won_deals)
    plan.target_cents = (won + open_pipeline * 2 // 5) // 100_000 * 100_000 + 100_000
    return plan


# ---------------------------------------------------------------------------------------
# The HTTP half.


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
    answer = await client.get(f"{metrics}/v1/funnel")
    answer.raise_for_status()
    recorded: int = answer.json()["handoffs"]["sla_breaches"]
    return recorded


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
