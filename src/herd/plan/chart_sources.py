"""Private chart sources: what a chart's repository needs besides its URL. Pure.

A `ChartSource` is one chart's credentials (from the Secret `charts[].credentials`
names), private CA (`charts[].caSecretName`, key `ca.crt`) and TLS flags
(`insecureSkipTLSVerify`, `plainHTTP`). `herd.kube.chart_secrets` reads the Secrets and calls
`chart_source`; `herd.helm.chart_cache.ChartCache` turns a source into helm's registry config
(`registry_config`) or repository config (`repository_config`), 0600 files in Herd's
private helm home, never command-line arguments.

`identity` names a source without its content: a digest of the Secrets' names, uids and
resourceVersions and of the flags. The chart cache keys pulls by it (one Stack's
credentials never serve another's pull), and a permanently failed release is held per
(config, identity), so fixing the Secret retries it. The secret fields are left out of
`repr`, so no log or traceback shows them.

Callers: `herd.kube.chart_secrets`, `herd.plan.desired`, `herd.helm.client`, `herd.cli`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import yaml

from herd.api.charts import ChartSpec
from herd.api.v1 import StackSpec
from herd.errors import Problem, SpecError

BASIC_AUTH = "kubernetes.io/basic-auth"
DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
CA_KEY = "ca.crt"


@dataclass(frozen=True)
class SecretData:
    """A Secret as read: type, decoded data, and what identifies this version of it."""

    name: str
    type: str
    data: Mapping[str, bytes] = field(repr=False)
    uid: str = ""
    resource_version: str = ""


@dataclass(frozen=True)
class ChartSource:
    """How to reach one chart's repository. `secret` is `namespace/name` (for messages)."""

    identity: str
    secret: str | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    docker_config: bytes | None = field(default=None, repr=False)
    ca: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    plain_http: bool = False

    @property
    def has_credentials(self) -> bool:
        return self.docker_config is not None or self.username is not None


def needs_source(chart: ChartSpec) -> bool:
    return bool(
        chart.credentials
        or chart.ca_secret_name
        or chart.insecure_skip_tls_verify
        or chart.plain_http
    )


def secret_names(chart: ChartSpec) -> list[tuple[str, str]]:
    """(field, Secret name) of every Secret the chart's source reads."""
    names = []
    if chart.credentials is not None:
        names.append(("credentials.secretName", chart.credentials.secret_name))
    if chart.ca_secret_name:
        names.append(("caSecretName", chart.ca_secret_name))
    return names


def chart_source(
    chart: ChartSpec,
    namespace: str,
    credentials: SecretData | None = None,
    ca: SecretData | None = None,
    *,
    where: str = "spec.charts[]",
) -> ChartSource:
    """The chart's source from its Secrets as read. Raises `SpecError` located at the field
    whose Secret has the wrong type or lacks a key (naming Secret and key, never content)."""
    problems: list[Problem] = []
    login = _login(chart, namespace, credentials, f"{where}.credentials.secretName", problems)
    ca_pem = None
    if ca is not None:
        ca_pem = ca.data.get(CA_KEY)
        if not ca_pem:
            problems.append(
                Problem(
                    f"{where}.caSecretName", f"Secret {namespace}/{ca.name} has no key {CA_KEY!r}"
                )
            )
    if problems:
        raise SpecError(problems)
    return ChartSource(
        identity=_identity(chart, credentials, ca),
        secret=f"{namespace}/{credentials.name}" if credentials else None,
        username=login.username,
        password=login.password,
        docker_config=login.docker_config,
        ca=ca_pem,
        insecure=chart.insecure_skip_tls_verify,
        plain_http=chart.plain_http,
    )


@dataclass(frozen=True)
class _Login:
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    docker_config: bytes | None = field(default=None, repr=False)


def _login(
    chart: ChartSpec,
    namespace: str,
    credentials: SecretData | None,
    field_: str,
    problems: list[Problem],
) -> _Login:
    """The login the credentials Secret holds (basic auth, or a docker config for OCI);
    what is wrong with it joins `problems`, located at `field_`."""
    if credentials is None:
        return _Login()
    what = f"Secret {namespace}/{credentials.name}"
    if credentials.type == BASIC_AUTH:
        missing = [k for k in ("username", "password") if not credentials.data.get(k)]
        if missing:
            problems.append(Problem(field_, f"{what} has no key {missing[0]!r}"))
            return _Login()
        data = credentials.data
        return _Login(data["username"].decode(), data["password"].decode())
    if credentials.type == DOCKER_CONFIG_JSON:
        if not chart.repo.startswith("oci://"):
            message = f"{what}: {DOCKER_CONFIG_JSON} is for oci:// registries only"
        elif not _docker_config_ok(credentials.data.get(".dockerconfigjson")):
            message = f"{what} key '.dockerconfigjson' is not a docker config"
        else:
            return _Login(docker_config=credentials.data[".dockerconfigjson"])
    else:
        message = f"{what} has type {credentials.type!r}; want {BASIC_AUTH} or {DOCKER_CONFIG_JSON}"
    problems.append(Problem(field_, message))
    return _Login()


def _docker_config_ok(raw: bytes | None) -> bool:
    try:
        loaded = json.loads(raw or b"")
    except ValueError:
        return False
    return isinstance(loaded, dict) and isinstance(loaded.get("auths"), dict)


def _identity(chart: ChartSpec, *secrets: SecretData | None) -> str:
    material = json.dumps(
        {
            "secrets": [(s.name, s.uid, s.resource_version) if s else None for s in secrets],
            "insecure": chart.insecure_skip_tls_verify,
            "plainHTTP": chart.plain_http,
        }
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def unread_sources(namespace: str, spec: StackSpec, hint: str) -> dict[str, ChartSource]:
    """Sources without a Secret reader: flags only; a chart naming a Secret is a problem
    (`hint` says how to give the reader, e.g. the CLI's --values-kubeconfig)."""
    problems = [
        Problem(
            f"spec.charts[{i}].{where}",
            f"Secret {namespace}/{name} cannot be read: {hint}",
        )
        for i, chart in enumerate(spec.charts)
        for where, name in secret_names(chart)
    ]
    if problems:
        raise SpecError(problems)
    return {c.name: chart_source(c, namespace) for c in spec.charts if needs_source(c)}


def registry_host(repo: str) -> str:
    """`host[:port]` of an `oci://` repository: the key of a docker config's `auths`."""
    return urlsplit(repo).netloc


def registry_config(source: ChartSource, repo: str) -> bytes:
    """A docker `config.json` with the source's credentials for the repo's registry."""
    if source.docker_config is not None:
        return source.docker_config
    auths: dict[str, dict[str, str]] = {}
    if source.username is not None and source.password is not None:
        token = base64.b64encode(f"{source.username}:{source.password}".encode()).decode()
        auths[registry_host(repo)] = {"auth": token}
    return json.dumps({"auths": auths}).encode()


def repository_config(source: ChartSource, name: str, url: str, ca_file: str | None) -> bytes:
    """helm's `repositories.yaml` with one named entry for `url`, credentials included."""
    entry: dict[str, object] = {"name": name, "url": url}
    if source.username is not None:
        entry["username"] = source.username
        entry["password"] = source.password
    if ca_file:
        entry["caFile"] = ca_file
    if source.insecure:
        entry["insecure_skip_tls_verify"] = True
    document = {"apiVersion": "", "generated": "0001-01-01T00:00:00Z", "repositories": [entry]}
    return yaml.safe_dump(document).encode()


def decode_data(data: Mapping[str, str] | None) -> dict[str, bytes]:
    """A Secret's `data` (base64) decoded; a key that does not decode is left out."""
    decoded = {}
    for key, value in (data or {}).items():
        try:
            decoded[key] = base64.b64decode(value)
        except (binascii.Error, ValueError):
            continue
    return decoded
