"""The pure half of ``funnel seed``: :func:`make_plan` decides, from the seed (and the run
tag, which only names things), the roster, every lead, every rep decision, every deal and
account event. ``drive.py`` carries the plan out against the running services.

The run tag (``--run``, default: the current time) goes into every email, deal,
account and webhook id, so a second run adds more data instead of replaying the first;
the same ``--seed`` with the same ``--run`` plans exactly the same thing.

SLA breaches are real: a planned share of the qualified leads comes in as demo requests,
which the teams answer under a seconds-long policy (``seed-hot``), and the reps leave
them alone. handoff's scanner breaches each one, reassigns it to the team's other rep,
breaches it again and escalates it to the manager, through the same path as production.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from funnel_tools.importer import Kind
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
# Sources on the allow-list metrics exports by name (config/sources.yaml), so the boards
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
