#!/usr/bin/env bash
# gpu-inventory on kind, for users with Docker (our CI has no Docker engine, so it cannot run
# this; the same checks run in CI against the local control plane: e2e/test_e2e.py).
#
# Creates a kind cluster (pinned node image) with two workers, fakes one T4 on each (device
# plugin capacity and GPU Feature Discovery labels), builds the image's `kind` target and loads
# it, installs e2e/kind/overlay (the manifests, with the agent on simulated NVML), runs a GPU pod,
# and checks that the inventory is Ready, counts it, and that every agent is Reporting. Dumps
# pods, events and logs on failure. KEEP=1 keeps the cluster afterwards.
#
# The overlay starts `python -m gpu_inventory.testing.simagent`, the simulated-NVML entry point of
# the testing package; it lands with the agent's simulator work (until then this script fails at
# the agents' rollout, with their logs).
set -euo pipefail
cd "$(dirname "$0")/../.."
cluster=${CLUSTER:-gpu-inventory}
# kind v0.30.0's image for Kubernetes v1.34.0 (its release notes list the digest).
node_image=${KIND_NODE_IMAGE:-kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a}
ns=gpu-inventory
workers=2
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "needs $tool on PATH" >&2; exit 1; }
done

dump() {
  echo "--- kind e2e failed; what the cluster says:" >&2
  kubectl get nodes -o wide >&2 || true
  kubectl -n "$ns" get pods -o wide >&2 || true
  kubectl get gpuinventory,gpunodes -o yaml >&2 || true
  kubectl get events -A --sort-by=.lastTimestamp 2>&1 | tail -40 >&2 || true
  for workload in deploy/gpu-inventory-operator ds/gpu-inventory-agent deploy/gpu-inventory-mcp; do
    echo "--- logs of $workload" >&2
    kubectl -n "$ns" logs "$workload" --all-containers --tail=80 --prefix >&2 || true
  done
}
cleanup() {
  status=$?
  [ "$status" -eq 0 ] || dump
  [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$cluster"
  exit "$status"
}
trap cleanup EXIT

cat <<YAML | kind create cluster --name "$cluster" --image "$node_image" --wait 180s --config=-
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
YAML
export KUBECONFIG
KUBECONFIG=$(mktemp); kind get kubeconfig --name "$cluster" > "$KUBECONFIG"

docker build --target kind -t gpu-inventory:kind .
kind load docker-image gpu-inventory:kind --name "$cluster"

# Fake GPUs: one T4 (nvidia.com/gpu: 1) on each worker, as the t4-single scenario says
# (Kubernetes' documented way to advertise an extended resource is to patch node status), and
# the labels GPU Feature Discovery would set.
for node in $(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o name); do
  name=${node#node/}
  kubectl label node "$name" nvidia.com/gpu.present=true nvidia.com/gpu.product=Tesla-T4 \
    nvidia.com/gpu.count=1 --overwrite
  kubectl patch node "$name" --subresource=status --type=json -p \
    '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"1"}]'
done

kubectl apply --server-side -k e2e/kind/overlay
for workload in deploy/gpu-inventory-operator ds/gpu-inventory-agent deploy/gpu-inventory-mcp; do
  kubectl -n "$ns" rollout status "$workload" --timeout=180s
done

kubectl run gpu-job --image=registry.k8s.io/pause:3.10 --restart=Never \
  --overrides='{"spec":{"containers":[{"name":"gpu-job","image":"registry.k8s.io/pause:3.10","resources":{"limits":{"nvidia.com/gpu":"1"}}}]}}'

# The operator creates GPUInventory/cluster on its own: until then `get` fails, which is fine.
want="$workers $workers 1 True"
got=""
for _ in $(seq 90); do
  got=$(kubectl get gpuinventory cluster -o jsonpath='{.status.summary.nodes} {.status.summary.allocatable} {.status.summary.allocated} {.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
  [ "$got" = "$want" ] && break
  sleep 2
done
kubectl get gpuinventory
kubectl get gpunodes
[ "$got" = "$want" ] || { echo "inventory says '$got', want '$want' (nodes allocatable allocated Ready)" >&2; exit 1; }

# Every GPU node's agent must be Reporting (a count that agrees with zero working agents is
# not a pass).
states=$(kubectl get gpunodes -o jsonpath='{range .items[*]}{.status.kubernetes.agentState}{"\n"}{end}')
reporting=$(grep -c '^Reporting$' <<<"$states" || true)
[ "$reporting" -eq "$workers" ] || { echo "agents Reporting: $reporting of $workers ($states)" >&2; exit 1; }
echo "kind e2e: OK ($workers agents Reporting)"
