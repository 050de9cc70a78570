"""The inbox without a browser: sign-in and its way back, cookies, CSRF on every form,
what each page says, and refusals in plain words."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from funnel_common import outbox
from funnel_common.auth import verify_token
from funnel_common.types import utc_now
from handoff import decisions
from handoff.models import RejectIn
from handoff.web import create_app
from tests.integration.handoff.support import (
    KEYRING,
    PERSON_KEYS,
    Handoffs,
    handoff_settings,
    lead_event,
)
from tests.integration.inbox.support import (
    a_lead,
    a_touch,
    apply,
    csrf_of,
    handoff_id_of,
    inbox_client,
    sign_in,
)
from tests.platform import serving

__all__ = ["csrf_of", "sign_in"]  # test_handoff_auth's access matrix signs in the same way


async def test_a_link_from_a_notification_leads_through_sign_in_back_to_its_handoff(
    handoffs: Handoffs,
) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"])
    handoff_id = await handoffs.qualify_directly()
    link = f"/inbox/handoffs/{handoff_id}"

    async with inbox_client(handoffs) as client:
        visit = await client.get(link)
        assert (visit.status_code, visit.headers["location"]) == (
            303,
            f"/inbox/sign-in?next={link}",
        )
        form = await client.get(visit.headers["location"])
        assert f'name="next" value="{link}"' in form.text
        signed_in = await sign_in(client, await handoffs.token("rep", "ada"), next_path=link)
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, link)
        page = await client.get(link)
        assert page.status_code == 200
        assert "Analytical Engines" in page.text


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/inbox",
        "//evil.example/inbox",
        "/\\evil.example",
        "/inbox/../v1/handoffs",
        "/inbox/sign-in",
        "javascript:alert(1)",
        "/inbox/handoffs/x?y=<script>",
    ],
)
async def test_sign_in_never_sends_anyone_off_the_inbox(handoffs: Handoffs, next_path: str) -> None:
    async with inbox_client(handoffs) as client:
        answer = await sign_in(client, await handoffs.token("rep", "ada"), next_path=next_path)
    assert (answer.status_code, answer.headers["location"]) == (303, "/inbox")


async def test_bad_and_revoked_tokens_are_refused(handoffs: Handoffs) -> None:
    async with inbox_client(handoffs) as client:
        assert (await client.get("/inbox", follow_redirects=False)).headers[
            "location"
        ] == "/inbox/sign-in"
        assert (await client.get("/inbox/queue")).status_code == 401
        assert (await client.get("/inbox/team/rows")).status_code == 401

        refused = await sign_in(client, "fnl_not.a-token")
        assert refused.status_code == 401
        assert "That token was not accepted." in refused.text
        assert "funnel_inbox=" not in refused.headers.get("set-cookie", "")

        # A revoked token (its projection row, as handoff revokes it) is refused.
        token = await handoffs.token("rep", "ada", "emea")
        async with handoffs.pool.acquire() as connection:
            await connection.execute("UPDATE access_tokens SET revoked_at = now()")
        assert (await sign_in(client, token)).status_code == 401


def _cookie(answer: httpx.Response, name: str) -> set[str]:
    header = next(
        value for value in answer.headers.get_list("set-cookie") if value.startswith(f"{name}=")
    )
    return {part.strip().lower() for part in header.split(";")}


async def _sign_in_over_http(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """Sign in where a Secure cookie would not come back: the nonce sent by hand."""
    form = await client.get("/inbox/sign-in")
    nonce = csrf_of(form)
    return await client.post(
        "/inbox/sign-in",
        data={"csrf": nonce, "token": token},
        headers={"cookie": f"funnel_inbox_signin={nonce}"},
    )


async def test_cookies_are_httponly_lax_and_secure_outside_development(
    handoffs: Handoffs, database_url: str
) -> None:
    token = await handoffs.token("rep", "ada", "emea")
    # The test environment is not development: Secure even over plain http (as behind a
    # proxy that terminates TLS).
    plain = await _sign_in_over_http(handoffs.client, token)
    assert plain.status_code == 303
    assert {"httponly", "samesite=lax", "secure", "path=/inbox"} <= _cookie(plain, "funnel_inbox")
    nonce = await handoffs.client.get("/inbox/sign-in")
    assert {"httponly", "samesite=strict", "secure"} <= _cookie(nonce, "funnel_inbox_signin")

    # Development on a laptop's plain http: not Secure (the browser would drop it), unless
    # the request came over https.
    common = handoffs.settings.common.model_copy(update={"environment": "development"})
    development = create_app(handoff_settings(database_url, common))
    async with serving(development, "handoff-dev") as client:
        laptop = await sign_in(client, token)
        assert laptop.status_code == 303
        assert "secure" not in _cookie(laptop, "funnel_inbox")
        async with httpx.AsyncClient(
            transport=client._transport, base_url="https://handoff-dev"
        ) as tls:
            assert "secure" in _cookie(await sign_in(tls, token), "funnel_inbox")


async def test_sign_out_ends_the_session(handoffs: Handoffs) -> None:
    async with inbox_client(handoffs, await handoffs.token("rep", "ada")) as client:
        page = await client.get("/inbox")
        assert "Signed in as <strong>ada</strong>" in page.text
        signed_out = await client.post(
            "/inbox/sign-out", data={"csrf": csrf_of(page)}, follow_redirects=False
        )
        assert signed_out.headers["location"] == "/inbox/sign-in?notice=signed-out"
        assert (await client.get("/inbox", follow_redirects=False)).status_code == 303


async def test_every_form_post_needs_the_session_csrf_token(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}, "bob": {}}, countries=["DE"])
    handoff_id = await handoffs.qualify_directly()
    posts: list[tuple[str, str, dict[str, Any]]] = [
        ("rep", f"/inbox/handoffs/{handoff_id}/accept", {}),
        ("rep", f"/inbox/handoffs/{handoff_id}/reject", {"reason": "not_a_fit"}),
        ("manager", f"/inbox/handoffs/{handoff_id}/reassign", {"rep_id": "bob"}),
        ("manager", "/inbox/team/reassign", {"handoff_id": str(handoff_id), "rep_id": "bob"}),
        ("rep", "/inbox/sign-out", {}),
    ]
    holder = (await handoffs.handoff(handoff_id))["rep_id"]
    tokens = {
        "rep": await handoffs.token("rep", holder),
        "manager": await handoffs.token("manager", "emea-manager", "emea"),
    }

    for role, path, fields in posts:
        async with inbox_client(handoffs, tokens[role]) as client:
            for csrf in ({}, {"csrf": "forged"}):
                refused = await client.post(path, data={**fields, **csrf})
                assert refused.status_code == 403, (path, refused.text[:300])
                assert "did not come from the inbox" in refused.text
            assert (await client.get("/inbox")).status_code == 200  # still signed in

    row = await handoffs.handoff(handoff_id)
    assert (row["status"], row["rep_id"]) == ("assigned", holder)

    # Sign-in itself needs the nonce its form set (no login CSRF).
    async with inbox_client(handoffs) as fresh:
        answer = await fresh.post("/inbox/sign-in", data={"csrf": "x", "token": tokens["rep"]})
        assert answer.status_code == 403


async def test_the_card_has_what_a_rep_needs_to_reach_the_lead(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"])
    captured, qualified = a_lead("Grace", "Compilers Ltd", title="VP Engineering")
    earlier = utc_now() - timedelta(days=3)
    touches = [
        a_touch(
            captured.data.lead_id, source="ads", campaign="spring", form_id="pricing", time=earlier
        ),
        a_touch(captured.data.lead_id, source="seo", campaign="blog", form_id="newsletter"),
    ]
    await apply(handoffs, captured, touches[0], qualified, touches[1], touches[1])
    handoff_id = await handoff_id_of(handoffs, captured.data.lead_id)

    async with inbox_client(handoffs, await handoffs.token("rep", "ada")) as client:
        queue, page = await client.get("/inbox"), await client.get(f"/inbox/handoffs/{handoff_id}")

    for html in (queue.text, page.text):
        assert '<a href="mailto:grace@compilers.example">' in html
        assert '<a href="tel:+49301234567">' in html
        assert "+49 30 1234567" in html
        assert "VP Engineering at Compilers Ltd" in html
        assert "<dt>Country</dt><dd>DE</dd>" in html
        assert "landing-page · demo_request" in html  # the form it came from, and its type
        assert "webinar / q4-launch (email)" in html
        assert "80 (company_size +40, title +40)" in html
        # Earlier touches, newest first; the redelivered merge counted once.
        assert "Earlier touches (2)" in html
        assert html.index("seo / blog") < html.index("ads / spring")
        assert "form pricing" in html
        assert "Assigned to you" in html
        assert "Waiting for a rep" not in html


async def test_decisions_history_and_accepted_leads(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {"capacity": 100}}, countries=["DE"])
    first, second, third = [await handoffs.qualify_directly() for _ in range(3)]

    async with inbox_client(handoffs, await handoffs.token("rep", "ada")) as client:
        csrf = csrf_of(await client.get("/inbox"))
        accepted = await client.post(f"/inbox/handoffs/{first}/accept", data={"csrf": csrf})
        assert accepted.headers["location"] == f"/inbox/handoffs/{first}?notice=accepted"
        page = await client.get(accepted.headers["location"])
        assert "Accepted. The lead is yours" in page.text
        assert "Accepted by you" in page.text
        assert "Waiting for a rep" not in page.text
        again = await client.post(f"/inbox/handoffs/{first}/accept", data={"csrf": csrf})
        assert again.status_code == 409
        assert "cannot accept: it was already accepted" in again.text

        # No reason chosen (the form preselects none): refused, with the reason why.
        unchosen = await client.post(f"/inbox/handoffs/{second}/reject", data={"csrf": csrf})
        assert unchosen.status_code == 422
        assert "Choose a reason for the rejection." in unchosen.text
        vague = await client.post(
            f"/inbox/handoffs/{second}/reject", data={"csrf": csrf, "reason": "other"}
        )
        assert vague.status_code == 422
        assert "reason &#39;other&#39; needs a note" in vague.text
        rejected = await client.post(
            f"/inbox/handoffs/{second}/reject",
            data={"csrf": csrf, "reason": "other", "note": "reseller, not an end customer"},
        )
        assert rejected.headers["location"] == "/inbox?notice=rejected"
        await client.post(
            f"/inbox/handoffs/{third}/reject", data={"csrf": csrf, "reason": "no_budget"}
        )

        mine = await client.get("/inbox/accepted")
        history = await client.get("/inbox/history")
        rejected_page = await client.get(f"/inbox/handoffs/{second}")

    assert mine.text.count('class="handoff') == 1
    assert f'id="h-{first}"' in mine.text
    assert "ada@example.com" in mine.text
    # Newest first: third (no budget), second (other, with its note), first (accepted).
    rows = history.text.split("<tbody>")[1]
    assert rows.index("No budget") < rows.index("reseller, not an end customer")
    assert rows.index("reseller, not an end customer") < rows.index("Accepted")
    assert "Rejected by you" in rejected_page.text
    assert "Reason: Other · Note: “reseller, not an end customer”" in rejected_page.text
    # The note travels sealed with the lead's key; nothing of it in clear.
    sealed = [
        event["data"]["sealed_note"]
        for event in await handoffs.events("funnel.handoff.rejected.v2")
    ]
    assert sealed[1] is None
    assert "reseller" not in str(sealed)
    lead_id = (await handoffs.handoff(second))["lead_id"]
    assert PERSON_KEYS[lead_id].open(sealed[0], "note") == "reseller, not an end customer"


async def test_history_is_paged_newest_first(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {"capacity": 100}}, countries=["DE"])
    ids = [await handoffs.qualify_directly() for _ in range(23)]
    ada = await handoffs.token("rep", "ada")
    principal = verify_token(handoffs.settings.common.auth_secret, ada)
    start = utc_now()
    for number, handoff_id in enumerate(ids):
        async with outbox.transaction(handoffs.pool) as connection:
            decided_at = start + timedelta(seconds=number)
            await decisions.reject(
                connection,
                handoff_id,
                principal,
                RejectIn(reason="not_a_fit"),
                now=decided_at,
                keyring=KEYRING,
            )

    async with inbox_client(handoffs, ada) as client:
        first, second = (
            await client.get("/inbox/history"),
            await client.get("/inbox/history?page=2"),
        )

    assert first.text.count('<a href="/inbox/handoffs/') == 20
    assert first.text.index(str(ids[-1])) < first.text.index(str(ids[-20]))
    assert str(ids[2]) not in first.text
    assert 'href="/inbox/history?page=2" rel="next"' in first.text
    assert second.text.count('<a href="/inbox/handoffs/') == 3
    assert 'rel="prev"' in second.text
    assert 'rel="next"' not in second.text


async def test_the_team_view_is_for_managers_and_explains_what_waits(handoffs: Handoffs) -> None:
    # Nobody covers enterprise leads: they wait, and the manager is told why.
    await handoffs.setup_team(
        "emea",
        {"ada": {"segments": ["smb"]}, "bob": {"segments": ["smb"], "capacity": 0}},
        countries=["DE"],
    )
    waiting = await handoffs.qualify_directly(lead_event(company_size=5000))
    assigned, decided = [await handoffs.qualify_directly() for _ in range(2)]
    ada = await handoffs.token("rep", "ada")
    async with outbox.transaction(handoffs.pool) as connection:
        principal = verify_token(handoffs.settings.common.auth_secret, ada)
        await decisions.accept(connection, decided, principal, now=utc_now())

    async with inbox_client(handoffs, ada) as rep:
        refused = await rep.get("/inbox/team")
        assert refused.status_code == 403
        assert "for managers" in refused.text
        assert (await rep.get("/inbox/team/rows")).status_code == 403

    manager = await handoffs.token("manager", "emea-manager", "emea")
    async with inbox_client(handoffs, manager) as client:
        page = await client.get("/inbox/team")
        assert page.status_code == 200
        assert "<caption" in page.text
        assert "No eligible rep: ada does not cover enterprise; bob at capacity (0/0)." in page.text
        only_waiting = await client.get("/inbox/team/rows?rep=-")
        assert str(waiting) in only_waiting.text
        assert str(assigned) not in only_waiting.text

        csrf = csrf_of(page)
        nothing = await client.post("/inbox/team/reassign", data={"csrf": csrf})
        assert nothing.status_code == 422
        assert "Select at least one handoff" in nothing.text
        # One was decided meanwhile: it is reported by name, and the other still moves.
        partly = await client.post(
            "/inbox/team/reassign",
            data={"csrf": csrf, "handoff_id": [str(assigned), str(decided)], "rep_id": "bob"},
        )
        assert partly.status_code == 409
        assert "Reassigned 1." in partly.text
        assert "Ada Lovelace: cannot reassign: it was already accepted" not in partly.text
        assert "ada@example.com: cannot reassign: it was already accepted" in partly.text
        assert (await handoffs.handoff(assigned))["rep_id"] == "bob"

        moved = await client.post(
            "/inbox/team/reassign",
            data={"csrf": csrf, "handoff_id": [str(assigned), str(waiting)], "rep_id": "ada"},
            follow_redirects=True,
        )
        assert "Reassigned 2 handoffs." in moved.text
        assert {(await handoffs.handoff(one))["rep_id"] for one in (assigned, waiting)} == {"ada"}
