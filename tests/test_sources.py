"""Private chart sources: Secret checks, identity, helm's config files, failure words."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from herd.api.charts import ChartSpec
from herd.api.parse import parse_spec
from herd.errors import SpecError
from herd.helm.failures import FailureKind, classify, update_failure
from herd.helm.source_files import source_files
from herd.plan.chart_sources import (
    BASIC_AUTH,
    DOCKER_CONFIG_JSON,
    SecretData,
    chart_source,
    registry_config,
    repository_config,
    unread_sources,
)
from herd.plan.decide import Action, decide
from herd.plan.desired import plan_stack
from herd.plan.tenancy import Grants, spec_problems

PASSWORD = "s3cret-value"


def chart(**fields: Any) -> ChartSpec:
    return ChartSpec.model_validate({"name": "web", "repo": "oci://reg:5000/charts", **fields})


def basic(password: str = PASSWORD, version: str = "1", **data: bytes) -> SecretData:
    values = {"username": b"bob", "password": password.encode(), **data}
    return SecretData("creds", BASIC_AUTH, values, uid="u-1", resource_version=version)


def problems(error: pytest.ExceptionInfo[SpecError]) -> list[str]:
    return [str(p) for p in error.value.problems]


def test_basic_auth_gives_username_and_password_hidden_from_repr() -> None:
    source = chart_source(chart(version="1.0.0"), "team", basic())
    assert (source.username, source.password, source.secret) == ("bob", PASSWORD, "team/creds")
    assert PASSWORD not in repr(source)


@pytest.mark.parametrize(
    ("secret", "repo", "words"),
    [
        (
            SecretData("creds", BASIC_AUTH, {"username": b"bob"}),
            "oci://r/c",
            "spec.charts[0].credentials.secretName: Secret team/creds has no key 'password'",
        ),
        (
            SecretData("creds", "Opaque", {}),
            "oci://r/c",
            "has type 'Opaque'; want kubernetes.io/basic-auth or kubernetes.io/dockerconfigjson",
        ),
        (
            SecretData("creds", DOCKER_CONFIG_JSON, {".dockerconfigjson": b'{"auths": {}}'}),
            "https://r/c",
            "kubernetes.io/dockerconfigjson is for oci:// registries only",
        ),
        (
            SecretData("creds", DOCKER_CONFIG_JSON, {".dockerconfigjson": b"not json"}),
            "oci://r/c",
            "key '.dockerconfigjson' is not a docker config",
        ),
    ],
)
def test_bad_credentials_secrets_name_field_secret_and_key(
    secret: SecretData, repo: str, words: str
) -> None:
    with pytest.raises(SpecError) as error:
        chart_source(chart(version="1", repo=repo), "team", secret, where="spec.charts[0]")
    assert any(words in p for p in problems(error)), problems(error)


def test_ca_secret_needs_ca_crt() -> None:
    ca = SecretData("ca", "Opaque", {"ca.pem": b"x"})
    with pytest.raises(SpecError) as error:
        chart_source(chart(version="1"), "team", None, ca, where="spec.charts[2]")
    assert problems(error) == ["spec.charts[2].caSecretName: Secret team/ca has no key 'ca.crt'"]


def test_identity_follows_the_secret_version_never_its_content() -> None:
    spec = chart(version="1")
    first = chart_source(spec, "team", basic(version="1")).identity
    assert chart_source(spec, "team", basic(password="other", version="1")).identity == first
    assert chart_source(spec, "team", basic(version="2")).identity != first
    flagged = chart(version="1", insecureSkipTLSVerify=True)
    assert chart_source(flagged, "team", basic(version="1")).identity != first


def test_registry_config_holds_basic_auth_for_the_registry_host() -> None:
    source = chart_source(chart(version="1"), "team", basic())
    auths = json.loads(registry_config(source, "oci://reg:5000/charts"))["auths"]
    assert base64.b64decode(auths["reg:5000"]["auth"]).decode() == f"bob:{PASSWORD}"


def test_dockerconfigjson_is_passed_as_it_is() -> None:
    raw = json.dumps({"auths": {"reg:5000": {"auth": "eA=="}}}).encode()
    secret = SecretData("d", DOCKER_CONFIG_JSON, {".dockerconfigjson": raw})
    assert registry_config(chart_source(chart(version="1"), "t", secret), "oci://reg:5000") == raw


def test_repository_config_names_one_entry_with_credentials_and_tls() -> None:
    spec = chart(version="1", repo="https://charts.example", insecureSkipTLSVerify=True)
    source = chart_source(spec, "team", basic())
    document = yaml.safe_load(repository_config(source, "herd-x", spec.repo, "/ca.crt"))
    assert document["repositories"] == [
        {
            "name": "herd-x",
            "url": "https://charts.example",
            "username": "bob",
            "password": PASSWORD,
            "caFile": "/ca.crt",
            "insecure_skip_tls_verify": True,
        }
    ]


def test_without_a_reader_secrets_are_problems_and_flags_still_work() -> None:
    spec = parse_spec(
        {
            "targets": {"clusterIds": ["a"]},
            "charts": [
                {"name": "a", "repo": "oci://r/c", "version": "1", "plainHTTP": True},
                {"name": "b", "repo": "oci://r/c", "version": "1", "caSecretName": "ca"},
            ],
        }
    )
    with pytest.raises(SpecError) as error:
        unread_sources("team", spec, "give --values-kubeconfig")
    assert problems(error) == [
        "spec.charts[1].caSecretName: Secret team/ca cannot be read: give --values-kubeconfig"
    ]
    flags_only = parse_spec(
        {
            "targets": {"clusterIds": ["a"]},
            "charts": [{"name": "a", "repo": "oci://r/c", "version": "1", "plainHTTP": True}],
        }
    )
    assert unread_sources("team", flags_only, "").keys() == {"a"}


def test_plain_http_is_for_oci_only() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(
            {
                "targets": {"clusterIds": ["a"]},
                "charts": [{"name": "a", "repo": "https://r", "version": "1", "plainHTTP": True}],
            }
        )
    assert problems(error)[0].startswith("spec.charts[0].plainHTTP: plainHTTP is for oci://")


@pytest.mark.parametrize(
    "stderr",
    [
        'Error: failed to perform "FetchReference" on source: GET "https://r/v2/c/manifests/1": '
        "response status code 401: unauthorized: authentication required",
        "Error: unexpected status from HEAD request to https://r/v2/c/manifests/1: "
        "401 Unauthorized",
        "Error: failed to fetch https://r/index.yaml : 401 Unauthorized",
        'Error: failed to perform "FetchReference" on source: basic credential not found',
    ],
)
def test_refused_logins_while_pulling_are_permanent_auth_failures(stderr: str) -> None:
    failure = classify(stderr, pulling=True, repo="oci://r/c", secret="team/creds")
    assert failure.kind is FailureKind.AUTH
    assert not failure.transient
    assert failure.message == "authentication failed for oci://r/c (credentials Secret team/creds)"


def test_an_api_servers_401_is_not_a_chart_sources() -> None:
    failure = classify("Error: Kubernetes cluster unreachable: 401 Unauthorized")
    assert failure.kind is FailureKind.CLUSTER_UNREACHABLE


def test_untrusted_certificate_while_pulling_is_a_tls_failure() -> None:
    stderr = 'Error: Get "https://r/index.yaml": tls: failed to verify certificate: x509: unknown'
    failure = classify(stderr, pulling=True, repo="https://r")
    assert (failure.kind, failure.transient) == (FailureKind.TLS, False)


def test_repo_update_failures_are_read_from_its_output() -> None:
    helm3 = (
        '...Unable to get an update from the "herd-x" chart repository (https://r):\n'
        "\tfailed to fetch https://r/index.yaml : 401 Unauthorized\n"
        "Update Complete. ⎈Happy Helming!⎈\n"
    )
    assert update_failure(helm3) == "Error: failed to fetch https://r/index.yaml : 401 Unauthorized"
    ok = '...Successfully got an update from the "herd-x" chart repository\nUpdate Complete.\n'
    assert update_failure(ok) is None


def test_a_fixed_secret_is_not_held_but_a_rotation_does_not_upgrade() -> None:
    spec = parse_spec(
        {
            "targets": {"clusterIds": ["c"]},
            "charts": [{"name": "a", "repo": "oci://r/c", "version": "1"}],
        }
    )
    before = plan_stack(spec, sources={"a": chart_source(spec.charts[0], "t", basic(version="1"))})
    after = plan_stack(spec, sources={"a": chart_source(spec.charts[0], "t", basic(version="2"))})
    old, new = before.releases_for("c")[0], after.releases_for("c")[0]
    assert old.config == new.config  # same release: a Secret rotation upgrades nothing
    assert old.attempt != new.attempt
    assert decide(old, None, "o", held=old.attempt).action is Action.HELD
    assert decide(new, None, "o", held=old.attempt).action is Action.INSTALL


def test_source_files_are_0600_in_a_0700_directory_and_removed(tmp_path: Path) -> None:
    spec = chart(version="1", repo="https://charts.example")
    ca = SecretData("ca", "Opaque", {"ca.crt": b"PEM"})
    source = chart_source(spec, "team", basic(), ca)
    with source_files(tmp_path, spec, source) as pull:
        files = [Path(f.split("=", 1)[1]) for f in pull.flags if f.startswith("--")]
        paths = [p for p in files if p.is_file()]
        assert {p.name for p in paths} == {"ca.crt", "repositories.yaml"}
        for path in paths:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert pull.ref == f"herd-{source.identity}/web"
        assert all(PASSWORD not in flag for flag in pull.flags)
    assert not any(p.exists() for p in paths)
    assert list((tmp_path / "sources").iterdir()) == []


def test_a_bounded_stack_reading_a_credentials_secret_needs_a_service_account() -> None:
    spec = parse_spec(
        {
            "targets": {"clusterIds": ["c"]},
            "charts": [
                {
                    "name": "a",
                    "repo": "oci://r/c",
                    "version": "1",
                    "credentials": {"secretName": "creds"},
                }
            ],
        }
    )
    grants = Grants("team")
    found = [str(p) for p in spec_problems(grants, spec)]
    assert any(
        p.startswith("spec.serviceAccountName: spec.charts[0].credentials.secretName needs")
        for p in found
    ), found
