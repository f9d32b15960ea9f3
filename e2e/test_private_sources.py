"""Private chart sources through the CLI: a real registry and an authenticated repository.

One bed: a CNCF distribution registry with htpasswd (bcrypt) auth and TLS from a private
test CA, the same registry in plain-HTTP mode, and an HTTPS chart repository with basic
auth (`e2e.testbed.registry`, `e2e.testbed.chartrepo`). Credentials are Secrets on the
management cluster. The CLI (`herd apply --values-kubeconfig`, the same engine and Secret
reader as the operator) covers the matrix: good and bad credentials for OCI basic-auth,
dockerconfigjson and the HTTPS repository, the private CA and its absence,
insecureSkipTLSVerify, plain-HTTP OCI, and Secrets that are missing or malformed (spec
errors, no helm call), and the leak check: no password in helm's argv, and every credential
file 0600 while helm runs and gone afterwards (`e2e.testbed.private_sources`).

The operator's side is `e2e/test_private_sources_operator.py`.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed import certs
from e2e.testbed.chartrepo import ChartRepo, build_repository
from e2e.testbed.controlplane import Cluster
from e2e.testbed.helpers import kubectl
from e2e.testbed.private_sources import (
    CHARTS,
    apply,
    assert_files_private_and_gone,
    basic_auth,
    ca_secret,
    secret,
    stack_body,
    unique,
    write_wrapper,
)
from e2e.testbed.registry import Registry

HERD = Path(sys.executable).parent / "herd"
CI_NS = "ci-private"  # the CLI's Stacks and their Secrets, on the management cluster
REPO_USER = "puller"


# -- the bed ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry.start(tmp_path_factory.mktemp("registry-tls"), charts=CHARTS) as running:
        yield running


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry.start(
        tmp_path_factory.mktemp("registry-plain"), tls=False, charts=CHARTS
    ) as running:
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
