"""handoff routes: parse, authorise, call the flow, answer. Thin on purpose."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPBearer

from funnel_common.auth import Forbidden, Principal, TokenFirstRoute, authenticate
from funnel_common.http import NotFound, problem_responses
from funnel_common.personal import Keyring
from funnel_common.service import Transaction, runtime_of
from funnel_common.types import utc_now
from handoff import decisions, people, permissions, roster, store, tokens
from handoff.models import (
    OPEN_STATUSES,
    Decision,
    Handoff,
    HandoffList,
    HandoffOut,
    PersonHandoffs,
    Policy,
    QueueQuery,
    ReassignIn,
    RejectIn,
    Rep,
    RepIn,
    Team,
    TeamIn,
    TokenCreated,
    TokenIn,
    TokenOut,
)
from handoff.sla import SlaPolicy

Connection = Transaction
PathId = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._@:-]+$")]
Caller = Annotated[Principal, Depends(authenticate)]


def _keyring(request: Request) -> Keyring:
    return people.keyring_for(runtime_of(request).settings)


Keys = Annotated[Keyring, Depends(_keyring)]
"""Opens the leads' sealed data for the answer (people.py)."""


async def _out(conn: Connection, keys: Keyring, handoff: Handoff) -> HandoffOut:
    [opened] = await people.opened(conn, keys, [handoff])
    return HandoffOut.of(opened)


# Only documents the scheme in /docs ("Authorize"); authenticate does the checking.
_bearer_scheme = HTTPBearer(auto_error=False, description="A token from `POST /v1/tokens`")

# Every route: a token is needed, input is validated, and the database may be down.
router = APIRouter(
    prefix="/v1",
    route_class=TokenFirstRoute,  # no body is read before the token is checked
    dependencies=[Depends(_bearer_scheme)],
    responses=problem_responses(400, 401, 422, 503),
)
ROLE = problem_responses(403)
ROLE_AND_ID = problem_responses(403, 404)


# --- the rep's queue and decisions ----------------------------------------------------


@router.get("/me", tags=["handoffs"], summary="Who the token speaks for")
async def me(principal: Caller) -> Principal:
    return principal


@router.get(
    "/handoffs",
    tags=["handoffs"],
    summary="The caller's queue, soonest due first",
    description="A rep sees their own handoffs, a manager their team's, an admin all. "
    "Without `status`, open handoffs (queued, assigned, escalated) are listed.",
)
async def list_handoffs(
    principal: Caller, conn: Connection, keys: Keys, query: Annotated[QueueQuery, Query()]
) -> HandoffList:
    rep_id, team_id = permissions.queue_scope(principal, query.team)
    handoffs = await store.list_handoffs(
        conn,
        rep_id=rep_id,
        team_id=team_id,
        statuses=query.status or OPEN_STATUSES,
        limit=query.limit,
    )
    opened = await people.opened(conn, keys, handoffs)
    return HandoffList(items=[HandoffOut.of(handoff) for handoff in opened])


@router.get(
    "/handoffs/{handoff_id}", tags=["handoffs"], summary="One handoff", responses=ROLE_AND_ID
)
async def get_handoff(
    handoff_id: UUID, principal: Caller, conn: Connection, keys: Keys
) -> HandoffOut:
    handoff = await permissions.load_for(conn, handoff_id, principal, lock=False)
    return await _out(conn, keys, handoff)


@router.post(
    "/handoffs/{handoff_id}/accept",
    tags=["handoffs"],
    summary="Accept: the lead becomes sales-accepted",
    responses=problem_responses(403, 404, 409),
)
async def accept(handoff_id: UUID, principal: Caller, conn: Connection, keys: Keys) -> Decision:
    handoff, seconds, within = await decisions.accept(conn, handoff_id, principal, now=utc_now())
    return Decision(
        handoff=await _out(conn, keys, handoff),
        business_seconds_to_decision=seconds,
        within_sla=within,
    )


@router.post(
    "/handoffs/{handoff_id}/reject",
    tags=["handoffs"],
    summary="Reject with a reason; wrong_territory routes the lead again",
    responses=problem_responses(403, 404, 409),
)
async def reject(
    handoff_id: UUID, body: RejectIn, principal: Caller, conn: Connection, keys: Keys
) -> Decision:
    handoff, seconds, within = await decisions.reject(
        conn, handoff_id, principal, body, now=utc_now(), keyring=keys
    )
    return Decision(
        handoff=await _out(conn, keys, handoff),
        business_seconds_to_decision=seconds,
        within_sla=within,
    )


@router.post(
    "/handoffs/{handoff_id}/reassign",
    tags=["handoffs"],
    summary="Reassign (manager, admin): to a named rep or the next eligible one",
    responses=problem_responses(403, 404, 409),
)
async def reassign(
    handoff_id: UUID,
    principal: Caller,
    conn: Connection,
    keys: Keys,
    body: ReassignIn | None = None,
) -> Decision:
    handoff = await decisions.reassign(
        conn, handoff_id, principal, body.rep_id if body else None, now=utc_now()
    )
    return Decision(handoff=await _out(conn, keys, handoff))


# --- a person's data ------------------------------------------------------------------


@router.get(
    "/privacy/people/{lead_id}",
    tags=["privacy"],
    summary="Everything handoff holds about the person of this lead (admin)",
    description="Their handoff with its profile, every decision with its note, the later "
    "submissions merged onto the lead, and the notifications sent about it. lead-intake's "
    "`GET /v1/privacy/people?email=` says which leads are a person's; docs/privacy.md.",
    responses=ROLE,
)
async def export_person(
    lead_id: UUID, principal: Caller, conn: Connection, keys: Keys
) -> PersonHandoffs:
    permissions.require_role(principal, "admin")
    return await people.export(conn, keys, lead_id)


# --- roster and rules -----------------------------------------------------------------


@router.put(
    "/reps/{rep_id}",
    tags=["roster"],
    summary="Add or change a rep (admin, manager); audited on funnel.roster",
    responses=ROLE,
)
async def put_rep(rep_id: PathId, body: RepIn, principal: Caller, conn: Connection) -> Rep:
    return await roster.save_rep(conn, rep_id, body, principal, now=utc_now())


@router.get(
    "/reps", tags=["roster"], summary="The roster (admin: all, manager: own team)", responses=ROLE
)
async def list_reps(principal: Caller, conn: Connection) -> list[Rep]:
    permissions.require_role(principal, "admin", "manager")
    team = principal.team if principal.role == "manager" else None
    if principal.role == "manager" and team is None:
        return []
    return await store.list_reps(conn, team)


@router.get(
    "/reps/{rep_id}",
    tags=["roster"],
    summary="One rep (admin, their manager, self)",
    responses=ROLE_AND_ID,
)
async def get_rep(rep_id: PathId, principal: Caller, conn: Connection) -> Rep:
    rep = await store.get_rep(conn, rep_id)
    # Self: a token of an acting role named like the rep (marketing is nobody's rep).
    own = principal.role in permissions.ACTING_ROLES and principal.subject == rep_id
    allowed = principal.role == "admin" or own
    if rep is not None and principal.role == "manager" and principal.team == rep.team_id:
        allowed = True
    if not allowed:
        raise Forbidden("not your rep")
    if rep is None:
        raise NotFound(f"no rep {rep_id}")
    return rep


@router.put(
    "/teams/{team_id}",
    tags=["roster"],
    summary="Add or change a team (admin); audited on funnel.roster",
    responses=ROLE,
)
async def put_team(team_id: PathId, body: TeamIn, principal: Caller, conn: Connection) -> Team:
    return await roster.save_team(conn, team_id, body, principal, now=utc_now())


@router.get(
    "/teams", tags=["roster"], summary="Teams and their rules (admin, manager)", responses=ROLE
)
async def list_teams(principal: Caller, conn: Connection) -> list[Team]:
    permissions.require_role(principal, "admin", "manager")
    teams = await store.list_teams(conn)
    if principal.role == "manager":
        teams = [team for team in teams if team.team_id == principal.team]
    return teams


@router.put(
    "/sla-policies/{name}",
    tags=["sla"],
    summary="Add or change an SLA policy (admin); audited on funnel.roster",
    description="A policy whose window can never elapse in its calendar (too few working "
    "hours, holidays covering them) is refused: 422 naming `calendar`.",
    responses=ROLE,
)
async def put_policy(name: PathId, body: SlaPolicy, principal: Caller, conn: Connection) -> Policy:
    saved = await roster.save_policy(conn, name, body, principal, now=utc_now())
    return Policy(name=name, **saved.model_dump())


@router.get("/sla-policies", tags=["sla"], summary="All SLA policies")
async def list_policies(principal: Caller, conn: Connection) -> list[Policy]:
    return [
        Policy(name=name, **policy.model_dump()) for name, policy in await store.list_policies(conn)
    ]


# --- API tokens (admin) ---------------------------------------------------------------


@router.post(
    "/tokens",
    tags=["tokens"],
    status_code=201,
    summary="Mint a token (admin); its text is in this answer only",
    responses=ROLE,
    description="Every service accepts it once it has heard of it on `funnel.access`: "
    "handoff at once, lead-intake and metrics one consumer hop later.",
)
async def create_token(
    body: TokenIn, principal: Caller, conn: Connection, request: Request
) -> TokenCreated:
    permissions.require_role(principal, "admin")
    issued, token = await tokens.create_token(
        conn,
        runtime_of(request).settings.auth_secret,
        subject=body.subject,
        role=body.role,
        team=body.team,
        lifetime=timedelta(days=body.days),
        issued_by=principal.subject[:80],
    )
    return TokenCreated(
        token=token,
        token_id=issued.token_id,
        subject=issued.subject,
        role=issued.role,
        team=issued.team,
        issued_at=issued.issued_at,
        expires_at=issued.expires_at,
        issued_by=principal.subject[:80],
        revoked_at=None,
        revoked_by=None,
    )


@router.get(
    "/tokens", tags=["tokens"], summary="Issued tokens, never their text (admin)", responses=ROLE
)
async def list_tokens(principal: Caller, conn: Connection) -> list[TokenOut]:
    permissions.require_role(principal, "admin")
    return await tokens.list_tokens(conn)


@router.delete(
    "/tokens/{token_id}",
    tags=["tokens"],
    summary="Revoke a token (admin); revoking again changes nothing",
    responses=ROLE_AND_ID,
    description="handoff refuses it at once, lead-intake and metrics one consumer hop later.",
)
async def revoke_token(token_id: UUID, principal: Caller, conn: Connection) -> TokenOut:
    permissions.require_role(principal, "admin")
    revoked = await tokens.revoke_token(conn, token_id, revoked_by=principal.subject[:80])
    if revoked is None:
        raise NotFound(f"no token {token_id}")
    return revoked
