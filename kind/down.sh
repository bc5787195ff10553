#!/usr/bin/env bash
# Removes what kind/up.sh made, in either layout: caspian watch, the git daemon,
# the clusters, and the local state (the fleet repo included, unless KEEP_FLEET=1).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
state=${CASPIAN_KIND_STATE:-$root/.kind}

command -v kind >/dev/null 2>&1 || { echo "kind/down.sh: 'kind' is not installed" >&2; exit 1; }

for pidfile in "$state/caspian.pid" "$state/git-daemon.pid"; do
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
done
for name in hub paris frankfurt california; do
  if kind get clusters 2>/dev/null | grep -qx "$name"; then
    kind delete cluster --name "$name"
  fi
done
rm -f "$state/layout"  # up.sh may make the fleet again in either layout
if [ "${KEEP_FLEET:-0}" != 1 ]; then
  rm -rf "$state"
fi
echo "kind fleet removed"
