# Khedmat — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
BOOTSTRAP := .cache/bootstrap
UV := $(BOOTSTRAP)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
SUITES := tests/unit tests/contract tests/integration tests/e2e tests/chaos

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(BOOTSTRAP)
	$(BOOTSTRAP)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python python3
	touch $@

setup: $(VENV)/.synced ## Create .venv with the locked dependencies
	@deploy/local/kafka.sh fetch

lock: $(UV) ## Re-resolve uv.lock after editing pyproject.toml
	$(UV) lock --python python3

infra-up: setup ## Start Kafka (KRaft), Redis and PostgreSQL on 127.0.0.1 (installs/fetches them when missing)
	deploy/local/up.sh

infra-down: ## Stop exactly the Kafka, Redis and PostgreSQL that infra-up started
	deploy/local/down.sh

# Jaeger is built once (Go module proxy, 10 to 20 min) and cached in .cache/bin; until then it builds in the background
# and the desk runs without it. The services export traces only: Jaeger takes no OTLP metrics (/metrics has them).
run: infra-up ## Run the whole desk locally (Kafka, Redis, PostgreSQL, Jaeger, sandbox, five services); Ctrl-C stops it all
	@mkdir -p var
	@trap 'deploy/local/jaeger.sh stop; deploy/local/down.sh' EXIT; \
	  deploy/local/jaeger.sh start-background; \
	  $(VENV)/bin/python -m shared.urls; \
	  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
	  OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none \
	  $(VENV)/bin/honcho start -f Procfile

KAFKA_BOOTSTRAP ?= 127.0.0.1:9092
kafka-topics: setup ## List the topics of the `make run` broker with partitions and settings (ARGS= passes other kafka-topics options)
	@$(if $(ARGS),deploy/local/kafka.sh tool topics --bootstrap-server $(KAFKA_BOOTSTRAP) $(ARGS),deploy/local/kafka.sh topics $(KAFKA_BOOTSTRAP))

kafka-consume: setup ## Print a topic's records with keys and headers: TOPIC=desk.status [FROM=beginning] [ARGS=--max-messages 5]
	@test -n "$(TOPIC)" || { echo "usage: make kafka-consume TOPIC=desk.status [FROM=beginning] [ARGS=...]" >&2; exit 2; }
	@deploy/local/kafka.sh tool console-consumer --bootstrap-server $(KAFKA_BOOTSTRAP) --topic $(TOPIC) \
	  $(if $(filter beginning,$(FROM)),--from-beginning,) --property print.timestamp=true \
	  --property print.partition=true --property print.offset=true \
	  --property print.key=true --property print.headers=true $(ARGS)

lint: setup ## ruff (lint and format check)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup ## mypy (strict on shared/ and every domain.py)
	$(VENV)/bin/mypy shared services sandbox tests bench testkit tools

test-fast: setup ## Unit and contract tests: no servers, the inner loop
	$(PYTEST) -q tests/unit tests/contract

test: setup lint typecheck ## Every suite (unit, contract, integration, e2e, chaos) on real servers of their own
	$(PYTEST) -q $(SUITES)

test-servers-down: ## Stop the Kafka, Redis and PostgreSQL that the tests started (ports 19092, 16380, 15432)
	$(PY) -m testkit.infra

bench: setup ## Benchmarks on their own fresh Kafka, Redis and PostgreSQL (ratios against a raw baseline); docs/PERFORMANCE.md
	$(PY) -m bench.intake_bench
	$(PY) -m bench.inquiry_bench
	$(PY) -m bench.tracking_bench
	$(PY) -m bench.notify_bench

# The tests' and benchmarks' servers are stopped by their state folders too, so that clean stops them even when
# .venv is missing (stopping needs only the pid files and PostgreSQL's data folder, never the ports).
clean: ## Remove the venv, caches and local server data (stops every local server first, the tests' and benchmarks' too)
	-deploy/local/jaeger.sh stop
	-deploy/local/down.sh
	-$(PY) -m testkit.infra
	-KHEDMAT_LOCAL_STATE=$(CURDIR)/.cache/test-servers deploy/local/down.sh
	-KHEDMAT_LOCAL_STATE=$(CURDIR)/.cache/bench-servers deploy/local/down.sh
	rm -rf $(VENV) .cache var .pytest_cache .mypy_cache .ruff_cache .hypothesis

.PHONY: help setup lock infra-up infra-down run kafka-topics kafka-consume lint typecheck test-fast test test-servers-down bench clean
