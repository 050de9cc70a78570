"""The platform's HTTP edge against hostile clients and a hanging database.

What every web process shares (funnel_common.service.build_web_app): a body limit before
anything parses a body, an aborted upload that is not a server error, and a client
address that a client cannot choose; and a write that answers 503 within seconds when
PostgreSQL hangs. Run under uvicorn as `funnel dev` runs it (SERVER_OPTIONS), where the
server's own behaviour matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import uvicorn
from fastapi import FastAPI

from funnel_common.settings import CommonSettings
from funnel_tools.dev import SERVER_OPTIONS
from funnel_tools.embedded import EmbeddedPostgres, free_port
from handoff.settings import HandoffSettings
from handoff.web import create_app as create_handoff
from lead_intake.web import create_app
from metrics.settings import MetricsSettings
from metrics.web import create_app as create_metrics
from tests.helpers import eventually, parse_metric
from tests.integration.intake.conftest import (
    CRM_SECRET,
    intake_settings,
    running_intake,
    signed,
)

LEAD = {"email": "grace@example.com", "source": "webinar"}


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` under uvicorn in a thread, configured as funnel dev runs it; its URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        proxy_headers="--no-proxy-headers" not in SERVER_OPTIONS,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with contextlib.suppress(TimeoutError):
            for _ in range(600):  # a thread's flag: no event to await across threads
                if server.started:
                    break
                threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- body limit --------------------------------------------------------------------------


async def test_every_service_refuses_a_large_body_with_413_before_reading_it(
    database_url: str, settings: CommonSettings
) -> None:
    apps = {
        "lead-intake": (create_app(intake_settings(database_url, settings)), "/v1/leads"),
        "handoff": (
            create_handoff(HandoffSettings(database_url=database_url, common=settings)),
            "/v1/sla-policies/flood",
        ),
        "metrics": (
            create_metrics(MetricsSettings(database_url=database_url, common=settings)),
            "/v1/targets/2026-Q4",
        ),
    }
    huge = b'{"amount_cents": ' + b"1" * (settings.http_max_body_bytes + 1) + b"}"
    answers = {}

    for name, (app, path) in apps.items():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
            method = "POST" if name == "lead-intake" else "PUT"
            declared = await client.request(
                method, path, content=huge, headers={"content-type": "application/json"}
            )

            async def stream() -> Any:
                # No Content-Length: the limit must hold while the body streams in.
                for start in range(0, len(huge), 8192):
                    yield huge[start : start + 8192]

            streamed = await client.request(
                method, path, content=stream(), headers={"content-type": "application/json"}
            )
        answers[name] = (declared.status_code, streamed.status_code, declared.json()["type"])

    # Anonymous: a declared length over the limit is refused before anything else, for
    # every service; a streamed body to a route that needs a token is not read at all,
    # the token being checked first (funnel_common.auth.TokenFirstRoute).
    assert answers == {
        "lead-intake": (413, 413, "/problems/payload-too-large"),
        "handoff": (413, 401, "/problems/payload-too-large"),
        "metrics": (413, 401, "/problems/payload-too-large"),
    }


# --- an upload the client abandons ------------------------------------------------------


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _abandon_upload(url: str, path: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 50000\r\n\r\n".encode()
            + b'{"email": "half'
        )
    # Closed with 49,9xx bytes still to come.


async def test_a_client_that_aborts_an_upload_is_not_a_server_error(
    database_url: str, topics: CommonSettings
) -> None:
    app = create_app(intake_settings(database_url, topics))
    errors = _Errors()
    logging.getLogger().addHandler(errors)  # after create_app configured logging

    try:
        with served(app) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                for _ in range(3):
                    await asyncio.to_thread(_abandon_upload, url, "/v1/leads")
                    await asyncio.to_thread(_abandon_upload, url, "/v1/deals")

                async def counted() -> str:
                    return (await client.get("/metrics")).text

                metrics = await eventually(
                    counted,
                    until=lambda text: 'status="499"' in text,
                    what="the aborted uploads counted",
                )
                metrics = await eventually(
                    counted,
                    until=lambda text: (parse_metric(text, "funnel_http_requests_total",
                                                     _labels("/v1/deals", "499")) or 0) >= 3,
                    what="every aborted upload counted",
                )  # fmt: skip
    finally:
        logging.getLogger().removeHandler(errors)

    assert 'status="500"' not in metrics
    assert parse_metric(metrics, "funnel_http_requests_total", _labels("/v1/leads", "499")) == 3
    assert [record.getMessage() for record in errors.records] == []


def _labels(route: str, status: str) -> str:
    return f'method="POST",route="{route}",service="lead-intake",status="{status}"'


# --- the client's address ---------------------------------------------------------------


async def test_a_local_client_cannot_pick_its_address_with_x_forwarded_for(
    database_url: str, topics: CommonSettings
) -> None:
    app = create_app(intake_settings(database_url, topics, rate_limit_per_client=3))

    with served(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            answers = [
                await client.post(
                    "/v1/leads",
                    json={**LEAD, "email": f"visitor.{n}@example.com"},
                    headers={"x-forwarded-for": f"203.0.113.{n}"},
                )
                for n in range(6)
            ]

    assert [answer.status_code for answer in answers] == [202, 202, 202, 429, 429, 429]


async def test_behind_a_trusted_proxy_each_visitor_is_limited_apart(
    database_url: str, topics: CommonSettings
) -> None:
    behind_proxy = topics.model_copy(update={"trusted_proxies": ["127.0.0.0/8"]})
    app = create_app(intake_settings(database_url, behind_proxy, rate_limit_per_client=2))

    with served(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:

            async def post(visitor: str, n: int, forwarded: str | None = None) -> int:
                answer = await client.post(
                    "/v1/leads",
                    json={**LEAD, "email": f"{visitor}.{n}@example.com"},
                    headers={"x-forwarded-for": forwarded or visitor},
                )
                return answer.status_code

            first = [await post("198.51.100.7", n) for n in range(3)]
            second = [await post("198.51.100.8", n) for n in range(2)]
            # A visitor's own X-Forwarded-For is the leftmost: the proxy appends the
            # address it saw, which is the one that counts.
            spoofed = [await post("198.51.100.7", n, f"10.9.9.{n}, 198.51.100.7") for n in range(2)]

    assert first == [202, 202, 429]
    assert second == [202, 202]
    assert spoofed == [429, 429]


# --- PostgreSQL that hangs ----------------------------------------------------------------


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg", free_port(), durable=False)
    server.start()
    server.create_database("funnel")
    yield server
    server.stop()


@contextlib.contextmanager
def frozen(server: EmbeddedPostgres) -> Iterator[None]:
    """Every process of the server stopped (SIGSTOP), as a hung host or a partition
    looks: connections stay open and nothing answers."""
    postmaster = psutil.Process(int((server.data_dir / "postmaster.pid").read_text().split()[0]))
    processes = [postmaster, *postmaster.children(recursive=True)]
    for process in processes:
        process.suspend()
    try:
        yield
    finally:
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()


async def test_a_write_gets_503_with_retry_after_within_seconds_when_postgresql_hangs(
    own_postgres: EmbeddedPostgres, topics: CommonSettings
) -> None:
    quick = topics.model_copy(
        update={"db_acquire_timeout_seconds": 1.0, "db_statement_timeout_seconds": 2.0}
    )
    settings = intake_settings(own_postgres.dsn("funnel"), quick)
    deal = {"webhook_id": "h-1", "event": "opened", "deal_id": "D-1", "amount_cents": 1}

    async with running_intake(settings, worker=False) as intake:
        assert (await intake.post("/v1/leads", json=LEAD)).status_code == 202
        with frozen(own_postgres):
            # Bounded by the timeouts (a few seconds), never the minutes of TCP's own;
            # the old 30 s statement timeout would miss this deadline.
            async with asyncio.timeout(20):
                lead = await intake.post("/v1/leads", json={**LEAD, "email": "b@example.com"})
                webhook = await intake.post("/v1/deals", **signed(deal, CRM_SECRET))
        after = await intake.post("/v1/leads", json={**LEAD, "email": "c@example.com"})

    for answer in (lead, webhook):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "5"
        assert answer.json()["type"] == "/problems/unavailable"
    assert after.status_code == 202
