# One image for the three components; the manifests pick the command
# (gpu-inventory-operator, gpu-inventory-agent, gpu-inventory-mcp).
# Build: docker build -t ghcr.io/gpu-inventory/gpu-inventory:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api/ api/
COPY operator/ operator/
COPY nodeagent/ nodeagent/
COPY mcpserver/ mcpserver/
COPY testing/ testing/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# Never let a working directory shadow the stdlib `operator` (see README, "Import scheme").
ENV PYTHONSAFEPATH=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# Non-root by default; the agent's DaemonSet says when NVML needs more.
USER 65532:65532
WORKDIR /tmp
