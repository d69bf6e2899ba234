# gpu-inventory: every command a developer or CI runs.
#
#   make test         build/reuse the control plane, install deps, run every test
#   make demo         the whole system on a local control plane, for a person to watch
#   make cluster-up   a local control plane in the background; KUBECONFIG=.cluster/kubeconfig
#   make cluster-down stop it
#   make tools        build/reuse the pinned Go tools the tests run (hack/tools: helm, promtool, ...)
#   make manifests    render the kustomize base (manifests/) from the Helm chart
#   make image        build the multi-arch image (needs Docker buildx; see hack/publish-image.sh)

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Never let the top-level operator/ folder shadow the standard library's `operator`.
export PYTHONSAFEPATH := 1

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLUSTER_DIR ?= .cluster
PYTEST_ARGS ?=

.PHONY: help venv controlplane tools mcp-clients cluster-up cluster-down crds manifests lock image lint typecheck test test-unit demo bench bench-operator bench-mcp bench-agent clean

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

controlplane:
	bash hack/build-controlplane.sh >/dev/null

# Built once into ~/.cache/gpu-inventory (versioned, stamped); then a version check each.
tools:
	bash hack/build-tool.sh >/dev/null

# The real MCP clients the MCP server's tests run: the pinned MCP Inspector CLI, curl and jq.
mcp-clients:
	bash hack/install-mcp-clients.sh >/dev/null

cluster-up: venv controlplane
	$(PY) -m gpu_inventory.testing up --dir $(CLUSTER_DIR)

cluster-down: venv
	$(PY) -m gpu_inventory.testing down --dir $(CLUSTER_DIR)

crds: venv
	$(PY) -m gpu_inventory.api.crdgen --out crds
	cp crds/gpuinventory.io_*.yaml charts/gpu-inventory/crds/

manifests: venv
	$(PY) -m gpu_inventory.testing.helm

# The image's dependencies, pinned with hashes of every file PyPI serves (amd64 and arm64
# wheels alike), resolved for every platform (uv's universal resolution) on Python 3.11; and
# the build backend (pyproject's build-system.requires) the image builds our wheel with.
UV_VERSION := 0.13.8
UV_COMPILE = $(VENV)/bin/uv pip compile --universal --python-version 3.11 --generate-hashes --quiet
lock: venv
	$(PY) -m pip install -q 'uv==$(UV_VERSION)'
	$(UV_COMPILE) pyproject.toml -o requirements.lock
	$(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	  | $(UV_COMPILE) - -o requirements-build.lock

image:
	bash hack/publish-image.sh --load

# mypy follows no editable finder: give it a link tree of the namespace package.
.typecheck/gpu_inventory:
	mkdir -p .typecheck/gpu_inventory
	for d in api operator nodeagent mcpserver testing; do ln -sfn ../../$$d .typecheck/gpu_inventory/$$d; done

typecheck: venv .typecheck/gpu_inventory
	$(VENV)/bin/mypy -p gpu_inventory.api -p gpu_inventory.operator -p gpu_inventory.nodeagent -p gpu_inventory.mcpserver -p gpu_inventory.testing
	$(VENV)/bin/mypy conftest.py tests e2e bench

lint: venv typecheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYTHONPATH=.typecheck $(VENV)/bin/lint-imports

test-unit: venv
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

# The Go builds, npm, pip and lint are independent: run at once, downloads, links and pip's waits
# overlap with compiles (go build already uses every core). Then every test.
test:
	$(MAKE) --no-print-directory -j4 controlplane tools mcp-clients lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: venv controlplane
	$(PY) -m gpu_inventory.testing.demo $(DEMO_ARGS)

bench: bench-operator bench-mcp bench-agent

bench-operator: venv controlplane
	$(PY) bench/operator_scale.py $(BENCH_ARGS)

bench-mcp: venv
	$(PY) bench/mcp_latency.py

bench-agent: venv
	$(PY) bench/agent_turns.py

clean:
	rm -rf .typecheck .pytest_cache .mypy_cache .ruff_cache $(CLUSTER_DIR)
