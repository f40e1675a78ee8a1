# The two commands a newcomer needs: `make plan` and `make test`. Each sets itself up on first
# run (a virtualenv in .venv with the pinned requirements) and reuses it after.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STACK ?= homelab
CONFIG ?= Pulumi.$(STACK).yaml
PLAN_JSON ?=
PYTEST_ARGS ?=

.PHONY: plan test lint typecheck schema venv clean bench

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	@touch $@

venv: $(STAMP)

plan: $(STAMP)
	@$(PY) -m plan --config $(CONFIG) $(if $(PLAN_JSON),--json $(PLAN_JSON)) $(if $(filter Pulumi.homelab.yaml,$(CONFIG)),--svg docs/rack.svg)

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
