"""The named refusals of handoff's domain; funnel_common.http maps them to problem details."""

from __future__ import annotations

from funnel_common.http import Conflict, DomainError


class HandoffConflict(Conflict):
    slug = "handoff-conflict"
    title = "The handoff is no longer in a state that allows this"


class UnknownRep(DomainError):
    status = 422
    slug = "unknown-rep"
    title = "No such rep on the roster"
