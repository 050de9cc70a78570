# Entry points a person types. Each target installs what it needs first, so a fresh
# clone with nothing but Python 3.11 works: uv comes from PyPI into .tools/, the
# locked environment into .venv/.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.9.30
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
# pytest-xdist is not used: the integration fixtures share one PostgreSQL and one broker.
PYTEST_ARGS ?=

.PHONY: run funnel test test-faults kafka-prepare lint fmt typecheck unit schemas settings-doc sync clean clean-data bench boards-preview

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode compiled once at install, and our own modules cached as Python does by
# default (__pycache__ is ignored by git and by the image builds): where
# PYTHONDONTWRITEBYTECODE is set, as on our CI machines, every process compiled FastAPI,
# pydantic and our code from source at each start, about half of a service's start-up.
unexport PYTHONDONTWRITEBYTECODE
sync: $(UV)
	$(UV) sync --frozen --all-packages --quiet --compile-bytecode

run: sync
	$(UV) run --frozen --no-sync funnel dev

# The `funnel` command next to `make run`, e.g. make funnel ARGS="token list".
funnel: sync
	$(UV) run --frozen --no-sync funnel $(ARGS)

test: sync lint typecheck kafka-prepare
	$(UV) run --frozen --no-sync pytest $(PYTEST_ARGS)

# The fault suite alone (it is also part of `make test`).
test-faults: sync kafka-prepare
	$(UV) run --frozen --no-sync pytest -m faults $(PYTEST_ARGS)

# Apache Kafka for the tests, once per checkout and outside any test's timeout: the
# pinned jars (Maven, offline first, quiet) and the brokers' class archive. Without
# Java 17+ or Maven it says so in one line and the Apache Kafka tests skip (in CI,
# FUNNEL_REQUIRE_SYSTEM_TOOLS=1 makes that a failure).
kafka-prepare: sync
	$(UV) run --frozen --no-sync python -m funnel_tools.apache_kafka prepare

lint: sync
	$(UV) run --frozen --no-sync ruff check .
	$(UV) run --frozen --no-sync ruff format --check .

typecheck: sync
	$(UV) run --frozen --no-sync mypy

fmt: sync
	$(UV) run --frozen --no-sync ruff check --fix .
	$(UV) run --frozen --no-sync ruff format .

unit: sync
	$(UV) run --frozen --no-sync pytest tests/unit $(PYTEST_ARGS)

# Speed and memory, each next to a baseline measured in the same run (bench/).
bench: sync
	$(UV) run --frozen --no-sync python -m bench

# Pictures of the Grafana boards: a fresh platform, `funnel seed`, a real Prometheus
# (needs the `prometheus` binary), each panel's own query (boards/). They go to
# build/boards/ (untracked); `make boards-preview BOARDS_OUT=docs` refreshes the
# pictures in the manuals (docs/board-*.png).
BOARDS_OUT ?= build/boards
boards-preview: sync
	$(UV) run --frozen --no-sync python -m boards --out $(BOARDS_OUT)

# Regenerates the checked-in JSON Schemas of the event catalogue.
schemas: sync
	$(UV) run --frozen --no-sync python -m funnel_common.schemas write

# Regenerates docs/settings.md from the pydantic settings models.
settings-doc: sync
	$(UV) run --frozen --no-sync python -m funnel_tools.settings_doc write

# The installed environment, caches and previews; never your data (`make clean-data`).
clean:
	rm -rf .venv $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .hypothesis build
	@echo "Kept .funnel/ (the local PostgreSQL data and logs of \`make run\`); \`make clean-data\` removes it."

# The local platform's data: PostgreSQL (every lead you posted), logs, platform.json.
clean-data:
	@pid=$$(sed -n 's/^ *"pid": *\([0-9]*\).*/\1/p' .funnel/platform.json 2>/dev/null); \
	if [ -n "$$pid" ] && kill -0 "$$pid" 2>/dev/null; then \
	  echo "funnel dev is running (pid $$pid): stop it (Ctrl-C) before removing its data."; exit 1; \
	fi
	rm -rf .funnel
	@echo "Removed .funnel/: the next \`make run\` starts with an empty database."
