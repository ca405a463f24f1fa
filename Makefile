# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each bootstraps .venv (uv resolves the pinned lock in seconds where pip's resolver stalls).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DAGSTER_DISABLE_TELEMETRY := 1
export GX_ANALYTICS_ENABLED := false
# One planned event per asset and run, not per partition (dagster_project/runner.py).
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS := 1
export STRAT_LLM_DATA ?= $(CURDIR)/data
# Runs of `make demo` and `make ui` are recorded here; tests use ephemeral instances.
DAGSTER_HOME_DIR := $(CURDIR)/.dagster_home

.PHONY: install demo test lint ui clean

# No compute-log capture, no telemetry file (see the file); rewritten when the template changes.
$(DAGSTER_HOME_DIR)/dagster.yaml: dagster_project/dagster_home.yaml
	@mkdir -p $(DAGSTER_HOME_DIR) && cp $< $@

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --quiet -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP) $(DAGSTER_HOME_DIR)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/strat-llm demo --out $(STRAT_LLM_DATA)

test: $(STAMP) lint
	env -u DAGSTER_HOME $(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

ui: $(STAMP) $(DAGSTER_HOME_DIR)/dagster.yaml
	@echo "Dagster UI on http://127.0.0.1:3000 (DAGSTER_HOME=$(DAGSTER_HOME_DIR))"
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/dagster dev -h 127.0.0.1 -p 3000 -m dagster_project.definitions

clean:
	rm -rf $(VENV) .dagster_home dbt/target dbt/logs .pytest_cache .ruff_cache
