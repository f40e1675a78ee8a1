# The commands a newcomer needs: `make init` (a new stack file), `make plan` and `make test`.
# Each sets itself up on first run (a virtualenv in .venv with the pinned requirements, made by
# tools/venv.sh, which also starts a half-made .venv again) and reuses it after.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STACK ?= homelab
CONFIG ?= Pulumi.$(STACK).yaml
PLAN_JSON ?=
PLAN_PICTURE ?= build/plan
PYTEST_ARGS ?=
INIT_ARGS ?=

.PHONY: init plan test lint typecheck schema venv clean bench

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@bash tools/venv.sh "$(PYTHON)" "$(VENV)"
	@touch $@

venv: $(STAMP)

# A new stack file: prompts at a terminal, else flags, e.g.
#   make init INIT_ARGS="--stack home --domain lab.home.arpa --node rack-cp-1,192.168.10.11 --scan-host-keys"
init: $(STAMP)
	@$(PY) -m rack.init $(INIT_ARGS)

# `python -m plan` exits 0 (valid, layout OK), 1 (layout errors), 2 (invalid config) or 3 (the
# plan crashed); make turns any failed recipe into its own exit 2, so a line `plan: exit N (...)`
# says which it was. CI that needs the code runs the module itself (docs/plan-exit-codes.md).
plan: $(STAMP)
	@status=0; \
	$(PY) -m plan --config $(CONFIG) $(if $(PLAN_JSON),--json $(PLAN_JSON)) --picture $(PLAN_PICTURE) $(if $(filter Pulumi.homelab.yaml,$(CONFIG)),--svg docs/rack.svg) || status=$$?; \
	case $$status in \
	  0) why="config valid, layout OK" ;; \
	  1) why="layout errors" ;; \
	  2) why="invalid config" ;; \
	  *) why="the plan itself failed: see the traceback above" ;; \
	esac; \
	echo "plan: exit $$status ($$why)" >&2; \
	if [ $$status -ne 0 ]; then \
	  echo "plan: make reports every failure as 2; for the 0/1/2 run $(PY) -m plan --config $(CONFIG)" >&2; \
	fi; \
	exit $$status

test: $(STAMP)
	@$(PY) -m ruff check .
	@$(PY) -m mypy
	@$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	@$(PY) -m ruff check .

typecheck: $(STAMP)
	@$(PY) -m mypy

schema: $(STAMP)
	@$(PY) -m rack.schema > schema/stack.schema.json

clean:
	rm -rf $(VENV) build

bench: $(STAMP)
	@$(PY) -m bench.bench --repeat 2 --json build/bench.json

# The real engine (built offline by `make toolchain`), the lab, and a real preview.
include toolchain/toolchain.mk
include lab/lab.mk

.PHONY: preview
preview: $(STAMP) toolchain
	@bash tools/preview.sh $(STACK)
