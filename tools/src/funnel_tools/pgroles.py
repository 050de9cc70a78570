"""One PostgreSQL role per service, owning its schema and nothing else.

A bug in one service (or a stolen connection string) then cannot read or change another
service's tables: the contract's "each service owns its schema" enforced by PostgreSQL,
not by good manners. ``funnel dev`` runs :func:`provisioning_sql` on the embedded server
at every start (it is idempotent) and gives each service its own database URL; in
Kubernetes, CloudNativePG's managed roles and a ``Database`` resource do the same
(deploy/k8s/base/postgres.yaml).

Each role owns its schema, so its migrations create and alter its tables there. It has
no ``CREATE`` on the database (no new schemas) except ``metrics``: ``funnel replay``
rebuilds the projections into a fresh schema and switches by renaming schemas.
"""

from __future__ import annotations

import re

# service -> its role, which is also its schema's name (each service's runtime.SCHEMA).
SERVICE_ROLES = {"lead-intake": "intake", "handoff": "handoff", "metrics": "metrics"}
# Roles that build schemas of their own (metrics' replay: metrics_replay_<time>).
CREATES_SCHEMAS = ("metrics",)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _checked(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain PostgreSQL identifier: {name!r}")
    return name


def _role_sql(role: str) -> str:
    # A data directory from before roles has these schemas owned by the superuser: the
    # schema and every table in it are handed over (sequences of identity and serial
    # columns follow their table; a free-standing one is handed over too).
    return f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
    CREATE ROLE {role} LOGIN;
  END IF;
END $$;
CREATE SCHEMA IF NOT EXISTS {role} AUTHORIZATION {role};
ALTER SCHEMA {role} OWNER TO {role};
DO $$ DECLARE item record; BEGIN
  FOR item IN
    SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = '{role}' AND c.relowner <> '{role}'::regrole
      AND (c.relkind IN ('r', 'p', 'v', 'm', 'f')
           OR (c.relkind = 'S' AND NOT EXISTS (
                 SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))))
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO {role}',
                   CASE WHEN item.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, item.name);
  END LOOP;
END $$;
"""


def provisioning_sql(database: str) -> str:
    """The SQL that gives each service its role and schema in ``database`` (idempotent;
    run as a superuser, connected to ``database``)."""
    database = _checked(database)
    statements = [_role_sql(_checked(role)) for role in SERVICE_ROLES.values()]
    statements += [f"GRANT CREATE ON DATABASE {database} TO {role};" for role in CREATES_SCHEMAS]
    return "\n".join(statements)


def role_dsn(server_dsn: str, role: str) -> str:
    """``server_dsn`` (``postgresql://user@host:port/database``) as ``role``."""
    scheme, _, rest = server_dsn.partition("://")
    _, _, location = rest.rpartition("@")
    return f"{scheme}://{_checked(role)}@{location}"
