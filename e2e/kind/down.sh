#!/usr/bin/env bash
# Undo e2e/kind/up.sh: stop the controller and the chart repository, delete the clusters.
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=.kind-demo
for pidfile in "$dir/herd.pid" "$dir/chartrepo.pid"; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
for name in management downstream-1 downstream-2; do
  kind delete cluster --name "herd-$name" 2>/dev/null
done
rm -rf "$dir"
