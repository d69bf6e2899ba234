#!/usr/bin/env bash
# Build (or reuse) one pinned Go tool the tests run, and print its path last:
#
#   hack/build-tool.sh helm            Helm, from the Go module helm.sh/helm/v3
#   hack/build-tool.sh promtool        promtool, from github.com/prometheus/prometheus
#   hack/build-tool.sh kstatus-check   hack/kstatus-check (kstatus and Flux's CEL evaluator)
#
# Like hack/build-controlplane.sh: versions from hack/versions.env, binaries stamped with their
# real versions and cached under ${GPU_INVENTORY_CACHE:-~/.cache/gpu-inventory}/bin/<tool>-<version>,
# so a second run costs a version check. A lock per tool lets parallel callers wait for one
# build instead of racing into the same directory.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
tool=${1:?usage: hack/build-tool.sh helm|promtool|kstatus-check}
cache=${GPU_INVENTORY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-inventory}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { printf '[build-tool %s] %s\n' "$tool" "$*" >&2; }

# A wrapper module in the cache whose only job is to pin `pkg@version` as a tool.
wrapper() {
  local name=$1 package=$2 version=$3 go_version=$4
  w="$cache/build/$name-$version"; mkdir -p "$w"; cd "$w"
  printf 'module localbuild/%s\n\ngo %s\n' "$name" "$go_version" > go.mod
  log "resolving $package@$version (log: $w/get.log)"
  go get -tool "$package@$version" > "$w/get.log" 2>&1 || { cat "$w/get.log" >&2; return 1; }
}

case $tool in
  helm)
    version=v$HELM_VERSION
    bin="$cache/bin/helm-$version"
    stamp() { "$bin/helm" version --template '{{.Version}}' 2>/dev/null; }
    want=$version
    build() {
      wrapper helm helm.sh/helm/v3/cmd/helm "$version" 1.26.0
      # The flags of Helm's own Makefile: its version, and the Kubernetes version that
      # `helm lint` and `.Capabilities` assume, from the client-go it links (v0.N -> 1.N).
      local k8s minor ldf
      k8s=$(go list -m -f '{{.Version}}' k8s.io/client-go); minor=$(echo "$k8s" | cut -d. -f2)
      ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
      ldf="$ldf -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
      for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldf="$ldf -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
      done
      log "compiling (cold: a few minutes)"
      go build -trimpath -ldflags="$ldf" -o "$bin/helm" helm.sh/helm/v3/cmd/helm
    }
    ;;
  promtool)
    version=v$PROMETHEUS_MODULE_VERSION
    # Without service discovery (Prometheus' own remove_all_sd build tag, plugins/*.go): rules
    # need none of it, and it is most of the cold build (every cloud SDK).
    bin="$cache/bin/promtool-$version-nosd"
    stamp() { "$bin/promtool" --version 2>/dev/null | sed -n 's/^promtool, version \([^ ]*\).*/\1/p'; }
    want=$PROMETHEUS_VERSION
    build() {
      wrapper promtool github.com/prometheus/prometheus/cmd/promtool "$version" 1.26.7
      # Prometheus' .promu.yml stamps these; `netgo` as its release builds use.
      local ldf="-s -w" p=github.com/prometheus/common/version
      ldf="$ldf -X $p.Version=$PROMETHEUS_VERSION -X $p.Revision=$version -X $p.Branch=HEAD"
      ldf="$ldf -X $p.BuildUser=gpu-inventory -X $p.BuildDate=reproducible"
      log "compiling (cold: several minutes)"
      go build -trimpath -tags=netgo,remove_all_sd -ldflags="$ldf" -o "$bin/promtool" \
        github.com/prometheus/prometheus/cmd/promtool
    }
    ;;
  kstatus-check)
    src="$here/kstatus-check"
    # The cache key is the source itself: editing main.go or go.mod builds anew.
    version=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
    bin="$cache/bin/kstatus-check-$version"
    stamp() { [ -x "$bin/kstatus-check" ] && echo "$version"; }
    want=$version
    build() {
      cd "$src"
      log "compiling (cold: a minute or two)"
      GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags='-s -w' -o "$bin/kstatus-check" .
    }
    ;;
  *) log "unknown tool (helm, promtool or kstatus-check)"; exit 2 ;;
esac

mkdir -p "$cache/bin"
exec 9>"$cache/bin/.$tool.lock"
flock 9
if [ "$(stamp || true)" = "$want" ]; then
  log "$want: cached"
else
  start=$(date +%s)
  build
  got=$(stamp || true)
  [ "$got" = "$want" ] || { log "built binary reports '$got', want '$want'"; exit 1; }
  log "$want: built in $(( $(date +%s) - start ))s"
fi
echo "$bin/$(basename "$tool")"
