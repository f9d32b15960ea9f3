// Pins the Helm 4 release Herd runs on in the test bed (and that the Dockerfile ships).
// Built by e2e/testbed/binaries.py into ~/.cache/herd/bin/helm-<version>/helm.
module herd.local/e2e/testbed/tools/helm

go 1.26.0

require helm.sh/helm/v4 v4.3.2 // indirect
