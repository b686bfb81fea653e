#!/usr/bin/env bash
# Validate a compose file with Compose's own loader (compose-go, see compose-check/main.go); no
# Docker engine needed. Builds the checker once per source version into the per-user cache, the
# same way scripts/sandbox-cluster caches its binaries, and reuses it afterwards.
#
#   scripts/compose-check.sh [-name N] [-profile a,b] docker-compose.yaml   > normalized.json
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/compose-check" && pwd)"
# A new go.mod, go.sum or main.go means a new directory, so a stale binary is never run.
KEY="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"
BIN="${XDG_CACHE_HOME:-$HOME/.cache}/llm-on-eks/compose-check/$KEY/compose-check"

if [[ ! -x "$BIN" ]]; then
  command -v go >/dev/null || { echo "compose-check: go is required to build the checker" >&2; exit 1; }
  mkdir -p "$(dirname "$BIN")"
  # Build to a temporary name and rename: two concurrent first runs never see a half-written file.
  # readonly: build exactly what go.sum pins; no VCS stamp (nothing reads it, and it needs git).
  (cd "$SRC" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -o "$BIN.tmp.$$" .)
  mv -f "$BIN.tmp.$$" "$BIN"
fi
exec "$BIN" "$@"
