SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
BENCH_ARGS ?=

export ROSTER_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
export ROSTER_TEST_NATS_URL ?= nats://127.0.0.1:4222

PYTHON ?= python3
VENV := .venv
IMAGE ?= localhost/roster/rosterd
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)

.PHONY: help run build test test-chart test-image image bench bench-load fmt lint migrate clean-data

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN { FS = ":.*## " } { printf "  %-12s %s\n", $$1, $$2 }'

run: ## Run rosterd with all services in one process (embedded defaults)
	$(CARGO) run --release -p roster-server --bin rosterd -- start all

build: ## Build every crate and target in the workspace
	$(CARGO) build --workspace --all-targets

test: ## Start test services, check formatting and lints, run all tests
	scripts/ensure-services.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MAKE) --no-print-directory test-chart test-image
	# Doc tests first, so the run ends with the summary of the full suite.
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		rc=0; \
		$(CARGO) test --workspace --doc || rc=$$?; \
		$(CARGO) nextest run --workspace --no-fail-fast || rc=$$?; \
		exit $$rc; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

test-chart: $(VENV)/.installed ## Lint, render and validate the Helm chart; run what it renders as local processes
	$(VENV)/bin/python k8s/tests/check_chart.py
	scripts/ensure-services.sh
	$(CARGO) build --release -p roster-server --bin rosterd
	ROSTERD=target/release/rosterd $(VENV)/bin/python k8s/tests/run_chart.py

image: ## Build the rosterd image with podman (localhost/roster/rosterd:<version>)
	scripts/ensure-podman.sh
	$(CARGO) build --release -p roster-server --bin rosterd
	deploy/rootfs.sh target/release/rosterd target/image
	podman build -f deploy/Containerfile -t $(IMAGE):$(IMAGE_TAG) target/image

test-image: image $(VENV)/.installed ## Run rosterd from the image's files alone; check deploy/compose.yaml
	scripts/ensure-services.sh
	deploy/tests/image_test.sh $(IMAGE):$(IMAGE_TAG)
	$(VENV)/bin/python deploy/tests/check_compose.py

# A project-local virtualenv with the chart checks' Python packages.
$(VENV)/.installed: scripts/python-requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/python-requirements.txt
	touch $@

bench: ## Start services and run the benchmark (pass options via BENCH_ARGS=...)
	scripts/ensure-services.sh
	$(CARGO) run --release -p roster-bench --bin roster-bench -- $(BENCH_ARGS)

LOAD_ARGS ?=

bench-load: ## Measure rosterd processes from outside with h2load against a tonic echo (options via LOAD_ARGS=...)
	scripts/ensure-services.sh
	scripts/ensure-h2load.sh
	$(CARGO) build --release -p roster-server --bin rosterd -p roster-bench --bin roster-load --bin roster-echo
	target/release/roster-load $(LOAD_ARGS)

fmt: ## Format all crates
	$(CARGO) fmt --all

lint: ## Run clippy on the workspace with warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

migrate: ## Apply database migrations
	$(CARGO) run -p roster-server --bin rosterd -- migrate

clean-data: ## Remove local data under ./data
	rm -rf ./data
