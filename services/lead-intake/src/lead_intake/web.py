"""lead-intake's web process: ``create_app(settings) -> FastAPI``, HTTP only, wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from funnel_common.service import WebState, build_web_app
from funnel_common.telemetry import PlatformMetrics
from lead_intake import api, connector_api, privacy_api, runtime, webhooks
from lead_intake.edge import BrowserRefusalPage, FormCorsMiddleware
from lead_intake.forms import load_forms
from lead_intake.qualification import load_rules
from lead_intake.settings import IntakeSettings
from lead_intake.telemetry import IntakeMetrics


class IntakeWebState(WebState):
    lead_committer: api.LeadCommitter


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    metrics = PlatformMetrics(runtime.SERVICE, relays=False)
    # A bad forms or rules file stops start-up here, naming the line.
    context = api.IntakeContext(
        settings=settings,
        forms=load_forms(settings.forms_file),
        rules=load_rules(settings.qualification_rules_file),
        metrics=IntakeMetrics(metrics.registry),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[IntakeWebState]:
        async with runtime.opened(settings, metrics) as opened:
            committer = api.lead_committer(opened.pool, settings, context.rules, context.metrics)
            async with committer.running():
                yield {"runtime": opened, "lead_committer": committer}

    app = build_web_app(
        service=runtime.SERVICE,
        title="Shared Funnel: lead-intake",
        settings=settings.common,
        metrics=metrics,
        lifespan=lifespan,
        routers=[
            api.router(context),
            webhooks.router(settings, context.metrics),
            connector_api.router(settings, context.metrics),
            privacy_api.router(),
        ],
        max_body_bytes=settings.max_body_bytes,
        body_limits={connector_api.PREFIX: settings.connector_max_body_bytes},
    )
    origins = context.forms.all_origins
    app.add_middleware(
        FormCorsMiddleware,
        origins=lambda: origins,
        path=api.LEADS_PATH,
        any_loopback=settings.common.environment == "development",
    )
    # The body limit is every service's (build_web_app, max_body_bytes above).
    app.add_middleware(BrowserRefusalPage, path=api.LEADS_PATH)
    return app
