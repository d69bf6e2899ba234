#!/usr/bin/env bash
# Build (or reuse) kube-apiserver, kube-controller-manager, kubectl and etcd from the upstream Go
# modules. kubectl comes from the same k8s.io/kubernetes version as the API server (no skew, and
# nothing to find on the machine), built in the same step so it shares the Go build cache.
#
# Idempotent: binaries are cached under ${GPU_INVENTORY_CACHE:-$XDG_CACHE_HOME/gpu-inventory}
# keyed by version, so a second run costs a version check. Prints the bin directory last.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${GPU_INVENTORY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-inventory}
bin="$cache/bin/k8s-v$KUBERNETES_VERSION-etcd-v$ETCD_VERSION"
# Wrapper modules resolved at build time: -mod=mod, added to (not replacing) the machine's GOFLAGS.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"

log() { printf '[controlplane-build] %s\n' "$*" >&2; }

# Capture first: `| grep -q` would close the pipe early and, under pipefail, fail by SIGPIPE.
have() {
  local out flag=--version
  [ "$1" = kubectl ] && flag="version --client"
  # shellcheck disable=SC2086 # $flag is one or two words on purpose
  [ -x "$bin/$1" ] && out=$("$bin/$1" $flag 2>&1) && [[ $out == *"$2"* ]]
}

build_kubernetes() {
  local v=$KUBERNETES_VERSION minor patch w gomod ldf
  minor=$(echo "$v" | cut -d. -f2); patch=$(echo "$v" | cut -d. -f3)
  w="$cache/build/k8s-v$v"; mkdir -p "$w"; cd "$w"
  log "kubernetes v$v: preparing wrapper module in $w"
  printf 'module localbuild/k8s\n\ngo 1.24.0\n\ngodebug default=go1.24\n' > go.mod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  echo "require k8s.io/kubernetes v$v" >> go.mod
  # Staging modules are required at the non-existent v0.0.0; replace each with its published
  # v0.<minor>.<patch>. The list is generated from the real go.mod, never hand-maintained.
  grep -E '^[[:space:]]+k8s\.io/[a-z0-9-]+ v0\.0\.0([[:space:]]|$)' "$gomod" | sort -u |
    awk -v ver="v0.$minor.$patch" '{printf "replace %s => %s %s\n", $1, $1, ver}' >> go.mod
  log "kubernetes v$v: resolving modules (first run downloads a few hundred MB)"
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$v" \
                "k8s.io/kubernetes/cmd/kube-controller-manager@v$v" \
                "k8s.io/kubernetes/cmd/kubectl@v$v"
  ldf="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=v$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  log "kubernetes v$v: compiling kube-apiserver, kube-controller-manager and kubectl (cold: many minutes)"
  mkdir -p "$bin"
  go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags="$ldf" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  local v=$ETCD_VERSION w
  w="$cache/build/etcd-v$v"; mkdir -p "$w"; cd "$w"
  log "etcd v$v: preparing wrapper module in $w"
  printf 'module localbuild/etcd\n\ngo 1.25.0\n' > go.mod
  go get -tool "go.etcd.io/etcd/server/v3@v$v"
  log "etcd v$v: compiling"
  mkdir -p "$bin"
  go build -trimpath -ldflags='-s -w' -o "$bin/etcd" go.etcd.io/etcd/server/v3
}

start=$(date +%s)
if have kube-apiserver "v$KUBERNETES_VERSION" && have kube-controller-manager "v$KUBERNETES_VERSION" \
  && have kubectl "v$KUBERNETES_VERSION"; then
  log "kubernetes v$KUBERNETES_VERSION: cached"
else
  build_kubernetes
fi
if have etcd "$ETCD_VERSION"; then
  log "etcd v$ETCD_VERSION: cached"
else
  build_etcd
fi
for b in kube-apiserver kube-controller-manager kubectl etcd; do
  if [ "$b" = kubectl ]; then v=$("$bin/$b" version --client 2>&1); else v=$("$bin/$b" --version 2>&1); fi
  log "$b: ${v%%$'\n'*}"
done
for b in kube-apiserver kubectl; do
  have "$b" "v$KUBERNETES_VERSION" || { log "$b is not stamped v$KUBERNETES_VERSION"; exit 1; }
done
have etcd "$ETCD_VERSION" || { log "etcd does not report $ETCD_VERSION"; exit 1; }
log "done in $(( $(date +%s) - start ))s"
echo "$bin"
