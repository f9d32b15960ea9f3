"""Private chart sources through the operator, and Secrets read as the Stack's identity.

The operator (a real process with install/'s RBAC) pulls from a registry with basic auth
and TLS from a private test CA (`e2e.testbed.registry`): a wrong password fails the
release, fixing the Secret retries the held failure, and the password is in no controller
log, helm argv, status or Event; every credential file is 0600 while helm runs and gone
afterwards (`e2e.testbed.private_sources`). A tenant Stack's Secrets are read impersonating
its ServiceAccount: one its Role allows is read, another is a spec error naming both.

The CLI matrix (every kind of source and credential) is `e2e/test_private_sources.py`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e.testbed import helpers, rancher
from e2e.testbed.controlplane import Cluster
from e2e.testbed.helpers import get_stack, kubectl
from e2e.testbed.herd_controller import (
    Controller,
    prepare_management,
    service_account_kubeconfig,
)
from e2e.testbed.private_sources import (
    CHARTS,
    apply,
    assert_files_private_and_gone,
    basic_auth,
    ca_secret,
    stack_body,
    unique,
    write_wrapper,
)
from e2e.testbed.registry import Registry
from herd.api import parse_spec
from herd.api.v1 import StackSpec
from herd.errors import SpecError
from herd.kube.chart_secrets import KubeSourcesReader
from herd.kube.client import api_client_from_kubeconfig

ADMIN_NS = "herd-system"  # the operator's admin Stacks and their Secrets
RANCHER_NS = "fleet-private-e2e"
CLUSTER_ID = "c-m-pv000001"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry.start(tmp_path_factory.mktemp("registry-tls"), charts=CHARTS) as running:
        yield running


@dataclass
class Operator:
    controller: Controller
    argv: Path  # the helm wrapper's argv log
    modes: Path  # the helm wrapper's file-mode log


@pytest.fixture(scope="module")
def operator(
    management: Cluster,
    downstream: list[Cluster],
    registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    kubeconfig = management.kubeconfig
    prepare_management(kubeconfig, [RANCHER_NS])
    rancher.register_clusters(
        kubeconfig,
        [rancher.RancherCluster("pv-one", CLUSTER_ID, downstream[1].kubeconfig)],
        namespace=RANCHER_NS,
    )
    directory = tmp_path_factory.mktemp("private-operator")
    controller = Controller(
        "private",
        directory,
        service_account_kubeconfig(kubeconfig, directory / "controller.yaml"),
        ADMIN_NS,
        settings={
            "HERD_RANCHER_NAMESPACES": RANCHER_NS,
            "HERD_RESYNC_SECONDS": "3",
            "HERD_RETRY_SECONDS": "2",
            "HERD_FLEET_SECONDS": "1",
        },
    )
    (directory / "wrapped").mkdir()
    controller.wrapper, argv, modes = write_wrapper(directory / "wrapped")
    controller.start()
    try:
        yield Operator(controller, argv, modes)
    finally:
        kubectl(kubeconfig, "delete", "stacks", "--all", "-n", ADMIN_NS, "--timeout=120s",
                check=False, timeout=180)  # fmt: skip
        controller.stop(grace=20)
        kubectl(kubeconfig, "delete", "secret", "pv-oci", "pv-oci-ca", "-n", ADMIN_NS,
                check=False)  # fmt: skip


def stack_status(management: Cluster, name: str) -> dict[str, Any]:
    found: dict[str, Any] = get_stack(management, ADMIN_NS, name).get("status") or {}
    return found


def row_of(management: Cluster, name: str) -> dict[str, Any] | None:
    rows = stack_status(management, name).get("deployments") or []
    return rows[0] if rows else None


def test_operator_pulls_with_a_fixed_secret_and_leaks_nothing(
    operator: Operator, management: Cluster, registry: Registry, downstream: list[Cluster]
) -> None:
    kubeconfig = management.kubeconfig
    wrong = "wrong-" + uuid.uuid4().hex
    apply(
        kubeconfig,
        basic_auth("pv-oci", ADMIN_NS, registry.username, wrong),
        ca_secret("pv-oci-ca", ADMIN_NS, registry.ca or Path("/nonexistent")),
    )
    name = unique("pv-op")
    body = stack_body(
        name,
        ADMIN_NS,
        CLUSTER_ID,
        repo=registry.repo,
        credentials={"secretName": "pv-oci"},
        caSecretName="pv-oci-ca",
    )
    apply(kubeconfig, body)
    failed = helpers.eventually(
        "the wrong password to fail the release",
        lambda: (r := row_of(management, name)) and r["status"] == "Failed" and r,
        120,
    )
    assert failed["message"].startswith(f"authentication failed for {registry.repo}"), failed
    # Held (permanent) until the Secret changes: fixing it retries on the next pass.
    apply(kubeconfig, basic_auth("pv-oci", ADMIN_NS, registry.username, registry.password))
    fixed = helpers.eventually(
        "the fixed Secret to deploy the release",
        lambda: (r := row_of(management, name)) and r["status"] == "Deployed" and r,
        120,
    )
    assert fixed["revision"] == 1
    configmaps = kubectl(downstream[1].kubeconfig, "get", "configmaps", "-n", name, "-o", "name")
    assert configmaps.strip(), "the chart's objects are not in the cluster"

    time.sleep(2)  # let the status writer and the Event recorder flush
    status = json.dumps(stack_status(management, name))
    events = kubectl(kubeconfig, "get", "events", "-n", ADMIN_NS, "-o", "json")
    argv = operator.argv.read_text()
    assert "pull" in argv, argv
    for password in (wrong, registry.password):
        encoded = base64.b64encode(f"{registry.username}:{password}".encode()).decode()
        for where, text in (
            ("controller log", operator.controller.log_text()),
            ("helm argv", argv),
            ("status", status),
            ("events", events),
        ):
            assert password not in text, where
            assert encoded not in text, where
    assert "authentication failed for" in events
    assert_files_private_and_gone(operator.modes)
    leftovers = list((operator.controller.workdir / "helm" / "sources").glob("*"))
    assert leftovers == [], leftovers


# -- the Secrets read as the Stack's ServiceAccount --------------------------------------------

SA_NS = "private-sa"


def grant_one_of_two_secrets(kubeconfig: Path, registry: Registry) -> None:
    """ServiceAccount `puller` in SA_NS whose Role may get Secret `allowed`, not `denied`."""
    kubectl(kubeconfig, "create", "namespace", SA_NS, check=False)
    kubectl(kubeconfig, "create", "serviceaccount", "puller", "-n", SA_NS, check=False)
    apply(
        kubeconfig,
        basic_auth("allowed", SA_NS, registry.username, registry.password),
        basic_auth("denied", SA_NS, registry.username, registry.password),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "puller", "namespace": SA_NS},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["allowed"],
                    "verbs": ["get"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "puller", "namespace": SA_NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "puller"},
            "subjects": [{"kind": "ServiceAccount", "name": "puller", "namespace": SA_NS}],
        },
    )


def one_chart_spec(repo: str, secret_name: str) -> StackSpec:
    return parse_spec(
        {
            "targets": {"clusterIds": ["one"]},
            "charts": [
                {
                    "name": "web",
                    "chart": "app",
                    "repo": repo,
                    "version": "0.1.0",
                    "credentials": {"secretName": secret_name},
                }
            ],
        }
    )


def test_secrets_are_read_as_the_stacks_service_account(
    management: Cluster, registry: Registry
) -> None:
    """A tenant Stack's credentials are read impersonating its ServiceAccount: a Secret its
    Role allows is read, another one in the same namespace is a spec error naming both."""
    kubeconfig = management.kubeconfig
    grant_one_of_two_secrets(kubeconfig, registry)
    api = api_client_from_kubeconfig(kubeconfig)
    reader = KubeSourcesReader(api)
    try:
        allowed = one_chart_spec(registry.repo, "allowed")
        found = asyncio.run(reader.read(SA_NS, allowed, service_account="puller"))
        assert found["web"].password == registry.password
        assert found["web"].secret == f"{SA_NS}/allowed"
        denied = one_chart_spec(registry.repo, "denied")
        with pytest.raises(SpecError) as error:
            asyncio.run(reader.read(SA_NS, denied, service_account="puller"))
        (problem,) = error.value.problems
        assert problem.field == "spec.charts[0].credentials.secretName"
        assert f"ServiceAccount {SA_NS}/puller" in problem.message
        assert f"Secret {SA_NS}/denied" in problem.message
        assert registry.password not in str(problem)
    finally:
        api.close()
        kubectl(kubeconfig, "delete", "namespace", SA_NS, "--wait=false", check=False)
