"""Hostile text: what an attacker (or a broken client) puts in every free-text field.

Each value is sent as JSON with ``ensure_ascii`` so a lone surrogate travels as the
escape ``\\ud800`` that a JSON parser accepts but UTF-8 (and PostgreSQL) cannot hold.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

HOSTILE: dict[str, str] = {
    "sql": "Robert'); DROP TABLE leads;--",
    "sql_or": "' OR '1'='1' --",
    "nul": "Evil\x00Corp",
    "lone_surrogate": "broken \ud800 text",
    "long": "A" * 10_000,
    "html": '<script>alert("x")</script><img src=x onerror=alert(1)>',
    "crlf": "line one\r\nX-Injected: yes\r\n\r\n{fake log}",
    "quotes": '"}, {"admin": true, "x": "\\',
    "format": "%s%s%n%x {0} {__class__} ${jndi:ldap://x/a}",
    "rtl": "\u202etxt.exe\u202c and \u200b zero width",
    "unicode": "Zoë 山田 👩🏽‍💻 Z\u0324\u0354\u0367",
    "path": "../../../etc/passwd",
}
"""Name -> value; the name says what each one attacks."""

# Refused at the edge because PostgreSQL (or UTF-8) cannot store them.
UNSTORABLE = frozenset({"nul", "lone_surrogate"})


def json_bytes(body: Any) -> bytes:
    """The body as JSON bytes, escaping non-ASCII so a lone surrogate survives encoding."""
    return json.dumps(body, ensure_ascii=True).encode()


def with_invalid_utf8(body: dict[str, Any], field: str) -> bytes:
    """JSON bytes whose ``field`` holds bytes that are not UTF-8 at all."""
    marker = "INVALID-UTF8-MARKER"
    return json_bytes({**body, field: marker}).replace(marker.encode(), b"bad \xff\xfe\xc0 bytes")


def is_problem(answer: httpx.Response) -> bool:
    """A 4xx answered as RFC 9457 problem details."""
    status: int = answer.status_code
    return (
        400 <= status < 500
        and answer.headers.get("content-type") == "application/problem+json"
        and answer.json().get("status") == status
    )
