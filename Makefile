# The project's vocabulary. Every target works on a fresh clone; `make dev` is idempotent.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
PYTEST  := $(PY) -m pytest
# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
RUN_TESTS = $(PYTEST)

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,workloads]'
	touch $@

dev: $(VENV)/.installed ## create the virtualenv and install everything

test: test-unit test-cluster test-workloads test-e2e ## every test level that can run on this machine

test-unit: dev ## unit tests: api, plan, generators (seconds)
	$(RUN_TESTS) tests/unit

CHART := charts/llmops-operator

crds: dev ## regenerate crds/ and the chart's copy from the pydantic models
	$(PY) -m llmops.api.crdgen --out crds --out $(CHART)/crds

crds-check: dev ## fail when crds/ or the chart's copy is stale
	$(PY) -m llmops.api.crdgen --out crds --out $(CHART)/crds --check

lint: dev ## ruff + mypy on operator/
	$(VENV)/bin/ruff check operator tests e2e
	$(VENV)/bin/ruff format --check operator
	MYPYPATH=operator $(VENV)/bin/mypy -p llmops

up: ## the quick start: local cluster + operator + examples, with a live view
	e2e/up.sh up

down: ## stop what `make up` started
	e2e/up.sh down

run: dev ## run the operator against the current kubeconfig
	$(PY) -m llmops

.PHONY: help dev test test-unit crds crds-check lint up down run

# ---- local control plane (e2e/cluster.sh, e2e/cluster/README.md) ------------------------
cluster-bins: ## build the pinned etcd/kube/kwok/helm binaries into ~/.cache/llmops/bin
	e2e/cluster.sh bins

cluster-up: cluster-bins ## start (or reuse) the local control plane with kwok GPU nodes
	e2e/cluster.sh up

cluster-down: ## stop the local control plane and drop its data
	e2e/cluster.sh down

cluster-status: ## show what of the local control plane runs
	e2e/cluster.sh status

test-cluster: dev cluster-bins ## tests against the local control plane (the fast fault tests included)
	$(RUN_TESTS) -m "cluster and not chaos and not e2e" --durations=25 tests/cluster

# tests/cluster/chaos: each has a fast variant, run by test-cluster, and a long one marked `chaos`
# (≥ 50 kills, 2,000 fuzzed specs per kind, a 5-minute blackholed watch), run here.
test-chaos: dev cluster-bins ## the long fault-injection runs: operator kills, API faults, fuzzed specs (tests/cluster/chaos)
	$(RUN_TESTS) -m chaos tests/cluster/chaos

test-e2e: dev cluster-bins ## the whole pipeline on real local pods (tests/cluster/e2e, e2e/agent)
	$(RUN_TESTS) -m e2e tests/cluster

.PHONY: cluster-bins cluster-up cluster-down cluster-status test-cluster test-chaos test-e2e

WORKLOAD_PATH := images/trainer:images/builder:images/evaluator:images/common

test-workloads: dev ## workload tests: trainer, builder, evaluator, tritonserver on a tiny model
	PYTHONPATH=$(WORKLOAD_PATH) $(RUN_TESTS) -m workload tests/workload

bench-workloads: dev ## workload benchmarks: int8 vs fp32, Triton batching, trainer speed (.bench/)
	PYTHONPATH=$(WORKLOAD_PATH) $(PY) tests/bench/bench_workloads.py

ROLLOUT_RUNS ?= 5

bench-rollout: dev cluster-bins ## rollback time of a failing canary, ROLLOUT_RUNS runs on the local cluster (.bench/rollout.json)
	$(PY) tests/bench/bench_rollout.py --runs $(ROLLOUT_RUNS)

THROUGHPUT_PAIRS ?= 3

bench-operator: dev cluster-bins ## operator throughput vs a plain client (and THROUGHPUT_PAIRS more pairs at 2,000), writes per reconcile, latency under churn, RSS, restart and idle cost, leader handover (.bench/operator.json)
	$(PY) tests/bench/bench_operator.py --pairs $(THROUGHPUT_PAIRS)

bench: bench-workloads bench-rollout bench-operator ## every benchmark, then one table of all figures with their goals
	$(PY) tests/bench/report.py

.PHONY: test-workloads bench-workloads bench-rollout bench-operator bench

# ---- the chart and the images (charts/llmops-operator, images/) --------------------------
HELM = $(shell e2e/cluster.sh which helm)
# checkov pins versions of common libraries that clash with the dev extra: its own virtualenv.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
# Checks the policy scan skips; charts/llmops-operator/README.md gives the reason for each.
CHECKOV_SKIP := CKV_K8S_15,CKV_K8S_38,CKV_K8S_43
CHART_RENDERED := build/chart
IMAGE_REGISTRY ?= ghcr.io/llmops-dev
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

$(CHECKOV_VENV)/.installed:
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

lint-images: dev ## lint every Dockerfile under images/ (hadolint)
	$(VENV)/bin/hadolint images/*/Dockerfile

images: ## build every image under images/ with docker, where a Docker engine runs
	@if ! docker info >/dev/null 2>&1; then echo "no Docker engine here: no images built"; exit 0; fi; \
	for dockerfile in images/*/Dockerfile; do \
	  name=$$(basename "$$(dirname "$$dockerfile")"); \
	  context=images; [[ $$name == operator ]] && context=.; \
	  docker build -f "$$dockerfile" -t "$(IMAGE_REGISTRY)/$$name:$(IMAGE_TAG)" "$$context"; \
	done

chart-check: dev lint-images $(CHECKOV_VENV)/.installed ## helm lint --strict, render and policy-scan the chart
	e2e/cluster/build.sh helm
	rm -rf $(CHART_RENDERED) && mkdir -p $(CHART_RENDERED)
	for values in default namespaced monitoring; do \
	  args=(); [[ $$values == default ]] || args=(--values $(CHART)/ci/$$values-values.yaml); \
	  $(HELM) lint --strict $(CHART) "$${args[@]}"; \
	  $(HELM) template llmops $(CHART) --namespace llmops-system "$${args[@]}" > $(CHART_RENDERED)/$$values.yaml; \
	done
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --framework kubernetes --skip-download --skip-check $(CHECKOV_SKIP) \
	  --directory $(CHART_RENDERED)

.PHONY: lint-images images chart-check

security-audit: dev ## bandit + pip-audit over operator/ and images/ (own pinned virtualenv, .venv-audit)
	VENV=$(VENV) e2e/security-audit.sh

.PHONY: security-audit
