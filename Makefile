# repairml: `make run` sets everything up and runs the local pipeline;
# `make test` runs the whole test suite. Both start from a fresh clone.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
REPAIRML := $(VENV)/bin/repairml
INSTALLED := $(VENV)/.installed
# The collection job's own environment: Python 3.12 and Spark 3.5.1, as on
# Dataproc Serverless 2.2 (collection/requirements.lock). The job and its tests
# find the repository through PYTHONPATH: setup.py's package needs Python 3.10.
SPARK_VENV := .venv-spark
SPARK_PY := $(SPARK_VENV)/bin/python
SPARK_INSTALLED := $(SPARK_VENV)/.installed
CONFIG ?= configs/local.yaml
# The default data set: the raw diagnostics and warranty sources of 50,000
# sessions over 4 days, in RAW_DIR (collection.raw), which `repairml collect`
# turns into 4 daily spans in DATA_DIR (data.root).
RAW_DIR ?= data/raw
DATA_DIR ?= data/sessions
ROWS ?= 50000
SEED ?= 42
SPANS ?= 4
PYTEST_ARGS ?=
# The component image (Dockerfile) and where `make push-image` puts it: your
# Artifact Registry repository. It is tagged with the commit it is built from.
IMAGE_URI ?= europe-west4-docker.pkg.dev/YOUR_PROJECT/repairml/repairml
# The serving image (Dockerfile, stage `serving`), which the Vertex Pusher
# deploys; by default beside the component image, as vertex.serving_image
# defaults to vertex.image + "-serving".
SERVING_IMAGE_URI ?= $(IMAGE_URI)-serving
DOCKER ?= docker
GIT_COMMIT = $(shell git rev-parse --short=12 HEAD 2>/dev/null)
IMAGE_TAG = $(IMAGE_URI):$(GIT_COMMIT)
SERVING_IMAGE_TAG = $(SERVING_IMAGE_URI):$(GIT_COMMIT)

# TFX 1.16 needs Python 3.10. Take python3.10 from PATH if it works (a pyenv
# shim may exist without the version being active), else pyenv's 3.10.
PYTHON310 := $(shell \
  if python3.10 -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then \
    command -v python3.10; \
  else \
    ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10 2>/dev/null | sort -V | tail -n 1; \
  fi)

# The collection job needs Python 3.12 (Dataproc Serverless 2.2 runs it), found
# the same way: python3.12 from PATH if it works, else pyenv's 3.12.
PYTHON312 := $(shell \
  if python3.12 -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then \
    command -v python3.12; \
  else \
    ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null | sort -V | tail -n 1; \
  fi)

.PHONY: help install spark-env java collection-package run raw data test test-collection-job test-fast test-services lock \
  spark-lock schema-diff clean image push-image serving-image push-serving-image

help:
	@echo 'make run                 set up, generate the raw sources, collect them into spans, run the local pipeline'
	@echo 'make test                set up both environments and run the whole test suite'
	@echo 'make test-fast           the suite without the slow end-to-end tests'
	@echo 'make test-services       install what the tests start: MariaDB, headless Chromium'
	@echo 'make raw                 generate the default raw sources if they are missing'
	@echo 'make data                collect the raw sources into daily spans (repairml collect)'
	@echo 'make collection-package  the collection job'"'"'s code for Dataproc Serverless, and how to upload it'
	@echo 'make schema-diff         diff the schema SchemaGen proposes against schema/schema.pbtxt'
	@echo 'make spark-env           set up .venv-spark, the collection job'"'"'s Python 3.12 environment'
	@echo 'make lock                re-compile requirements.lock from requirements.in'
	@echo 'make spark-lock          re-compile collection/requirements.lock'
	@echo 'make image               build the component image, tagged IMAGE_URI:<git commit>'
	@echo 'make push-image          build the component image and push it to IMAGE_URI'
	@echo 'make serving-image       build the serving image, tagged SERVING_IMAGE_URI:<git commit>'
	@echo 'make push-serving-image  build the serving image and push it to SERVING_IMAGE_URI'
	@echo 'make clean               remove .venv, runs/ and the generated data'

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
	@# Bytecode now, once: without it every process compiles TensorFlow and TFX
	@# from source on import (and never caches it where PYTHONDONTWRITEBYTECODE
	@# is set), which triples the start-up of every run and every test.
	@$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements.lock
	@$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

install: $(INSTALLED)

# uv comes from .venv, which every other target needs anyway.
$(SPARK_INSTALLED): collection/requirements.lock $(INSTALLED)
	@if [ -z "$(PYTHON312)" ]; then \
	  echo 'The collection job needs Python 3.12 (Dataproc Serverless 2.2 runs it): install python3.12, for example with `pyenv install 3.12`, and run make again.' >&2; \
	  exit 1; \
	fi
	@echo '==> creating $(SPARK_VENV) with $(PYTHON312)'
	@rm -rf $(SPARK_VENV)
	@$(VENV)/bin/uv venv --quiet --python $(PYTHON312) $(SPARK_VENV)
	@echo '==> installing the collection job'"'"'s locked dependencies (collection/requirements.lock)'
	@$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(SPARK_PY) -r collection/requirements.lock
	@touch $@

spark-env: $(SPARK_INSTALLED) java

raw: $(INSTALLED)
	@if [ -f '$(RAW_DIR)/parquet/diagnostic_sessions.parquet' ]; then \
	  echo "==> raw: using the raw sources in $(RAW_DIR)"; \
	else \
	  echo "==> raw: generating the raw sources of $(ROWS) sessions into $(RAW_DIR)"; \
	  $(REPAIRML) data generate --rows $(ROWS) --seed $(SEED) --spans $(SPANS) --raw --out $(RAW_DIR); \
	fi

# Re-collecting is idempotent: spans whose content did not change stay as
# they are, and so does the pipeline's cache of them.
data: raw spark-env
	@echo '==> collecting the raw sources into spans ($(CONFIG))'
	@$(REPAIRML) collect --config $(CONFIG)

run: data
	@echo '==> running the pipeline ($(CONFIG))'
	@$(REPAIRML) run --config $(CONFIG)

# The main suite, then the collection job's tests in their own environment
# (tests/collection_job/pytest.ini keeps them apart from tests/conftest.py,
# which needs TensorFlow). Each must pass; pytest's exit code 5 (no test
# collected) fails the target like any other failure.
test: $(INSTALLED) spark-env test-services
	@$(PY) -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-collection-job

test-collection-job: spark-env
	@PYTHONPATH=$(CURDIR) $(SPARK_PY) -m pytest -c tests/collection_job/pytest.ini tests/collection_job

test-fast: $(INSTALLED) spark-env test-services
	@$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

# The programs the tests start by themselves, as program:Debian package: a
# throwaway MariaDB server (tests/mariadb.py) and headless Chromium with its
# WebDriver (the `browser` fixture in tests/conftest.py). Installed only when
# one is missing; make never starts a server, the fixtures do.
TEST_PROGRAMS := mariadbd:mariadb-server mariadb-install-db:mariadb-server \
  chromium:chromium chromedriver:chromium-driver

# Installs, with apt-get, the Debian packages of the programs in $(2)
# (program:package pairs) that are missing; $(1) names the target.
define apt_install
@missing=''; \
for entry in $(2); do \
  program="$${entry%%:*}"; package="$${entry#*:}"; \
  if ! PATH="$$PATH:/usr/sbin:/usr/local/sbin" command -v "$$program" >/dev/null 2>&1; then \
    case " $$missing " in *" $$package "*) ;; *) missing="$$missing $$package";; esac; \
  fi; \
done; \
if [ -z "$$missing" ]; then exit 0; fi; \
if ! command -v apt-get >/dev/null 2>&1; then \
  echo "make $(1): this needs the Debian packages$$missing, and this machine has no apt-get. Install them (or their programs: $(2)) with its package manager, then run make again." >&2; \
  exit 1; \
fi; \
sudo=''; \
if [ "$$(id -u)" != 0 ]; then \
  if ! command -v sudo >/dev/null 2>&1; then \
    echo "make $(1): installing$$missing needs root, and sudo is not installed. Run as root: apt-get install --no-install-recommends$$missing" >&2; \
    exit 1; \
  fi; \
  sudo='sudo'; \
fi; \
echo "==> $(1): installing$$missing (apt-get)"; \
log="$$(mktemp)"; \
if ! { $$sudo apt-get update -qq && \
       $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
         --no-install-recommends $$missing; } >"$$log" 2>&1; then \
  cat "$$log" >&2; rm -f "$$log"; \
  echo "make $(1): apt-get could not install$$missing (its output is above). Fix the cause, then run make again." >&2; \
  exit 1; \
fi; \
rm -f "$$log"
endef

test-services:
	$(call apt_install,test-services,$(TEST_PROGRAMS))

# Spark needs a Java runtime (17, as on Dataproc Serverless 2.2).
java:
	$(call apt_install,java,java:openjdk-17-jre-headless)

# The collection job's code for Dataproc Serverless (collection/job_package.py):
# runs/collection-package/job.py and collection.zip, and the commands that
# upload them to the URIs of VERTEX_CONFIG's vertex.collection.
VERTEX_CONFIG ?= configs/vertex.yaml
collection-package: $(INSTALLED)
	@$(PY) -m collection.job_package --out runs/collection-package --config $(VERTEX_CONFIG)

schema-diff: $(INSTALLED)
	@$(REPAIRML) schema diff --config $(CONFIG)

lock: $(INSTALLED)
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.10 \
	  --python-platform x86_64-unknown-linux-gnu -o requirements.lock

spark-lock: $(INSTALLED)
	$(VENV)/bin/uv pip compile collection/requirements.in --python-version 3.12 \
	  --python-platform x86_64-unknown-linux-gnu -o collection/requirements.lock

# The checks before an image is built, for `$(call image_checks,TARGET,URI
# VARIABLE,URI)`. The tag names a commit, so the tree must be clean: with
# uncommitted changes the image would hold code that no commit has.
define image_checks
@case '$(3)' in *YOUR_PROJECT*) \
  echo 'make $(1): $(2) is still the placeholder $(3). Name your Artifact Registry repository, for example: make $(1) IMAGE_URI=europe-west4-docker.pkg.dev/my-project/repairml/repairml' >&2; \
  exit 1;; \
esac
@if ! command -v '$(DOCKER)' >/dev/null 2>&1; then \
  echo 'make $(1): `$(DOCKER)` is not installed on this machine. Install Docker (https://docs.docker.com/engine/install/) or run make $(1) on a machine that has it.' >&2; \
  exit 1; \
fi
@if ! '$(DOCKER)' info >/dev/null 2>&1; then \
  echo 'make $(1): `$(DOCKER)` is installed but cannot reach a Docker engine (`$(DOCKER) info` fails). Start the Docker daemon, or run make $(1) on a machine that has one.' >&2; \
  exit 1; \
fi
@if [ -z '$(GIT_COMMIT)' ]; then \
  echo 'make $(1): no git commit to tag the image with. Run it in a git clone of repairml that has at least one commit.' >&2; \
  exit 1; \
fi
@if [ -n "$$(git status --porcelain)" ]; then \
  echo 'make $(1): the working tree has uncommitted changes (below), so the tag $(GIT_COMMIT) would not describe the image. Commit or stash them, then run make $(1) again.' >&2; \
  git status --short >&2; \
  exit 1; \
fi
endef

# Vertex AI runs linux/amd64.
image:
	$(call image_checks,image,IMAGE_URI,$(IMAGE_URI))
	$(DOCKER) build --platform linux/amd64 -t $(IMAGE_TAG) .

push-image: image
	$(DOCKER) push $(IMAGE_TAG)

# The same checks and tag; SERVING_IMAGE_URI follows IMAGE_URI unless set.
serving-image:
	$(call image_checks,serving-image,SERVING_IMAGE_URI,$(SERVING_IMAGE_URI))
	$(DOCKER) build --platform linux/amd64 --target serving -t $(SERVING_IMAGE_TAG) .

push-serving-image: serving-image
	$(DOCKER) push $(SERVING_IMAGE_TAG)

clean:
	rm -rf $(VENV) $(SPARK_VENV) runs $(RAW_DIR) $(DATA_DIR) data/collected.duckdb *.egg-info
