"""helm's client-go cache is per cluster, and release manifests read from their Secrets are helm's.

On two real downstream clusters, one with a CRD the other lacks: `ClusterHelm` gives each
cluster's helm its own `KUBECACHEDIR` (`herd.helm.kube_cache`), so a chart with a custom
resource installs where the CRD is and fails where it is not, whichever cluster helm saw
first, and each cache holds only its own cluster's API resources. And `ClusterHelm.manifest`,
which reads the release Secret directly (`herd.helm.release_secret`), gives what `helm get
manifest` prints, for the latest and for an earlier revision.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl, open_crd
from herd.api.charts import ChartSpec
from herd.helm.client import ClusterHelm
from herd.helm.environment import HelmEnvironment
from herd.helm.failures import HelmFailure
from herd.plan.releases import DesiredRelease, ReleaseKey

GROUP = "cachetest.herd.test"


def gizmo_chart(directory: Path, kind: str) -> Path:
    (directory / "templates").mkdir(parents=True)
    (directory / "Chart.yaml").write_text("apiVersion: v2\nname: gizmo\nversion: 0.1.0\n")
    (directory / "templates" / "gizmo.yaml").write_text(
        f"apiVersion: {GROUP}/v1\nkind: {kind}\nmetadata:\n  name: {{{{ .Release.Name }}}}\n"
        "spec:\n  size: {{ .Values.size }}\n"
    )
    return directory


def desired(cluster: str, namespace: str, name: str, values: dict[str, object]) -> DesiredRelease:
    chart = ChartSpec.model_validate(
        {"name": name, "chart": "gizmo", "repo": "https://unused.test", "version": "0.1.0"}
        | {"namespace": namespace, "wait": False, "timeout": "1m"}
    )
    return DesiredRelease(ReleaseKey(cluster, namespace, name), chart, 0, values, "config")


@pytest.fixture
def env() -> Iterator[HelmEnvironment]:
    environment = HelmEnvironment()
    try:
        yield environment
    finally:
        environment.close()


async def test_each_cluster_has_its_own_cache(
    downstream: list[BedCluster], env: HelmEnvironment, tmp_path: Path
) -> None:
    with_crd, without = downstream[0], downstream[1]
    suffix = uuid.uuid4().hex[:6]
    plural, kind = f"gizmos{suffix}", f"Gizmo{suffix}"
    names = {"plural": plural, "singular": f"gizmo{suffix}", "kind": kind}
    kubectl(with_crd.kubeconfig, "apply", "-f", "-", stdin=json.dumps(open_crd(GROUP, names)))
    kubectl(with_crd.kubeconfig, "wait", "--for=condition=Established", f"crd/{plural}.{GROUP}")
    chart = gizmo_chart(tmp_path / "gizmo", kind)
    namespace = f"cache-{suffix}"
    helms = [ClusterHelm(env, c.name, c.kubeconfig) for c in (with_crd, without)]
    try:
        # The cluster with the CRD first: its discovery is cached before the other's.
        first = desired(with_crd.name, namespace, "g", {"size": 1})
        assert (await helms[0].install_or_upgrade(first, chart, "test")).revision == 1
        with pytest.raises(HelmFailure) as refused:
            await helms[1].install_or_upgrade(
                desired(without.name, namespace, "g", {"size": 1}), chart, "test"
            )
        assert kind in refused.value.message or "no matches" in refused.value.message
        # And once more on the first, whose cache the second must not have changed.
        assert (await helms[0].install_or_upgrade(first, chart, "test")).revision == 2
    finally:
        for helm in helms:
            helm.close()
    caches = sorted(p for p in env.kube_caches.root.iterdir() if p.is_dir())
    assert len(caches) == 2
    holding = [p for p in caches if any(GROUP in str(f) for f in p.rglob("*"))]
    assert len(holding) == 1, "only the cache of the cluster with the CRD knows its group"


async def test_manifests_read_from_secrets_are_helms(
    downstream: list[BedCluster], env: HelmEnvironment, tmp_path: Path
) -> None:
    cluster = downstream[0]
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: cm\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        "data:\n  size: {{ .Values.size | quote }}\n"
    )
    namespace = f"manifest-{uuid.uuid4().hex[:6]}"
    helm = ClusterHelm(env, cluster.name, cluster.kubeconfig)
    try:
        for size in (1, 2):
            release = desired(cluster.name, namespace, "m", {"size": size})
            await helm.install_or_upgrade(release, chart, "test")
        for revision in (None, 1, 2):
            direct = await helm.manifest(namespace, "m", revision)
            printed = await helm._get("manifest", namespace, "m", revision)
            assert direct is not None and printed is not None
            assert printed == direct + "\n"  # helm prints the manifest and a newline
        assert 'size: "2"' in (await helm.manifest(namespace, "m", None) or "")
        assert 'size: "1"' in (await helm.manifest(namespace, "m", 1) or "")
        assert await helm.manifest(namespace, "absent", None) is None
        assert await helm.manifest(namespace, "m", 9) is None
    finally:
        helm.close()


async def test_the_release_namespace_is_herds_not_helms(
    downstream: list[BedCluster], env: HelmEnvironment, tmp_path: Path
) -> None:
    """Herd creates an admin release's namespace itself, labelled as helm labels it: helm's
    --create-namespace would fetch and parse the API server's OpenAPI v3 documents in every
    installing process, to validate that one Namespace. An existing namespace is kept."""
    cluster = downstream[0]
    chart = gizmo_chart(tmp_path / "gizmo", "ConfigMap")
    (chart / "templates" / "gizmo.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
    )
    namespace = f"made-{uuid.uuid4().hex[:6]}"
    helm = ClusterHelm(env, cluster.name, cluster.kubeconfig)
    try:
        for name in ("one", "two"):  # the second finds the namespace there
            release = desired(cluster.name, namespace, name, {"size": 1})
            assert (await helm.install_or_upgrade(release, chart, "test")).revision == 1
    finally:
        helm.close()
    made = json.loads(
        kubectl(
            cluster.kubeconfig, "get", "namespace", namespace, "-o", "json", "--show-managed-fields"
        )
    )
    assert made["metadata"]["labels"]["name"] == namespace
    managers = {entry["manager"] for entry in made["metadata"]["managedFields"]}
    assert managers == {"herd"}, managers  # helm's --create-namespace would be "helm"
