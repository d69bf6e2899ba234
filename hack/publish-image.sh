#!/usr/bin/env bash
# Build the gpu-inventory image for linux/amd64 and linux/arm64 (GH200/GB200 nodes are arm64)
# with Docker buildx, push it, and pin the chart to the pushed digest.
#
#   hack/publish-image.sh                  build both platforms and push $IMAGE:$VERSION; then
#                                          write $IMAGE and the index digest into
#                                          charts/gpu-inventory/values.yaml (image.repository,
#                                          image.digest) and re-render manifests/ (make manifests)
#   hack/publish-image.sh --load           build for this machine's platform only, load it into the
#                                          local Docker as $IMAGE:$VERSION (no push)
#   hack/publish-image.sh --refresh-base   resolve the current digest of the base image's tag
#                                          and write it into the Dockerfile's BASE
#
# Environment: IMAGE (default ghcr.io/gpu-inventory/gpu-inventory), VERSION (default the chart's
# appVersion), PLATFORMS (default linux/amd64,linux/arm64). Needs docker with buildx, logged in
# to the registry for a push, and a builder that can build several platforms: Docker's default
# `docker` driver cannot (unless the containerd image store is on), so create one once with
# `docker buildx create --name multiarch --driver docker-container --use`. Building arm64 on an
# amd64 machine needs QEMU binfmt (docker run --privileged --rm tonistiigi/binfmt --install arm64)
# or an arm64 builder node. A push ends with `make manifests`, which needs Go (for Helm).
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/gpu-inventory
image=${IMAGE:-ghcr.io/gpu-inventory/gpu-inventory}
version=${VERSION:-$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' "$chart/Chart.yaml")}
platforms=${PLATFORMS:-linux/amd64,linux/arm64}
mode=${1:-push}

command -v docker >/dev/null || { echo "needs docker (with buildx)" >&2; exit 1; }

if [ "$mode" = --refresh-base ]; then
  tag=$(sed -n 's/^ARG BASE=\([^@]*\)@.*/\1/p' Dockerfile)
  digest=$(docker buildx imagetools inspect "$tag" --format '{{json .Manifest}}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
  sed -i "s|^ARG BASE=.*|ARG BASE=$tag@$digest|" Dockerfile
  echo "Dockerfile BASE: $tag@$digest"
  exit 0
fi

# Times come from the commit, never the clock: the OCI `created` label, and SOURCE_DATE_EPOCH,
# from which BuildKit (>= 0.11) sets the image's own creation times.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
args=(
  --file Dockerfile --target runtime
  --build-arg "VERSION=$version"
  --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  --build-arg "CREATED=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
  --build-arg "SOURCE_DATE_EPOCH=$epoch"
  --tag "$image:$version"
)
if [ "$mode" = --load ]; then
  docker buildx build "${args[@]}" --load .
  echo "loaded $image:$version"
  exit 0
fi

metadata=$(mktemp)
trap 'rm -f "$metadata"' EXIT
docker buildx build "${args[@]}" --platform "$platforms" --provenance=false \
  --metadata-file "$metadata" --push .
digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["containerimage.digest"])' "$metadata")
echo "pushed $image:$version@$digest ($platforms)"
sed -i -e "s|^  repository: .*|  repository: $image|" \
  -e "s|^  digest: \".*\"|  digest: \"$digest\"|" "$chart/values.yaml"
make manifests
echo "chart and manifests now pin $image@$digest"
