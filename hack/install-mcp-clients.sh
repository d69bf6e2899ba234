#!/usr/bin/env bash
# Install the real MCP clients the MCP server's tests talk to: the MCP Inspector CLI (npm,
# pinned, into the project's cache), and curl + jq (Debian packages, when missing).
#
# Idempotent: the Inspector lives under ${GPU_INVENTORY_CACHE:-$XDG_CACHE_HOME/gpu-inventory}
# keyed by version, so a second run costs a version check. Prints the Inspector CLI path last.
#
# The Inspector is pinned to the 1.x line: 2.x needs Node >= 22.19, and the machines ship Node
# 20. 1.x declares Node >= 22.7.5 too, but its CLI runs on Node 20 (npm only warns); the tests
# fail loudly if it ever stops doing so. It speaks the 2025-era protocol (@modelcontextprotocol/
# sdk 1.x): exactly the older clients this server must keep serving.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${GPU_INVENTORY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-inventory}
prefix="$cache/npm/mcp-inspector-$MCP_INSPECTOR_VERSION"
cli="$prefix/node_modules/.bin/mcp-inspector"

log() { printf '[mcp-clients] %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }

missing=()
for tool in curl jq; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "missing ${missing[*]}: install them (apt-get install ${missing[*]})"
  log "installing ${missing[*]} from Debian's packages"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

command -v node >/dev/null && command -v npm >/dev/null \
  || fail "node and npm are needed for the MCP Inspector (the machines ship Node 20)"

if [ ! -x "$cli" ] || [ "$(cat "$prefix/.version" 2>/dev/null)" != "$MCP_INSPECTOR_VERSION" ]; then
  log "installing @modelcontextprotocol/inspector@$MCP_INSPECTOR_VERSION into $prefix"
  rm -rf "$prefix"
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
    "@modelcontextprotocol/inspector@$MCP_INSPECTOR_VERSION" >&2
  echo "$MCP_INSPECTOR_VERSION" > "$prefix/.version"
fi
[ -x "$cli" ] || fail "the MCP Inspector did not install: $cli is missing"
echo "$cli"
