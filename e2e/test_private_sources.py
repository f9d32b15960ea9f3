"""Private chart sources end to end: a real registry and an authenticated repository.

One bed: a CNCF distribution registry with htpasswd (bcrypt) auth and TLS from a private
test CA, the same registry in plain-HTTP mode, and an HTTPS chart repository with basic
auth (`e2e.testbed.registry`, `e2e.testbed.chartrepo`). Credentials are Secrets on the
management cluster. The CLI (`herd apply --values-kubeconfig`, the same engine and Secret
reader as the operator) covers the matrix: good and bad credentials for OCI basic-auth,
dockerconfigjson and the HTTPS repository, the private CA and its absence,
insecureSkipTLSVerify, plain-HTTP OCI, and Secrets that are missing or malformed (spec
errors, no helm call). The operator (a real process with install/'s RBAC) covers the happy
path, a wrong password fixed in the Secret (the held failure is retried), and the leak
check: the password is in no controller log, helm argv, status or Event.

helm runs through a wrapper that logs every argv and, for each file flag
(`--registry-config`, `--repository-config`, `--ca-file`), the file's mode at that moment:
the files must be 0600 while helm runs and gone afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed import certs, faults, helpers, rancher
from e2e.testbed.chartrepo import ChartRepo, build_repository
from e2e.testbed.controlplane import Cluster
from e2e.testbed.helpers import get_stack, kubectl
from e2e.testbed.herd_controller import (
    Controller,
    prepare_management,
    service_account_kubeconfig,
)
from e2e.testbed.registry import Registry
from herd.api import parse_spec
from herd.api.v1 import StackSpec
from herd.errors import SpecError
from herd.kube.chart_secrets import KubeSourcesReader
from herd.kube.client import api_client_from_kubeconfig

HERD = Path(sys.executable).parent / "herd"
CI_NS = "ci-private"  # the CLI's Stacks and their Secrets, on the management cluster
ADMIN_NS = "herd-system"  # the operator's admin Stacks and their Secrets
RANCHER_NS = "fleet-private-e2e"
CLUSTER_ID = "c-m-pv000001"
REPO_USER = "puller"
FILE_FLAGS = ("--registry-config=", "--repository-config=", "--ca-file=")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def write_wrapper(directory: Path) -> tuple[Path, Path, Path]:
    """A `helm` logging argv (one line per call) and each file flag's mode, then exec."""
    log, modes = directory / "helm-calls.log", directory / "helm-file-modes.log"
    log.touch(mode=0o600)
    modes.touch(mode=0o600)
    real = os.environ.get("HERD_HELM") or faults.HELM
    wrapper = directory / "helm"
    wrapper.write_text(
        f"""#!/bin/sh
printf '%s\\n' "$*" >> '{log}'
for a in "$@"; do
  case "$a" in
    --registry-config=*|--repository-config=*|--ca-file=*)
      f="${{a#*=}}"
      printf '%s %s %s\\n' "$(stat -c %a "$f" 2>/dev/null || echo missing)" \\
        "$(stat -c %a "$(dirname "$f")" 2>/dev/null || echo missing)" "$f" >> '{modes}';;
  esac
done
exec '{real}' "$@"
"""
    )
    wrapper.chmod(0o700)
    return wrapper, log, modes


def file_modes(modes: Path) -> list[tuple[str, str, Path]]:
    rows = [line.split(" ", 2) for line in modes.read_text().splitlines() if line]
    return [(mode, parent, Path(path)) for mode, parent, path in rows]


def assert_files_private_and_gone(modes: Path) -> None:
    seen = file_modes(modes)
    assert seen, "no credential file was passed to helm"
    for mode, parent, path in seen:
        assert (mode, parent) == ("600", "700"), (mode, parent, path)
        assert not path.exists(), f"{path} outlived the pull"


# -- the bed ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry.start(tmp_path_factory.mktemp("registry-tls")) as running:
        yield running


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry.start(tmp_path_factory.mktemp("registry-plain"), tls=False) as running:
        yield running


class AuthRepo:
    def __init__(self, repo: ChartRepo, password: str, ca: Path) -> None:
        self.repo, self.url, self.password, self.ca = repo, repo.url, password, ca


@pytest.fixture(scope="module")
def auth_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRepo]:
    workdir = tmp_path_factory.mktemp("auth-repo")
    pki = certs.write_serving_pki(workdir / "pki", "herd-testbed-repo")
    password = uuid.uuid4().hex
    served = build_repository(workdir)
    with ChartRepo.serve(served, basic_auth=(REPO_USER, password), tls=pki.serving) as repo:
        yield AuthRepo(repo, password, pki.ca.cert)


def secret(name: str, namespace: str, type_: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": type_,
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def basic_auth(name: str, namespace: str, username: str, password: str) -> dict[str, Any]:
    return secret(
        name,
        namespace,
        "kubernetes.io/basic-auth",
        {"username": username.encode(), "password": password.encode()},
    )


def ca_secret(name: str, namespace: str, ca: Path) -> dict[str, Any]:
    return secret(name, namespace, "Opaque", {"ca.crt": ca.read_bytes()})


def apply(kubeconfig: Path, *bodies: dict[str, Any]) -> None:
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(bodies))


@pytest.fixture(scope="module")
def secrets(
    management: Cluster, registry: Registry, plain_registry: Registry, auth_repo: AuthRepo
) -> Iterator[dict[str, str]]:
    """The Secrets of every case, in the CLI's namespace; name -> the password it holds."""
    kubeconfig = management.kubeconfig
    kubectl(kubeconfig, "create", "namespace", CI_NS, check=False)
    host = registry.host
    docker = {"auths": {host: {"username": registry.username, "password": registry.password}}}
    apply(
        kubeconfig,
        basic_auth("oci-good", CI_NS, registry.username, registry.password),
        basic_auth("oci-bad", CI_NS, registry.username, "not-" + registry.password),
        basic_auth("plain-good", CI_NS, plain_registry.username, plain_registry.password),
        secret(
            "oci-docker",
            CI_NS,
            "kubernetes.io/dockerconfigjson",
            {".dockerconfigjson": json.dumps(docker).encode()},
        ),
        basic_auth("repo-good", CI_NS, REPO_USER, auth_repo.password),
        basic_auth("repo-bad", CI_NS, REPO_USER, "not-" + auth_repo.password),
        ca_secret("oci-ca", CI_NS, registry.ca or Path("/nonexistent")),
        ca_secret("repo-ca", CI_NS, auth_repo.ca),
        secret("opaque", CI_NS, "Opaque", {"username": b"x", "password": b"y"}),
        secret("no-ca-key", CI_NS, "Opaque", {"ca.pem": b"x"}),
    )
    try:
        yield {
            "oci": registry.password,
            "plain": plain_registry.password,
            "repo": auth_repo.password,
        }
    finally:
        kubectl(kubeconfig, "delete", "namespace", CI_NS, "--wait=false", check=False)


# -- the CLI matrix ---------------------------------------------------------------------------


def stack_body(name: str, namespace: str, cluster: str, **chart: Any) -> dict[str, Any]:
    """A one-chart Stack: fixture chart `app` 0.1.0 as `web`, into namespace `name`."""
    web = {"name": "web", "chart": "app", "version": "0.1.0", "namespace": name, **chart}
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targets": {"clusterIds": [cluster]}, "charts": [web]},
    }


class Cli:
    def __init__(self, management: Cluster, downstream: Cluster, directory: Path) -> None:
        self.management, self.downstream, self.directory = management, downstream, directory
        self.wrapper, self.log, self.modes = write_wrapper(directory)
        self.stacks: list[Path] = []

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HERD), *map(str, args)],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            env={**os.environ, "HERD_HELM": str(self.wrapper)},
        )

    def apply(self, **chart: Any) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """`herd apply` of a one-chart Stack (`app` 0.1.0 into a fresh namespace)."""
        name = unique("pv")
        body = stack_body(name, CI_NS, "one", **chart)
        path = self.directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(body))
        done = self.run("apply", "-f", path, *self.clusters, "-o", "json")
        if done.returncode != 2:  # an invalid Stack deployed nothing to delete
            self.stacks.append(path)
        try:
            document: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            document = {}
        return done, document

    @property
    def clusters(self) -> list[str]:
        return [
            *("--kubeconfig", f"{self.downstream.kubeconfig}=one"),
            *("--values-kubeconfig", str(self.management.kubeconfig)),
        ]


@pytest.fixture(scope="module")
def cli(
    management: Cluster,
    downstream: list[Cluster],
    secrets: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cli]:
    running = Cli(management, downstream[0], tmp_path_factory.mktemp("private-cli"))
    yield running
    for path in running.stacks:
        running.run("delete", "-f", path, *running.clusters)


def release(document: dict[str, Any]) -> dict[str, Any]:
    assert document.get("releases"), document
    found: dict[str, Any] = document["releases"][0]
    return found


def deployed(done: subprocess.CompletedProcess[str], document: dict[str, Any]) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    assert release(document)["status"] == "Deployed", document


def test_oci_basic_auth_with_the_private_ca(cli: Cli, registry: Registry) -> None:
    done, document = cli.apply(
        repo=registry.repo, credentials={"secretName": "oci-good"}, caSecretName="oci-ca"
    )
    deployed(done, document)


def test_oci_wrong_password_is_an_authentication_failure(cli: Cli, registry: Registry) -> None:
    done, document = cli.apply(
        repo=registry.repo, credentials={"secretName": "oci-bad"}, caSecretName="oci-ca"
    )
    assert done.returncode != 0
    row = release(document)
    assert row["status"] == "Failed"
    assert row["message"].startswith(f"authentication failed for {registry.repo}"), row
    assert f"{CI_NS}/oci-bad" in row["message"]


def test_oci_dockerconfigjson(cli: Cli, registry: Registry) -> None:
    done, document = cli.apply(
        repo=registry.repo, credentials={"secretName": "oci-docker"}, caSecretName="oci-ca"
    )
    deployed(done, document)


def test_oci_without_the_private_ca_fails_on_the_certificate(cli: Cli, registry: Registry) -> None:
    done, document = cli.apply(repo=registry.repo, credentials={"secretName": "oci-good"})
    assert done.returncode != 0
    row = release(document)
    assert row["status"] == "Failed"
    assert "certificate" in row["message"], row


def test_oci_insecure_skip_tls_verify(cli: Cli, registry: Registry) -> None:
    done, document = cli.apply(
        repo=registry.repo, credentials={"secretName": "oci-good"}, insecureSkipTLSVerify=True
    )
    deployed(done, document)


def test_oci_plain_http(cli: Cli, plain_registry: Registry) -> None:
    done, document = cli.apply(
        repo=plain_registry.repo, credentials={"secretName": "plain-good"}, plainHTTP=True
    )
    deployed(done, document)


def test_https_repository_basic_auth_and_ca(cli: Cli, auth_repo: AuthRepo) -> None:
    good = cli.apply(
        repo=auth_repo.url, credentials={"secretName": "repo-good"}, caSecretName="repo-ca"
    )
    deployed(*good)
    done, document = cli.apply(
        repo=auth_repo.url, credentials={"secretName": "repo-bad"}, caSecretName="repo-ca"
    )
    assert done.returncode != 0
    row = release(document)
    assert row["message"].startswith(f"authentication failed for {auth_repo.url}"), row


def test_https_repository_without_the_ca_and_insecure(cli: Cli, auth_repo: AuthRepo) -> None:
    done, document = cli.apply(repo=auth_repo.url, credentials={"secretName": "repo-good"})
    assert done.returncode != 0
    assert "certificate" in release(document)["message"], document
    insecure = cli.apply(
        repo=auth_repo.url, credentials={"secretName": "repo-good"}, insecureSkipTLSVerify=True
    )
    deployed(*insecure)


def test_anonymous_pull_from_the_private_registry_is_refused(cli: Cli, registry: Registry) -> None:
    done, document = cli.apply(repo=registry.repo, caSecretName="oci-ca")
    assert done.returncode != 0
    assert release(document)["message"].startswith(f"authentication failed for {registry.repo}")


@pytest.mark.parametrize(
    ("chart", "field", "words"),
    [
        ({"credentials": {"secretName": "absent"}}, "credentials.secretName", "not found"),
        ({"credentials": {"secretName": "opaque"}}, "credentials.secretName", "has type 'Opaque'"),
        ({"caSecretName": "no-ca-key"}, "caSecretName", "has no key 'ca.crt'"),
    ],
)
def test_bad_secrets_are_spec_errors_before_any_helm_call(
    cli: Cli, registry: Registry, chart: dict[str, Any], field: str, words: str
) -> None:
    before = cli.log.read_text()
    done, _ = cli.apply(repo=registry.repo, **chart)
    assert done.returncode == 2, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert f"spec.charts[0].{field}" in output
    assert words in output
    assert cli.log.read_text() == before, "a helm call was made for an invalid Stack"


def test_https_dockerconfigjson_is_a_spec_error(cli: Cli, auth_repo: AuthRepo) -> None:
    done, _ = cli.apply(repo=auth_repo.url, credentials={"secretName": "oci-docker"})
    assert done.returncode == 2
    assert "for oci:// registries only" in done.stdout + done.stderr


def test_plain_http_on_an_https_repo_is_a_spec_error(cli: Cli, auth_repo: AuthRepo) -> None:
    done, _ = cli.apply(repo=auth_repo.url, plainHTTP=True)
    assert done.returncode == 2
    assert "spec.charts[0].plainHTTP" in done.stdout + done.stderr


def test_cli_leaks_no_password_and_leaves_no_credential_file(
    cli: Cli, secrets: dict[str, str]
) -> None:
    """Runs last among the CLI tests: everything they made helm do is checked here."""
    argv = cli.log.read_text()
    assert "pull" in argv and "repo update" in argv, argv
    for password in secrets.values():
        assert password not in argv
        assert base64.b64encode(password.encode()).decode() not in argv
    assert "--username" not in argv and "--password" not in argv
    assert_files_private_and_gone(cli.modes)


# -- the operator -----------------------------------------------------------------------------


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


def test_secrets_are_read_as_the_stacks_service_account(
    management: Cluster, registry: Registry
) -> None:
    """A tenant Stack's credentials are read impersonating its ServiceAccount: a Secret its
    Role allows is read, another one in the same namespace is a spec error naming both."""
    kubeconfig = management.kubeconfig
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

    def spec(secret_name: str) -> StackSpec:
        return parse_spec(
            {
                "targets": {"clusterIds": ["one"]},
                "charts": [
                    {
                        "name": "web",
                        "chart": "app",
                        "repo": registry.repo,
                        "version": "0.1.0",
                        "credentials": {"secretName": secret_name},
                    }
                ],
            }
        )

    api = api_client_from_kubeconfig(kubeconfig)
    reader = KubeSourcesReader(api)
    try:
        found = asyncio.run(reader.read(SA_NS, spec("allowed"), service_account="puller"))
        assert found["web"].password == registry.password
        assert found["web"].secret == f"{SA_NS}/allowed"
        with pytest.raises(SpecError) as error:
            asyncio.run(reader.read(SA_NS, spec("denied"), service_account="puller"))
        (problem,) = error.value.problems
        assert problem.field == "spec.charts[0].credentials.secretName"
        assert f"ServiceAccount {SA_NS}/puller" in problem.message
        assert f"Secret {SA_NS}/denied" in problem.message
        assert registry.password not in str(problem)
    finally:
        api.close()
        kubectl(kubeconfig, "delete", "namespace", SA_NS, "--wait=false", check=False)
