#!/usr/bin/env bash
# The demo on kind clusters, for machines with a Docker engine (the default `make demo`
# needs none). Creates a management and two downstream kind clusters, registers the
# downstream ones Rancher-style on the management cluster, serves the fixture charts on
# loopback, runs the Herd controller locally and applies examples/test-stack.yaml.
# Untested in this project's CI (no Docker there); `e2e/kind/down.sh` removes it all.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v kind >/dev/null || { echo "kind is not installed (https://kind.sigs.k8s.io)" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "no Docker engine is running" >&2; exit 2; }
make --no-print-directory .venv/.installed
dir=.kind-demo
mkdir -p "$dir/kubeconfigs" "$dir/logs"
for name in management downstream-1 downstream-2; do
  kind get clusters | grep -qx "herd-$name" || kind create cluster --name "herd-$name" --wait 120s
  kind get kubeconfig --name "herd-$name" > "$dir/kubeconfigs/$name.yaml"
  chmod 600 "$dir/kubeconfigs/$name.yaml"
done
PYTHONPATH=. .venv/bin/python - "$dir" <<'PY'
import sys
from pathlib import Path
from e2e.testbed import rancher
d = Path(sys.argv[1]) / "kubeconfigs"
rancher.register_clusters(d / "management.yaml", [
    rancher.RancherCluster(n, f"c-m-kind000{i}", d / f"{n}.yaml", {"env": "demo"})
    for i, n in enumerate(["downstream-1", "downstream-2"], start=1)
])
PY
PYTHONPATH=. nohup .venv/bin/python -m e2e.testbed.chartrepo serve --dir "$dir/charts" \
  --port-file "$dir/chartrepo.url" > "$dir/logs/chartrepo.log" 2>&1 & echo $! > "$dir/chartrepo.pid"
for _ in $(seq 60); do [ -s "$dir/chartrepo.url" ] && break; sleep 1; done
repo=$(cat "$dir/chartrepo.url")
export KUBECONFIG="$PWD/$dir/kubeconfigs/management.yaml"
kubectl apply -f crds/
kubectl wait --for=condition=Established crd/stacks.herd.suse.com --timeout=60s
nohup .venv/bin/herd operator > "$dir/logs/herd-controller.log" 2>&1 & echo $! > "$dir/herd.pid"
sed "s|repo: http://127.0.0.1:8879|repo: $repo|" examples/test-stack.yaml | kubectl apply -f -
kubectl wait --for=jsonpath='{.status.phase}'=Deployed stack/test-stack --timeout=300s
kubectl get stacks
echo "export KUBECONFIG=$KUBECONFIG" > "$dir/env"
