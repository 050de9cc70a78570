"""Group commit of POST /v1/leads: batch-mates get exactly the answers they would alone.

The committer is told to wait for company (``batch_max_wait_ms``), so concurrent posts
land in one batch; the batch-size histogram shows they did.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any
from uuid import uuid4

import asyncpg
import httpx

from funnel_common.events import LEADS_TOPIC, LeadMerged
from funnel_common.settings import CommonSettings
from lead_intake import store
from tests.helpers import parse_metric
from tests.integration.intake.conftest import IntakeFactory, events_on, imported

TOGETHER = {"batch_max_wait_ms": 100}


async def _post_all(
    intake: httpx.AsyncClient, bodies: list[dict[str, Any]], **kwargs: Any
) -> list[httpx.Response]:
    return list(await asyncio.gather(*(intake.post("/v1/leads", json=b, **kwargs) for b in bodies)))


async def _import_all(
    intake: httpx.AsyncClient, bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
    """Signed posts, whose answers say what became of each lead."""
    return list(await asyncio.gather(*(intake.post("/v1/leads", **imported(b)) for b in bodies)))


async def _batches_of_more_than_one(intake: httpx.AsyncClient) -> float:
    metrics = (await intake.get("/metrics")).text
    all_batches = parse_metric(metrics, "funnel_intake_lead_batch_size_count") or 0.0
    singles = parse_metric(metrics, 'funnel_intake_lead_batch_size_bucket{le="1.0"}') or 0.0
    return all_batches - singles


async def _rows(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def _execute(database_url: str, sql: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def test_one_person_posting_concurrently_becomes_one_lead_and_merges(
    start_intake: IntakeFactory, database_url: str, topics: CommonSettings
) -> None:
    intake = await start_intake(**TOGETHER)
    bodies = [{"email": "ada@example.com", "campaign": f"c{n}"} for n in range(4)]
    bodies.append({"email": "other@example.com", "phone": "+44 20 7946 0001"})
    bodies.append({"email": "ada.work@example.com", "phone": "+44 20 7946 0001"})

    answers = await _import_all(intake, bodies)

    assert [a.status_code for a in answers] == [202] * 6, [a.text for a in answers]
    by_email = [a.json() for a in answers[:4]]
    assert Counter(a["status"] for a in by_email)["merged"] == 3
    assert len({a["lead_id"] for a in by_email}) == 1
    assert answers[5].json()["status"] == "merged"
    assert answers[5].json()["lead_id"] == answers[4].json()["lead_id"]
    leads = await _rows(database_url, "SELECT email FROM intake.leads ORDER BY email")
    assert [row["email"] for row in leads] == ["ada@example.com", "other@example.com"]
    touches = await _rows(database_url, "SELECT matched_on FROM intake.touches")
    assert Counter(row["matched_on"] for row in touches) == {"email": 3, "phone": 1}
    events = await events_on(topics, LEADS_TOPIC, expect=6)
    assert sum(isinstance(event, LeadMerged) for event in events) == 4
    assert await _batches_of_more_than_one(intake) >= 1


async def test_one_person_posting_to_two_replicas_at_once_becomes_one_lead(
    start_intake: IntakeFactory, database_url: str
) -> None:
    replicas = [await start_intake(**TOGETHER), await start_intake(**TOGETHER)]
    body = {"email": "grace@example.com"}

    answers = await asyncio.gather(
        *(replicas[n % 2].post("/v1/leads", **imported({**body, "campaign": f"c{n}"}))
          for n in range(6))
    )  # fmt: skip

    assert [a.status_code for a in answers] == [202] * 6
    assert Counter(a.json()["status"] for a in answers)["merged"] == 5
    leads = await _rows(database_url, "SELECT lead_id FROM intake.leads")
    assert len(leads) == 1
    assert {a.json()["lead_id"] for a in answers} == {str(leads[0]["lead_id"])}


async def test_the_same_idempotency_key_at_once_is_one_lead_replayed_or_refused(
    start_intake: IntakeFactory, database_url: str
) -> None:
    intake = await start_intake(**TOGETHER)
    same = {"email": "once@example.com"}
    other = {"email": "someone-else@example.com"}
    key = {"idempotency-key": "concurrent-1"}

    answers = await _post_all(intake, [same, same, other, same], headers=key)

    firsts = [a for a in answers if a.status_code == 202 and "idempotent-replayed" not in a.headers]
    assert len(firsts) == 1
    first_body = [same, same, other, same][answers.index(firsts[0])]
    for body, answer in zip([same, same, other, same], answers, strict=True):
        if answer is firsts[0]:
            continue
        if body == first_body:
            assert answer.status_code == 202
            assert answer.headers["idempotent-replayed"] == "true"
            assert answer.json() == firsts[0].json()
        else:
            assert answer.status_code == 409
            assert answer.headers["content-type"] == "application/problem+json"
    assert len(await _rows(database_url, "SELECT 1 FROM intake.leads")) == 1


async def test_a_client_over_its_allowance_in_one_batch_is_refused_the_rest(
    start_intake: IntakeFactory, database_url: str
) -> None:
    intake = await start_intake(rate_limit_per_client=3, **TOGETHER)
    bodies = [{"email": f"burst-{n}@example.com"} for n in range(5)]

    answers = await _post_all(intake, bodies)

    assert sorted(a.status_code for a in answers) == [202, 202, 202, 429, 429]
    assert all(a.headers["retry-after"] == "60" for a in answers if a.status_code == 429)
    assert len(await _rows(database_url, "SELECT 1 FROM intake.leads")) == 3


async def test_a_member_whose_commit_fails_is_refused_alone_and_never_answered_2xx(
    start_intake: IntakeFactory, database_url: str
) -> None:
    intake = await start_intake(**TOGETHER)
    # A check PostgreSQL makes only at COMMIT: if answers went out before the commit,
    # the doomed lead would get a 202.
    await _execute(
        database_url,
        """CREATE FUNCTION intake.refuse_doomed() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF NEW.email = 'doomed@example.com' THEN RAISE EXCEPTION 'doomed'; END IF;
               RETURN NULL;
           END $$;
           CREATE CONSTRAINT TRIGGER doomed AFTER INSERT ON intake.leads
               DEFERRABLE INITIALLY DEFERRED
               FOR EACH ROW EXECUTE FUNCTION intake.refuse_doomed()""",
    )
    bodies = [{"email": f"fine-{n}@example.com"} for n in range(3)]
    bodies.insert(1, {"email": "doomed@example.com"})

    # In-process, the app's unexpected error reaches the client (a real one gets a 500).
    answers = await asyncio.gather(
        *(intake.post("/v1/leads", json=body) for body in bodies), return_exceptions=True
    )

    assert isinstance(answers[1], asyncpg.RaiseError), answers[1]
    fine = [answers[0], answers[2], answers[3]]
    assert [a.status_code for a in fine if isinstance(a, httpx.Response)] == [202] * 3
    stored = await _rows(database_url, "SELECT email FROM intake.leads ORDER BY email")
    assert [row["email"] for row in stored] == [f"fine-{n}@example.com" for n in range(3)]
    assert await _batches_of_more_than_one(intake) >= 1


async def test_a_lone_post_is_written_at_once_in_a_batch_of_its_own(
    intake: httpx.AsyncClient,
) -> None:
    answer = await intake.post("/v1/leads", json={"email": "alone@example.com"})

    assert answer.status_code == 202
    metrics = (await intake.get("/metrics")).text
    assert parse_metric(metrics, "funnel_intake_lead_batch_size_count") == 1
    assert parse_metric(metrics, 'funnel_intake_lead_batch_size_bucket{le="1.0"}') == 1


async def test_every_2xx_is_already_visible_to_another_connection(
    start_intake: IntakeFactory, database_url: str
) -> None:
    intake = await start_intake()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)

    async def post_and_look(n: int) -> tuple[int, bool]:
        answer = await intake.post("/v1/leads", json={"email": f"seen-{n}@example.com"})
        stored = await pool.fetchval(
            "SELECT true FROM intake.leads WHERE submission_id = $1::uuid",
            answer.json()["receipt_id"],
        )
        return answer.status_code, bool(stored)

    try:
        seen = await asyncio.gather(*(post_and_look(n) for n in range(8)))
    finally:
        await pool.close()

    assert seen == [(202, True)] * 8


async def test_a_busy_clients_hits_are_counted_only_up_to_its_allowance(
    start_intake: IntakeFactory, database_url: str
) -> None:
    await start_intake()  # the schema, migrated
    client = f"busy-{uuid4().hex}"
    connection = await asyncpg.connect(database_url, server_settings={"search_path": "intake"})
    try:
        await store.record_client_hits(connection, [client] * 50)

        capped = await store.client_hits_in_window(connection, [client], 60, at_most=20)
        exact = await store.client_hits_in_window(connection, [client], 60, at_most=100)
    finally:
        await connection.execute("DELETE FROM client_hits WHERE client_hash = $1", client)
        await connection.close()

    assert capped == {client: 20}
    assert exact == {client: 50}
