#!/usr/bin/env bash
# Install the real MCP clients the MCP server's tests talk to: the MCP Inspector CLI (npm, the
# exact tree in hack/mcp-inspector/package-lock.json, into the project's cache), and curl + jq
# (Debian packages, when missing).
#
# Idempotent: the Inspector lives under ${GPU_INVENTORY_CACHE:-$XDG_CACHE_HOME/gpu-inventory}
# keyed by a hash of the lockfile, so a second run costs a hash. Prints the Inspector CLI path
# last.
#
# The Inspector is pinned to the 1.x line (hack/mcp-inspector/package.json): 2.x needs Node >=
# 22.19, and the machines ship Node 20. 1.x declares Node >= 22.7.5 too, but its CLI runs on Node
# 20 (npm only warns); the tests fail loudly if it ever stops doing so. It speaks the 2025-era
# protocol (@modelcontextprotocol/sdk 1.x): exactly the older clients this server must keep
# serving. `npm ci` installs the lockfile's versions and checks their integrity hashes, so a new
# release of any dependency changes nothing until the lockfile is regenerated:
#   cd hack/mcp-inspector && npm install --package-lock-only --ignore-scripts
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
locked="$here/mcp-inspector"

cache=${GPU_INVENTORY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-inventory}
lock_hash=$(sha256sum "$locked/package.json" "$locked/package-lock.json" | sha256sum | cut -c1-16)
prefix="$cache/npm/mcp-inspector-$lock_hash"
cli="$prefix/node_modules/.bin/mcp-inspector"

log() { printf '[mcp-clients] %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }

missing=()
for tool in curl jq; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "missing ${missing[*]}: install them (apt-get install ${missing[*]})"
  log "installing ${missing[*]} from Debian's packages"
  # One group, so that a failing update stops here too (set -e ignores a failure on the left
  # of &&).
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >&2 \
    || fail "apt-get could not install ${missing[*]}"
  for tool in "${missing[@]}"; do
    command -v "$tool" >/dev/null || fail "$tool is still missing after apt-get install"
  done
fi

command -v node >/dev/null && command -v npm >/dev/null \
  || fail "node and npm are needed for the MCP Inspector (the machines ship Node 20)"

if [ ! -x "$cli" ] || [ "$(cat "$prefix/.lock-hash" 2>/dev/null)" != "$lock_hash" ]; then
  log "installing the MCP Inspector from $locked/package-lock.json into $prefix"
  rm -rf "$prefix"
  mkdir -p "$prefix"
  cp "$locked/package.json" "$locked/package-lock.json" "$prefix/"
  npm ci --prefix "$prefix" --no-audit --no-fund --loglevel=error >&2 \
    || fail "npm ci failed in $prefix"
  echo "$lock_hash" > "$prefix/.lock-hash"
fi
[ -x "$cli" ] || fail "the MCP Inspector did not install: $cli is missing"
echo "$cli"
