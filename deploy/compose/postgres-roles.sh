#!/bin/bash
# Run once by the postgres image, when it initialises an empty data volume
# (/docker-entrypoint-initdb.d): one role per service, owning its schema and nothing
# else, as CloudNativePG's managed roles do in Kubernetes and `funnel dev` does on a
# laptop (tools/src/funnel_tools/pgroles.py). Only metrics may create schemas: `funnel
# replay` rebuilds into a fresh one and switches by renaming.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v db="$POSTGRES_DB" \
  -v intake="$FUNNEL_INTAKE_DB_PASSWORD" \
  -v handoff="$FUNNEL_HANDOFF_DB_PASSWORD" \
  -v metrics="$FUNNEL_METRICS_DB_PASSWORD" <<'SQL'
CREATE ROLE intake LOGIN PASSWORD :'intake';
CREATE SCHEMA intake AUTHORIZATION intake;
CREATE ROLE handoff LOGIN PASSWORD :'handoff';
CREATE SCHEMA handoff AUTHORIZATION handoff;
CREATE ROLE metrics LOGIN PASSWORD :'metrics';
CREATE SCHEMA metrics AUTHORIZATION metrics;
GRANT CREATE ON DATABASE :"db" TO metrics;
SQL
