"""The inbox's sign-in, session cookie, CSRF checks and refusals, without a browser."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx

from funnel_common.types import utc_now
from tests.integration.handoff.support import Handoffs

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await client.get("/inbox/sign-in")
    return await client.post(
        "/inbox/sign-in", data={"csrf": csrf_of(form), "token": token}, follow_redirects=False
    )


async def test_signed_out_visitors_go_to_sign_in_and_a_bad_token_is_refused(
    handoffs: Handoffs,
) -> None:
    client = handoffs.client
    answer = await client.get("/inbox", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/inbox/sign-in")
    assert (await client.get("/inbox/queue")).status_code == 401

    refused = await sign_in(client, "fnl_not.a-token")
    assert refused.status_code == 401
    assert "That token was not accepted." in refused.text
    assert "funnel_inbox=" not in refused.headers.get("set-cookie", "")

    # A token revoked in handoff's table is refused like the API refuses it.
    token = await handoffs.token("rep", "ada", "emea")
    async with handoffs.pool.acquire() as connection:
        await connection.execute("UPDATE access_tokens SET revoked_at = now()")
    assert (await sign_in(client, token)).status_code == 401


async def test_the_session_cookie_is_httponly_strict_and_secure_over_https(
    handoffs: Handoffs,
) -> None:
    token = await handoffs.token("rep", "ada", "emea")
    async with httpx.AsyncClient(
        transport=handoffs.client._transport, base_url="https://handoff"
    ) as client:
        answer = await sign_in(client, token)
        assert (answer.status_code, answer.headers["location"]) == (303, "/inbox")
        cookie = next(
            value
            for value in answer.headers.get_list("set-cookie")
            if value.startswith("funnel_inbox=")
        )
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "secure", "path=/inbox"} <= flags

        page = await client.get("/inbox")
        assert page.status_code == 200
        assert "My queue" in page.text
        assert "Signed in as <strong>ada</strong>" in page.text

        signed_out = await client.post(
            "/inbox/sign-out", data={"csrf": csrf_of(page)}, follow_redirects=False
        )
        assert signed_out.status_code == 303
        assert (await client.get("/inbox", follow_redirects=False)).status_code == 303

    # Over plain http the cookie is not marked Secure (or a dev laptop could not sign in).
    plain = await sign_in(handoffs.client, token)
    assert "secure" not in plain.headers["set-cookie"].lower()


async def test_posts_without_the_session_csrf_token_are_refused(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"])
    handoff_id = await handoffs.qualify_directly()
    client = handoffs.client
    await sign_in(client, await handoffs.token("rep", "ada", "emea"))

    for data in ({}, {"csrf": "forged"}):
        refused = await client.post(f"/inbox/handoffs/{handoff_id}/accept", data=data)
        assert refused.status_code == 403
        assert "did not come from the inbox" in refused.text
    assert (await handoffs.handoff(handoff_id))["status"] == "assigned"

    # Sign-in itself needs the nonce its form set (no login CSRF).
    fresh = httpx.AsyncClient(transport=handoffs.client._transport, base_url="http://handoff")
    async with fresh:
        token = await handoffs.token("rep", "ada", "emea")
        answer = await fresh.post("/inbox/sign-in", data={"csrf": "x", "token": token})
        assert answer.status_code == 403


async def test_decisions_and_plain_reasons_for_refusals(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}, "bob": {"capacity": 0}}, countries=["DE"])
    first = await handoffs.qualify_directly()
    second = await handoffs.qualify_directly()
    client = handoffs.client
    await sign_in(client, await handoffs.token("rep", "ada", "emea"))
    page = await client.get("/inbox")
    csrf = csrf_of(page)
    assert page.text.count('class="handoff"') == 2
    assert "Analytical Engines" in page.text
    assert "webinar / q4-launch" in page.text
    assert "On time" in page.text
    assert "80 (company_size +40)" in page.text

    accepted = await client.post(
        f"/inbox/handoffs/{first}/accept", data={"csrf": csrf}, follow_redirects=True
    )
    assert accepted.status_code == 200
    assert "Accepted." in accepted.text
    again = await client.post(f"/inbox/handoffs/{first}/accept", data={"csrf": csrf})
    assert again.status_code == 409
    assert "cannot accept: it was already accepted" in again.text

    vague = await client.post(
        f"/inbox/handoffs/{second}/reject", data={"csrf": csrf, "reason": "other"}
    )
    assert vague.status_code == 422
    assert "reason &#x27;other&#x27; needs a note" in vague.text
    rejected = await client.post(
        f"/inbox/handoffs/{second}/reject",
        data={"csrf": csrf, "reason": "other", "note": "duplicate of an open deal"},
        follow_redirects=True,
    )
    assert rejected.status_code == 200
    assert "Rejected." in rejected.text
    assert [
        event["data"]["reason"]
        for event in await handoffs.events("funnel.handoff.rejected.v1", second)
    ] == ["other"]

    # Another rep is refused ada's handoff.
    other = httpx.AsyncClient(transport=handoffs.client._transport, base_url="http://handoff")
    async with other:
        await sign_in(other, await handoffs.token("rep", "bob", "emea"))
        refused = await other.get(f"/inbox/handoffs/{first}")
        assert refused.status_code == 403
        assert "this handoff is not yours" in refused.text


async def test_a_manager_sees_holders_and_breaches_by_colour_and_text(handoffs: Handoffs) -> None:
    await handoffs.setup_team("emea", {"ada": {}, "bob": {}}, countries=["DE"], minutes=60)
    late = await handoffs.qualify_directly(now=utc_now() - timedelta(minutes=90))
    risky = await handoffs.qualify_directly(now=utc_now() - timedelta(minutes=40))
    fresh = await handoffs.qualify_directly()

    client = handoffs.client
    await sign_in(client, await handoffs.token("manager", "emea-manager", "emea"))
    page = await client.get("/inbox")

    assert "Team emea queue" in page.text
    # Soonest due first, each with its state as a class and as words.
    positions = [page.text.index(f'id="h-{handoff_id}"') for handoff_id in (late, risky, fresh)]
    assert positions == sorted(positions)
    for handoff_id, state, words in (
        (late, "breached", "Breached"),
        (risky, "at-risk", "At risk"),
        (fresh, "on-time", "On time"),
    ):
        card = page.text[page.text.index(f'id="h-{handoff_id}"') :]
        assert f'class="sla sla-{state}"' in card.split("</article>")[0]
        assert f'<span class="sla-state">{words}</span>' in card.split("</article>")[0]
    assert page.text.count('<label for="to-') == 3  # a reassign control per handoff
