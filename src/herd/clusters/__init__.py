"""Where clusters come from and which ones a Stack targets.

Sources (`RancherSource`, `SecretSource`, `FileSource`) list `Cluster`s; an `Inventory`
unions them and hands out kubeconfig files through a `KubeconfigStore`; `resolve_targets`
picks a Stack's clusters; `TargetIndex` tells the operator which Stacks a cluster change
affects. Callers: the engine (`herd.plan`, `herd.rollout`), `herd.operator` and `herd.cli`.
The modules `model`, `objects`, `targets`, `index` and `kubeconfig_yaml` are pure.
"""

from typing import TYPE_CHECKING

from herd._lazy import lazy_attributes
from herd.clusters.files import (
    ClusterConfigError,
    FileCluster,
    FileSource,
    add_cluster_options,
    load_clusters_file,
    parse_cluster_options,
)
from herd.clusters.index import StackKey, TargetIndex
from herd.clusters.model import Cluster, ClusterUnavailable, KubeconfigRef
from herd.clusters.targets import (
    Resolution,
    resolve_targets,
    selector_matches,
    targets_match,
)

if TYPE_CHECKING:
    from herd.clusters.inventory import Inventory
    from herd.clusters.kube import api_client_from_kubeconfig
    from herd.clusters.kubeconfigs import KubeconfigStore
    from herd.clusters.sources import ClusterSource, RancherSource, SecretSource

# The parts that talk to Kubernetes load on first use, so importing a pure module of this
# package (model, targets, index) does not drag the kubernetes client along.
_LAZY = {
    "Inventory": "herd.clusters.inventory",
    "api_client_from_kubeconfig": "herd.clusters.kube",
    "KubeconfigStore": "herd.clusters.kubeconfigs",
    "ClusterSource": "herd.clusters.sources",
    "RancherSource": "herd.clusters.sources",
    "SecretSource": "herd.clusters.sources",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "Cluster",
    "ClusterConfigError",
    "ClusterSource",
    "ClusterUnavailable",
    "FileCluster",
    "FileSource",
    "Inventory",
    "KubeconfigRef",
    "KubeconfigStore",
    "RancherSource",
    "Resolution",
    "SecretSource",
    "StackKey",
    "TargetIndex",
    "add_cluster_options",
    "api_client_from_kubeconfig",
    "load_clusters_file",
    "parse_cluster_options",
    "resolve_targets",
    "selector_matches",
    "targets_match",
]
