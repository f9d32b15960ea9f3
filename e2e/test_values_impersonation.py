"""values.from read as the Stack's ServiceAccount, on a real management API server: the SA
may read one Secret and not another, and the forbidden one is a clear spec error."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from e2e.testbed.controlplane import Cluster as BedCluster
from herd.api import parse_spec
from herd.api.v1 import StackSpec
from herd.errors import SpecError, TransientError
from herd.kube.client import api_client_from_kubeconfig
from herd.kube.values_from import KubeValuesReader
from herd.plan.desired import source_key

NAMESPACE = "team-values"
ACCOUNT = "deployer"
CONTROLLER_NAMESPACE = "herd-values-controller"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def api(management: BedCluster) -> Iterator[client.ApiClient]:
    api = api_client_from_kubeconfig(management.kubeconfig)
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": ACCOUNT}})
    for name, text in (("allowed", "replicas: 3\n"), ("denied", "password: hunter2\n")):
        core.create_namespaced_secret(
            NAMESPACE, {"metadata": {"name": name}, "data": {"values.yaml": _b64(text)}}
        )
    core.create_namespaced_config_map(
        NAMESPACE, {"metadata": {"name": "settings"}, "data": {"values.yaml": "tier: gold\n"}}
    )
    rbac.create_namespaced_role(
        NAMESPACE,
        {
            "metadata": {"name": "read-allowed"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["allowed"],
                    "verbs": ["get"],
                },
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        NAMESPACE,
        {
            "metadata": {"name": "read-allowed"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "read-allowed",
            },
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}],
        },
    )
    try:
        yield api
    finally:
        core.delete_namespace(NAMESPACE)
        api.close()


def spec(*sources: dict[str, Any]) -> StackSpec:
    return parse_spec(
        {
            "targets": {"clusterIds": ["c-1"]},
            "charts": [
                {
                    "name": "web",
                    "repo": "https://charts.example.com",
                    "version": "1.0.0",
                    "values": {"from": list(sources)},
                }
            ],
        }
    )


ALLOWED = {"kind": "Secret", "name": "allowed"}
DENIED = {"kind": "Secret", "name": "denied"}
SETTINGS = {"kind": "ConfigMap", "name": "settings"}


async def test_the_service_account_reads_what_it_may(api: client.ApiClient) -> None:
    wanted = spec(ALLOWED, SETTINGS)
    found = await KubeValuesReader(api).read(NAMESPACE, wanted, service_account=ACCOUNT)
    sources = wanted.charts[0].values.from_
    assert found == {
        source_key(sources[0]): {"replicas": 3},
        source_key(sources[1]): {"tier": "gold"},
    }


async def test_a_secret_it_may_not_read_is_a_spec_error_naming_field_and_account(
    api: client.ApiClient,
) -> None:
    with pytest.raises(SpecError) as raised:
        await KubeValuesReader(api).read(NAMESPACE, spec(ALLOWED, DENIED), service_account=ACCOUNT)
    (problem,) = raised.value.problems
    assert problem.field == "spec.charts[0].values.from[1]"
    assert f"ServiceAccount {NAMESPACE}/{ACCOUNT}" in problem.message
    assert f"Secret {NAMESPACE}/denied" in problem.message
    assert "hunter2" not in str(raised.value)


async def test_a_missing_secret_it_may_not_read_is_forbidden_not_missing(
    api: client.ApiClient,
) -> None:
    # No existence oracle: RBAC is checked before the lookup, and optional covers only "missing".
    ghost = {"kind": "Secret", "name": "ghost", "optional": True}
    with pytest.raises(SpecError) as raised:
        await KubeValuesReader(api).read(NAMESPACE, spec(ghost), service_account=ACCOUNT)
    assert "may not get Secret team-values/ghost" in str(raised.value)


async def test_an_account_without_a_role_reads_nothing(api: client.ApiClient) -> None:
    with pytest.raises(SpecError) as raised:
        await KubeValuesReader(api).read(NAMESPACE, spec(SETTINGS), service_account="nobody")
    assert f"ServiceAccount {NAMESPACE}/nobody" in str(raised.value)


async def test_without_an_account_the_controller_reads_as_itself(api: client.ApiClient) -> None:
    wanted = spec(DENIED)
    found = await KubeValuesReader(api).read(NAMESPACE, wanted)
    assert found == {source_key(wanted.charts[0].values.from_[0]): {"password": "hunter2"}}


# ---------------------------------------------------------------------------------------
# A controller with the least privilege issue 12 asks for: no Secret `get` of its own, only
# `impersonate` on serviceaccounts.


def _as_service_account(
    management: BedCluster, api: client.ApiClient, namespace: str, name: str
) -> client.ApiClient:
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(management.kubeconfig), client_configuration=configuration
    )
    configuration.cert_file = configuration.key_file = None
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(configuration)


@pytest.fixture(scope="module")
def controllers(
    management: BedCluster, api: client.ApiClient
) -> Iterator[tuple[client.ApiClient, client.ApiClient]]:
    """(may impersonate serviceaccounts, may not): two controller identities without Secret get."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespace({"metadata": {"name": CONTROLLER_NAMESPACE}})
    rbac.create_cluster_role(
        {
            "metadata": {"name": "herd-values-impersonate"},
            "rules": [
                {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}
            ],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "herd-values-impersonate"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "herd-values-impersonate",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "herd", "namespace": CONTROLLER_NAMESPACE}
            ],
        }
    )
    may = _as_service_account(management, api, CONTROLLER_NAMESPACE, "herd")
    may_not = _as_service_account(management, api, CONTROLLER_NAMESPACE, "herd-plain")
    try:
        yield may, may_not
    finally:
        may.close()
        may_not.close()
        rbac.delete_cluster_role_binding("herd-values-impersonate")
        rbac.delete_cluster_role("herd-values-impersonate")
        core.delete_namespace(CONTROLLER_NAMESPACE)


async def test_a_least_privilege_controller_reads_only_through_the_account(
    controllers: tuple[client.ApiClient, client.ApiClient],
) -> None:
    controller = controllers[0]
    wanted = spec(ALLOWED)
    found = await KubeValuesReader(controller).read(NAMESPACE, wanted, service_account=ACCOUNT)
    assert found == {source_key(wanted.charts[0].values.from_[0]): {"replicas": 3}}
    with pytest.raises(SpecError, match="may not get Secret team-values/denied"):
        await KubeValuesReader(controller).read(NAMESPACE, spec(DENIED), service_account=ACCOUNT)
    with pytest.raises(TransientError, match="cannot read Secret team-values/allowed: HTTP 403"):
        await KubeValuesReader(controller).read(NAMESPACE, spec(ALLOWED))  # as itself: nothing


async def test_a_controller_that_may_not_impersonate_says_so(
    controllers: tuple[client.ApiClient, client.ApiClient],
) -> None:
    with pytest.raises(TransientError) as raised:
        await KubeValuesReader(controllers[1]).read(
            NAMESPACE, spec(ALLOWED), service_account=ACCOUNT
        )
    assert "Herd may not impersonate ServiceAccount team-values/deployer" in str(raised.value)
    assert "impersonate on serviceaccounts" in str(raised.value)
