# repairml: `make run` sets everything up and runs the local pipeline;
# `make test` runs the whole test suite. Both start from a fresh clone.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
REPAIRML := $(VENV)/bin/repairml
INSTALLED := $(VENV)/.installed
CONFIG ?= configs/local.yaml
# The default data set: 50,000 sessions in 4 daily spans.
DATA_DIR ?= data/sessions
ROWS ?= 50000
SEED ?= 42
SPANS ?= 4
PYTEST_ARGS ?=

# TFX 1.16 needs Python 3.10. Take python3.10 from PATH if it works (a pyenv
# shim may exist without the version being active), else pyenv's 3.10.
PYTHON310 := $(shell \
  if python3.10 -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then \
    command -v python3.10; \
  else \
    ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10 2>/dev/null | sort -V | tail -n 1; \
  fi)

.PHONY: help install run data test test-fast lock schema-diff clean

help:
	@echo 'make run          set up .venv, generate the default data, run the local pipeline'
	@echo 'make test         set up .venv and run the whole test suite'
	@echo 'make test-fast    the suite without the slow end-to-end tests'
	@echo 'make data         generate the default data set if it is missing'
	@echo 'make schema-diff  diff the schema SchemaGen proposes against schema/schema.pbtxt'
	@echo 'make lock         re-compile requirements.lock from requirements.in'
	@echo 'make clean        remove .venv, runs/ and the generated data'

$(INSTALLED): requirements.lock setup.py
	@if [ -z "$(PYTHON310)" ]; then \
	  echo 'repairml needs Python 3.10 (TFX 1.16 supports 3.9-3.10): install python3.10, for example with `pyenv install 3.10`, and run make again.' >&2; \
	  exit 1; \
	fi
	@echo '==> creating $(VENV) with $(PYTHON310)'
	@rm -rf $(VENV)
	@$(PYTHON310) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8
	@echo '==> installing the locked dependencies (requirements.lock)'
	@$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements.lock
	@$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

install: $(INSTALLED)

data: $(INSTALLED)
	@if compgen -G '$(DATA_DIR)/span-*/*.parquet' >/dev/null; then \
	  echo "==> data: using the sessions in $(DATA_DIR)"; \
	else \
	  echo "==> data: generating $(ROWS) sessions into $(DATA_DIR)"; \
	  $(REPAIRML) data generate --rows $(ROWS) --seed $(SEED) --spans $(SPANS) --out $(DATA_DIR); \
	fi

run: data
	@echo '==> running the pipeline ($(CONFIG))'
	@$(REPAIRML) run --config $(CONFIG)

test: $(INSTALLED)
	@$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(INSTALLED)
	@$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

schema-diff: $(INSTALLED)
	@$(REPAIRML) schema diff --config $(CONFIG)

lock: $(INSTALLED)
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.10 \
	  --python-platform x86_64-unknown-linux-gnu -o requirements.lock

clean:
	rm -rf $(VENV) runs $(DATA_DIR) *.egg-info
