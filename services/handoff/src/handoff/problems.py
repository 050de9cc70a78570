"""How handoff's error answers look in its OpenAPI document: RFC 9457 problem details.

Every refusal is ``application/problem+json`` (funnel_common.http maps domain errors,
validation errors and outages to it); these declarations make the document say so, per
route and status, so clients and fuzzers know every status a route may answer.

The same ``Problem`` model and ``problem_responses`` are moving to funnel_common.http (on
lead-intake's branch); once there, this module becomes an import of them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from funnel_common.http import PROBLEM_MEDIA_TYPE


class Problem(BaseModel):
    """RFC 9457 problem details, as every error answer of the platform carries them."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, str]] | None = None


_WHY = {
    400: "The body could not be parsed",
    401: "No valid bearer token (missing, malformed, expired, forged, never issued, revoked)",
    403: "The token's role or team may not do this",
    404: "No such resource",
    409: "The handoff is no longer in a state that allows this",
    413: "The request body is too large",
    422: "The request is not valid; `errors` names each offending field",
    503: "PostgreSQL is unavailable; nothing was stored (see Retry-After)",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting ``statuses`` as ``application/problem+json``."""
    return {
        status: {
            "model": Problem,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": Problem.model_json_schema()}},
            "description": _WHY.get(status, "A problem (RFC 9457)"),
        }
        for status in statuses
    }
