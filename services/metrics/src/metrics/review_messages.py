"""The review pack in words: the email, the Slack message, and the formats the page
shares with them (pure: a pack and its notes in, text out).

The email and the Slack message say the headline figures with their change, the top
rejection reasons with their example notes, how many deadlines were missed and the
best and worst campaigns, and link to the whole pack at
``<FUNNEL_METRICS_PUBLIC_URL>/review?week=YYYY-Www``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from email.message import EmailMessage
from urllib.parse import urlsplit

from metrics.review import CampaignLine, Change, ReviewPack

REASON_TEXT = {
    "not_a_fit": "Not a fit",
    "no_budget": "No budget",
    "bad_contact_data": "Bad contact data",
    "duplicate": "Duplicate",
    "wrong_territory": "Wrong territory",
    "student_or_competitor": "Student or competitor",
    "other": "Other",
}


def money(cents: int | float | str | None, currency: str) -> str:
    if cents is None or isinstance(cents, str):
        return "—"
    return f"{Decimal(int(cents)) / 100:,.2f} {currency}"


def ratio(value: float | str | None) -> str:
    if value is None:
        return "—"
    if value == "+Inf":
        return "∞ (target met)"
    return f"{float(value):.2f}x"


def percent(value: float | str | None) -> str:
    return "—" if value is None or isinstance(value, str) else f"{value * 100:.1f}%"


def whole(value: float | str | None) -> str:
    return "—" if value is None or isinstance(value, str) else f"{int(value):,}"


def shown(value: float | str | None, kind: str, currency: str = "") -> str:
    """A figure as the pack shows it: ``kind`` is percent, money, ratio or count."""
    match kind:
        case "percent":
            return percent(value)
        case "money":
            return money(value, currency)
        case "ratio":
            return ratio(value)
        case _:
            return whole(value)


def signed(change: Change, kind: str, currency: str = "") -> str:
    """The change as words: ``+1.5 pts``, ``-1,200.00 USD``, ``+3``, or nothing known."""
    delta = change.change
    if delta is None:
        return "no change known" if change.last_week is None else "—"
    sign = "+" if delta > 0 else "-" if delta < 0 else "±"
    size = abs(delta)
    match kind:
        case "percent":
            return f"{sign}{size * 100:.1f} pts"
        case "money":
            return f"{sign}{money(size, currency)}"
        case "ratio":
            return f"{sign}{size:.2f}x"
        case _:
            return f"{sign}{int(size):,}"


def reason_text(reason: str) -> str:
    return REASON_TEXT.get(reason, reason)


def link(public_url: str, week: str) -> str:
    return f"{public_url.rstrip('/')}/review?week={week}"


def _campaign(line: CampaignLine, currency: str) -> str:
    name = line.source + (f" / {line.campaign}" if line.campaign else "")
    return f"{name}: {money(line.won_value_cents, currency)} won, {line.captured} leads"


def summary_lines(pack: ReviewPack, notes: Mapping[str, Sequence[str]]) -> list[str]:
    """The pack's headline figures, one per line (email body and Slack message)."""
    c = pack.currency
    lines = [
        f"Coverage: {ratio(pack.coverage.now)} against a {pack.healthy_coverage_ratio:g}x band "
        f"({signed(pack.coverage, 'ratio')})",
        f"Won: {money(pack.won_value_cents.now, c)} of {money(pack.target_cents, c)} target "
        f"({signed(pack.won_value_cents, 'money', c)})",
        f"Win rate: {percent(pack.win_rate_count.now)} by count, "
        f"{percent(pack.win_rate_value.now)} by value ({signed(pack.win_rate_value, 'percent')})",
        f"Retention: gross {percent(pack.retention_gross.now)}, net "
        f"{percent(pack.retention_net.now)}, logo {percent(pack.retention_logo.now)}",
        f"SLA attainment: {percent(pack.sla_attainment.now)} "
        f"({signed(pack.sla_attainment, 'percent')})",
        f"Leads needed to hit the target: {whole(pack.leads_needed.now)} "
        f"({signed(pack.leads_needed, 'count')})",
        f"Deadlines missed in the last seven days: {pack.missed_sla.count}",
    ]
    if pack.top_rejection_reasons:
        lines.append("Top rejection reasons:")
        for reason in pack.top_rejection_reasons:
            lines.append(f"  {reason_text(reason.reason)} ({reason.count})")
            lines += [f'    "{" ".join(note.split())}"' for note in notes.get(reason.reason, ())]
    if pack.best_campaigns:
        lines.append("Best campaigns: " + "; ".join(_campaign(x, c) for x in pack.best_campaigns))
    if pack.worst_campaigns:
        lines.append("Worst campaigns: " + "; ".join(_campaign(x, c) for x in pack.worst_campaigns))
    return lines


def title(pack: ReviewPack) -> str:
    late = " (late)" if pack.late else ""
    return f"Monday review {pack.week}, {pack.period}{late}"


def email_message(
    pack: ReviewPack,
    notes: Mapping[str, Sequence[str]],
    *,
    public_url: str,
    sender: str,
    to: Sequence[str],
) -> EmailMessage:
    """The pack by email, to the whole list. Its Message-ID is the week's, so a mail
    system that sees a retry of a delivery it already has can drop it."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = title(pack)
    domain = urlsplit(public_url).hostname or "localhost"
    message["Message-ID"] = f"<review-{pack.week}@{domain}>"
    late = (
        f"This pack is late: it was due {pack.due_at:%Y-%m-%d %H:%M} UTC and prepared "
        f"{pack.as_of:%Y-%m-%d %H:%M} UTC.\n\n"
        if pack.late
        else ""
    )
    message.set_content(
        f"{title(pack)}: the figures as of {pack.as_of:%Y-%m-%d %H:%M} UTC"
        + (f", changes since {pack.compared_with}" if pack.compared_with else "")
        + ".\n\n"
        + late
        + "\n".join(summary_lines(pack, notes))
        + f"\n\nThe whole pack (printable): {link(public_url, pack.week)}\n"
    )
    return message


def _slack(text: str) -> str:
    # Slack's mrkdwn control characters: a note saying "<!channel>" stays text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(
    pack: ReviewPack, notes: Mapping[str, Sequence[str]], *, public_url: str
) -> dict[str, str]:
    """A Slack incoming-webhook message: the headline figures and the link."""
    lines = [f"*{_slack(title(pack))}*", *(_slack(line) for line in summary_lines(pack, notes))]
    lines.append(f"<{link(public_url, pack.week)}|Open the whole pack>")
    return {"text": "\n".join(lines)}
