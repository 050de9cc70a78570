from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr, ValidationError
from starlette.requests import Request

from funnel_common.auth import Unauthenticated, issue_token, session_cookie_secure, verify_token
from funnel_common.settings import CommonSettings, Environment

SECRET = SecretStr("test-secret")
REAL = "Vq3kR9xZ2mT7bW4nY8cF1hJ6pL0sD5gA"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_a_token_verifies_to_its_principal() -> None:
    issued, token = issue_token(SECRET, subject="rep-ada", role="rep", team="emea", now=NOW)

    principal = verify_token(SECRET, token, now=NOW + timedelta(days=1))

    assert principal == issued
    assert (principal.subject, principal.role, principal.team) == ("rep-ada", "rep", "emea")


def test_a_tampered_token_is_refused() -> None:
    _, token = issue_token(SECRET, subject="rep-ada", role="rep", now=NOW)
    _, admin = issue_token(SECRET, subject="root", role="admin", now=NOW)
    # An admin's claims carrying the rep token's signature.
    forged = admin.split(".")[0] + "." + token.split(".")[1]

    with pytest.raises(Unauthenticated, match="signature"):
        verify_token(SECRET, forged, now=NOW)


@pytest.mark.parametrize("token", ["", "Bearer x", "fnl_abc", "fnl_a.b.c", "fnl_!!!.???"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, token, now=NOW)


def test_other_secret_and_expiry_are_refused() -> None:
    _, token = issue_token(
        SECRET, subject="m", role="manager", now=NOW, lifetime=timedelta(hours=1)
    )

    with pytest.raises(Unauthenticated, match="signature"):
        verify_token(SecretStr("other"), token, now=NOW)
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(SECRET, token, now=NOW + timedelta(hours=1))


def test_the_placeholder_auth_secret_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="FUNNEL_AUTH_SECRET"):
        CommonSettings(environment="production")
    assert CommonSettings(environment="production", auth_secret=SecretStr(REAL))


@pytest.mark.parametrize(
    ("environment", "scheme", "secure"),
    [
        ("production", "http", True),  # TLS ends at the ingress: the app sees http
        ("production", "https", True),
        ("development", "http", False),  # http://127.0.0.1 keeps working on a laptop
        ("development", "https", True),
        ("test", "http", True),
    ],
)
def test_the_session_cookie_is_secure_in_production_behind_a_tls_ingress(
    environment: Environment, scheme: str, secure: bool
) -> None:
    scope = {"type": "http", "scheme": scheme, "server": ("handoff", 80), "path": "/"}
    request = Request({**scope, "headers": [], "query_string": b""})

    assert session_cookie_secure(request, environment) is secure
