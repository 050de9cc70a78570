"""schemathesis against lead-intake's OpenAPI with every check: no 5xx, every status a
route answers is documented, every answer matches its schema and media type, valid data
is accepted and invalid data refused.

lead-intake (connectors on) runs under uvicorn in a thread (schemathesis speaks plain
HTTP); a requests auth hook signs webhook and connector posts as their senders would, so
the fuzzing reaches past the signatures into validation and the domain. The seed is
``FUNNEL_FUZZ_SEED`` when set (run it with seeds CI does not use), else a fixed one.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import time
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    CHECKS,
    CheckFunction,
    load_all_checks,
    positive_data_acceptance,
)

from funnel_common.settings import CommonSettings
from funnel_common.signing import SIGNATURE_HEADER, sign
from lead_intake.connectors import hubspot
from lead_intake.web import create_app
from tests.helpers import served_in_thread
from tests.integration.intake.conftest import (
    BILLING_SECRET,
    CRM_SECRET,
    IMPORT_SECRET,
    intake_settings,
)

SECRETS = {"/v1/deals": CRM_SECRET, "/v1/accounts/events": BILLING_SECRET}
VENDOR_SECRET = "a-vendor-secret-for-the-fuzzer-0123456789"
SEED = int(os.environ.get("FUNNEL_FUZZ_SEED", "20261205"))
EXAMPLES = int(os.environ.get("FUNNEL_FUZZ_EXAMPLES", "40"))


class SignLikeTheSender(requests.auth.AuthBase):
    """Signs bodies as the CRM, billing, HubSpot and Stripe would (after preparation);
    half the lead posts as `funnel import` does."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._leads = itertools.count()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        path = (request.path_url or "").split("?")[0]
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        assert isinstance(raw, bytes), "schemathesis sends prepared bodies"
        now = int(time.time())
        if path in SECRETS:
            # Only where the case has the header: a case without it tests its absence.
            if SIGNATURE_HEADER in request.headers:
                request.headers[SIGNATURE_HEADER] = sign(SECRETS[path], now, raw)
        elif path == "/v1/leads" and next(self._leads) % 2:
            request.headers[SIGNATURE_HEADER] = sign(IMPORT_SECRET, now, raw)
        elif path == "/v1/connectors/hubspot":
            timestamp = str(now * 1000)
            request.headers[hubspot.TIMESTAMP_HEADER] = timestamp
            request.headers[hubspot.SIGNATURE_HEADER] = hubspot.expected_signature(
                VENDOR_SECRET, method="POST", uri=f"{self._base_url}{path}", body=raw,
                timestamp=timestamp,
            )  # fmt: skip
        elif path == "/v1/connectors/stripe":
            digest = hmac.new(VENDOR_SECRET.encode(), f"{now}.".encode() + raw, hashlib.sha256)
            request.headers["Stripe-Signature"] = f"t={now},v1={digest.hexdigest()}"
        return request


@pytest.fixture
def intake_url(
    database_url: str, settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    for name in ("HUBSPOT", "SALESFORCE", "STRIPE"):
        monkeypatch.setenv(f"FUNNEL_INTAKE_{name}_ENABLED", "true")
    monkeypatch.setenv("FUNNEL_INTAKE_HUBSPOT_CLIENT_SECRET", VENDOR_SECRET)
    monkeypatch.setenv("FUNNEL_INTAKE_STRIPE_WEBHOOK_SECRET", VENDOR_SECRET)
    monkeypatch.setenv("FUNNEL_INTAKE_SALESFORCE_ORGANIZATION_ID", "00D000000000062")
    app = create_app(intake_settings(database_url, settings))
    with served_in_thread(app, what="lead-intake") as url:
        yield url


def test_lead_intake_passes_every_schemathesis_check(intake_url: str) -> None:
    # The plain Python API, not schemathesis' pytest plugin: the schema only exists once
    # the server runs, and the plugin's lazy loading does not support this pytest.
    schema = schemathesis.openapi.from_url(f"{intake_url}/openapi.json")
    session = requests.Session()
    session.auth = SignLikeTheSender(intake_url)
    answers: list[tuple[str, int]] = []
    session.hooks["response"].append(
        lambda response, *_, **__: answers.append(
            (response.request.path_url.split("?")[0], response.status_code)
        )
    )
    load_all_checks()
    # Every check but one: "valid data is accepted" would need the schema to state rules
    # JSON Schema cannot (the forms registered today, a field only a signed import may
    # set, a phone that is shaped right but no number, an instant within 1970..9999, the
    # vendors' payloads, documented only as far as we read them). Those are precise 422s.
    checks: list[CheckFunction] = [
        check
        for check in CHECKS.get_all()
        if not isinstance(check, type) and check is not positive_data_acceptance
    ]
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {op.path for op in operations} >= {"/v1/leads", "/v1/deals", "/v1/accounts/events"}
    failures: list[str] = []

    for operation, mode in itertools.product(operations, GenerationMode):
        if mode is GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # nothing to make invalid in a bare GET

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @seed(SEED)
        def exercise(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            case.call_and_validate(base_url=intake_url, session=session, checks=checks)

        try:
            exercise()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue  # a body that is any text (Salesforce's XML) has no invalid form
        except BaseException as failure:  # every operation's failures, reported together
            failures.append(f"{operation.label} ({mode.name}): {failure}"[:3000])

    assert failures == [], "\n\n".join(failures)
    # The fuzzing got past the edge: leads were taken, and signed webhooks reached the
    # domain, not just the signature check.
    seen = set(answers)
    assert ("/v1/leads", 202) in seen, sorted(seen)
    for path in ("/v1/deals", "/v1/accounts/events"):
        assert (path, 200) in seen, sorted(seen)
