# syntax=docker/dockerfile:1
# gpu-inventory: one image, three commands (gpu-inventory-operator, -agent, -mcp); the chart and
# the manifests pick the command. Multi-arch (linux/amd64, linux/arm64 for GH200/GB200 nodes):
# build and publish with hack/publish-image.sh, which also records the pushed digest in the chart.
#
# Targets:
#   runtime (default)  what clusters run: no `testing` package, no compiler, non-root
#   kind               runtime plus gpu_inventory.testing, for e2e/kind/run.sh only: its agent
#                      runs `python -m gpu_inventory.testing.simagent` (the real NVML backend over
#                      a simulated pynvml) on nodes without GPUs

# The base is pinned by digest (the multi-arch index of python:3.11-slim-bookworm), so a rebuild
# gets the same bytes; `hack/publish-image.sh --refresh-base` resolves and writes a newer one.
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS wheel
WORKDIR /src
# The build backend as locked (make lock), every file checked against its hash, and no build
# isolation: pip would otherwise fetch whatever setuptools is newest, unhashed.
COPY requirements-build.lock /tmp/requirements-build.lock
RUN pip install --no-cache-dir --require-hashes --no-deps -r /tmp/requirements-build.lock
COPY pyproject.toml README.md ./
COPY api/ api/
COPY operator/ operator/
COPY nodeagent/ nodeagent/
COPY mcpserver/ mcpserver/
COPY testing/ testing/
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${BASE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
# The commit's time, not the build's (hack/publish-image.sh), so the label does not make two
# builds of one commit differ.
ARG CREATED=unknown
LABEL org.opencontainers.image.title="gpu-inventory" \
      org.opencontainers.image.description="GPU inventory for Kubernetes: NVML node agent, kopf operator, MCP server" \
      org.opencontainers.image.source="https://github.com/gpu-inventory/gpu-inventory" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
# Never let a working directory shadow the stdlib `operator` (see README, "Import scheme").
ENV PYTHONSAFEPATH=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Dependencies exactly as locked, every file checked against its hash (make lock).
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --require-hashes --no-deps -r /tmp/requirements.lock \
 && rm /tmp/requirements.lock
# Ours without dependencies (all locked above), then without the test helpers, which must not
# ship: the build fails if they are still importable.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-deps /wheels/*.whl \
 && site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && rm -rf "$site/gpu_inventory/testing" \
 && python -c 'import importlib.util as u, sys; sys.exit(u.find_spec("gpu_inventory.testing") is not None)' \
 && python -c 'import gpu_inventory.operator.main, gpu_inventory.nodeagent.main, gpu_inventory.mcpserver.server' \
 && pip check
# Non-root by default; the chart runs every pod as 65532 under Pod Security "restricted".
USER 65532:65532
WORKDIR /tmp

FROM runtime AS kind
USER 0
COPY testing/ /tmp/testing/
RUN site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && mv /tmp/testing "$site/gpu_inventory/testing" \
 && python -c 'import gpu_inventory.testing'
USER 65532:65532
