#!/usr/bin/env bash
# gpu-inventory on kind, for users with Docker (our CI has no Docker engine, so it cannot run
# this; the same checks run in CI against the local control plane: e2e/test_e2e.py).
#
# Creates a kind cluster with two workers, fakes GPU capacity and NVIDIA labels on them, builds
# and loads the image, installs the manifests with the agent in fake-NVML mode, runs a GPU pod,
# and checks the inventory. KEEP=1 keeps the cluster afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
cluster=${CLUSTER:-gpu-inventory}
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "needs $tool on PATH" >&2; exit 1; }
done
cleanup() { [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$cluster"; }
trap cleanup EXIT

cat <<YAML | kind create cluster --name "$cluster" --wait 120s --config=-
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
YAML
export KUBECONFIG
KUBECONFIG=$(mktemp); kind get kubeconfig --name "$cluster" > "$KUBECONFIG"

docker build -t gpu-inventory:kind .
kind load docker-image gpu-inventory:kind --name "$cluster"

# Fake GPUs: one T4 (nvidia.com/gpu: 1) on each worker, as the agent's t4-single scenario says
# (Kubernetes' documented way to advertise an extended resource by patching node status), and
# the labels GPU Feature Discovery would set.
for node in $(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o name); do
  name=${node#node/}
  kubectl label node "$name" nvidia.com/gpu.present=true nvidia.com/gpu.product=Tesla-T4 \
    nvidia.com/gpu.count=1 --overwrite
  kubectl patch node "$name" --subresource=status --type=json -p \
    '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"1"}]'
done

kubectl apply --server-side -k e2e/kind/overlay
kubectl -n gpu-inventory rollout status deploy/gpu-inventory-operator --timeout=180s
kubectl -n gpu-inventory rollout status ds/gpu-inventory-agent --timeout=180s

kubectl run gpu-job --image=registry.k8s.io/pause:3.10 --restart=Never \
  --overrides='{"spec":{"containers":[{"name":"gpu-job","image":"registry.k8s.io/pause:3.10","resources":{"limits":{"nvidia.com/gpu":"1"}}}]}}'

want_allocatable=2 want_allocated=1
for _ in $(seq 60); do
  got=$(kubectl get gpuinventory cluster -o jsonpath='{.status.summary.allocatable} {.status.summary.allocated}')
  [ "$got" = "$want_allocatable $want_allocated" ] && break
  sleep 2
done
kubectl get gpuinventory
kubectl get gpunodes
[ "$got" = "$want_allocatable $want_allocated" ] || { echo "inventory says '$got', want '$want_allocatable $want_allocated'" >&2; exit 1; }
ready=$(kubectl get gpuinventory cluster -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
[ "$ready" = True ] || { echo "Ready is '$ready'" >&2; exit 1; }
echo "kind e2e: OK"
