"""Every name Herd gives Kubernetes objects: its API group, and its annotations and labels.

Pure constants (no imports), read by whichever layer writes or matches them: the models
(`herd.api`), the planner, the cluster sources, the kube readers, helm and the two faces.
The finalizer (`herd.operator.handlers.finalizer`) and kopf's own annotations are derived
from `GROUP`. The `apiVersion` literal of the models stays in `herd.api`: a `Literal` type
cannot be built from a constant.
"""

from __future__ import annotations

GROUP = "herd.suse.com"
PREFIX = f"{GROUP}/"

# -- annotations on a Stack --------------------------------------------------------------
APPROVE_ANNOTATION = f"{PREFIX}approve"  # =<stage>: pass that stage's approval gate
RECONCILE_AT = f"{PREFIX}reconcile-at"  # a new value retries held failures now
ORPHAN_ANNOTATION = f"{PREFIX}orphan-clusters"  # id1,id2: give up on them at deletion

# -- labels on a Stack -------------------------------------------------------------------
SHARD_LABEL = f"{PREFIX}shard"  # which controller shard handles it

# -- labels on the helm releases Herd manages (helm --labels, on the storage Secret) -----
LABEL_STACK = f"{PREFIX}stack"  # the owner Stack (`herd.plan.releases.owner_label`)
LABEL_CHART = f"{PREFIX}chart"
LABEL_WAVE = f"{PREFIX}wave"
LABEL_CONFIG = f"{PREFIX}config"
LABEL_VERSION = f"{PREFIX}chart-version"
# Which face of Herd installed the release: "operator" or "cli" (C2). A release without
# it (older Herd) counts as the caller's.
LABEL_MANAGER = f"{PREFIX}managed-by"

# -- the CLI's ownership records (downstream herd-system ConfigMaps) ---------------------
OWNER_NAMESPACE_LABEL = f"{PREFIX}stack-namespace"
OWNER_NAME_LABEL = f"{PREFIX}stack-name"

# -- kubeconfig Secrets of clusters ----------------------------------------------------
CLUSTER_SECRET_LABEL = f"{PREFIX}cluster"  # =true: this Secret is a cluster
CLUSTER_ID_ANNOTATION = f"{PREFIX}cluster-id"  # the cluster's id (default: Secret name)

# -- on a cluster object (Rancher provisioning Cluster or kubeconfig Secret) ---------------
# The base URL of the cluster's Prometheus (`herd.addons.prometheus`); without it, Herd
# asks the Service of HERD_PROMETHEUS_SERVICE through the cluster's API server proxy.
PROMETHEUS_URL_ANNOTATION = f"{PREFIX}prometheus-url"

# -- objects Herd keeps for tenancy ------------------------------------------------------
MANAGED_LABEL = f"{PREFIX}impersonation"  # on the impersonation RoleBindings
TENANT_LABEL = f"{PREFIX}tenant"  # on downstream tenant RBAC objects

# -- what helm itself puts on every object of a release (not in the stored manifest) -----
HELM_MANAGED_BY = "app.kubernetes.io/managed-by"  # =Helm
HELM_RELEASE_NAME = "meta.helm.sh/release-name"
HELM_RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
