"""The add-on catalog on the management cluster: it follows its ConfigMap and Secret.

No ConfigMap: the defaults, and an agent without its Secret is a spec error; a ConfigMap
and Secret appear: their version and API key are used; a bad value is a spec error naming
the ConfigMap and key. The key never reaches a log. The add-ons deployed on a fleet are
`e2e/test_addons.py`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from e2e.testbed import rancher
from e2e.testbed.controlplane import Cluster as BedCluster
from herd.addons.catalog import AddonCatalog
from herd.api import parse_stack
from herd.errors import SpecError
from herd.kube.client import api_client_from_kubeconfig


@pytest.fixture
def controller_ns(management: BedCluster) -> Iterator[str]:
    name = f"herd-{uuid.uuid4().hex[:8]}"
    with rancher.api_client(management.kubeconfig) as api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    yield name
    with rancher.api_client(management.kubeconfig) as api:
        client.CoreV1Api(api).delete_namespace(name)


async def test_catalog_follows_its_configmap_and_secret(
    management: BedCluster, controller_ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = api_client_from_kubeconfig(management.kubeconfig)
    core = client.CoreV1Api(api)
    spec = parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": "s"},
            "spec": {
                "security": True,
                "observability": True,
                "targets": {"clusterIds": ["x"]},
                "charts": [{"name": "app", "repo": "https://r", "version": "1"}],
            },
        }
    ).spec
    catalog = AddonCatalog.from_cluster(api, controller_ns, "herd-addons", min_interval=0)
    try:
        # No ConfigMap: the defaults, but the agent lacks its Secret.
        await catalog.refresh()
        with pytest.raises(SpecError, match=r"needs stackstate\.url and stackstate\.apiKey"):
            catalog.charts(spec)
        assert catalog.config is not None and catalog.config.neuvector.version == "2.8.6"

        core.create_namespaced_config_map(
            controller_ns,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="herd-addons"),
                data={"neuvector.version": "2.8.7", "secretName": "sts"},
            ),
        )
        key = "sts-" + uuid.uuid4().hex
        core.create_namespaced_secret(
            controller_ns,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="sts"),
                string_data={"stackstate.url": "https://sts", "stackstate.apiKey": key},
            ),
        )
        await catalog.refresh()
        neuvector, agent = catalog.charts(spec)
        assert agent.namespace == "suse-observability"
        assert neuvector.version == "2.8.7"
        assert catalog.credentials.stackstate_api_key == key

        core.patch_namespaced_config_map(
            "herd-addons", controller_ns, {"data": {"neuvector.wait": "perhaps"}}
        )
        await catalog.refresh()
        with pytest.raises(SpecError, match=r"herd-addons, key neuvector.wait: must be true or"):
            catalog.charts(spec)
        assert key not in caplog.text
    finally:
        api.close()  # type: ignore[no-untyped-call]
