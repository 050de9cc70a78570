# syntax=docker/dockerfile:1
# lead-intake: build from the repository root (the workspace and its lock live there):
#   docker build -f deploy/docker/lead-intake.Dockerfile -t shared-funnel/lead-intake .
#
# One image, two processes. The web process (HTTP) is the default command; the worker
# (outbox relay) is the same image run with
#   uvicorn --factory lead_intake.worker:create_app --host 0.0.0.0 --port 8011 ...
# (deploy/k8s/base/lead-intake.yaml, deploy/compose.yaml). The image also carries the
# `funnel` command (libs/cli) for operators and for the Kubernetes init container
# (`funnel migrate lead-intake`). funnel-cli depends on the three services, so their code
# comes along; the development tools (funnel-tools: funnel dev, seed, the embedded
# PostgreSQL and broker) do not (tests/deploy/test_images.py checks the installed set).
#
# Multi-stage: uv installs exactly the locked dependencies (uv sync --frozen) into a
# virtual environment in the build stage; the runtime stage gets only that environment
# and runs as an unprivileged user (uid 10001) with nothing writable but /tmp.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.9.30 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, from the lock alone: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY libs/cli/pyproject.toml libs/cli/
COPY services/lead-intake/pyproject.toml services/lead-intake/
COPY services/handoff/pyproject.toml services/handoff/
COPY services/metrics/pyproject.toml services/metrics/
RUN uv sync --frozen --no-dev --no-install-workspace --package lead-intake --package funnel-cli
# Then the code, installed as wheels (not editable): funnel-common, this service, and
# funnel-cli with the services it mounts commands from.
COPY libs/common libs/common
COPY libs/cli libs/cli
COPY services/lead-intake services/lead-intake
COPY services/handoff services/handoff
COPY services/metrics services/metrics
RUN uv sync --frozen --no-dev --no-editable --package lead-intake --package funnel-cli

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 funnel \
 && useradd --system --uid 10001 --gid funnel --no-create-home --shell /usr/sbin/nologin funnel
COPY --from=build /app/.venv /app/.venv
# The forms registry and the qualification rules (issue 3) live in the repo's config/.
COPY config /app/config
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FUNNEL_INTAKE_FORMS_FILE=/app/config/forms.yaml \
    FUNNEL_INTAKE_QUALIFICATION_RULES_FILE=/app/config/qualification.yaml
USER 10001:10001
# 8001: the web process; 8011: the worker's /healthz, /readyz and /metrics.
EXPOSE 8001 8011
# Migrations run at start-up of either process (advisory-locked); Kubernetes also runs
# `funnel migrate lead-intake` in an init container first (deploy/k8s/base/lead-intake.yaml).
CMD ["uvicorn", "--factory", "lead_intake.web:create_app", "--host", "0.0.0.0", "--port", "8001", "--no-access-log", "--loop", "uvloop", "--http", "funnel_common.server:BoundedHttpToolsProtocol", "--no-proxy-headers", "--timeout-graceful-shutdown", "20"]
