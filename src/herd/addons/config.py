"""The add-ons' controller configuration: a ConfigMap's keys and a Secret's keys, parsed.

Pure. `parse_config` turns the `data` of the add-on ConfigMap (`HERD_ADDONS_CONFIGMAP`,
default `herd-addons`, in the controller namespace) into an `AddonsConfig`: the two add-on
`ChartSpec`s (NeuVector, the SUSE Observability agent) with the defaults below overridden
key by key, and where NeuVector's REST API is. `parse_secret` reads the Secret the
ConfigMap names (`secretName`, default: the ConfigMap's own name) into `Credentials`.
Every error names the object and the key, never a value. Callers: `herd.addons.catalog`.

ConfigMap keys (all optional; `<addon>` is `neuvector` or `observability`):

- `<addon>.repo`, `<addon>.chart`, `<addon>.version`, `<addon>.namespace`,
  `<addon>.releaseName`: the chart; defaults in `NEUVECTOR_DEFAULTS` / `AGENT_DEFAULTS`
  (the issue's repos, charts, namespaces and releases; versions are the ones Herd is
  tested with: pin the ones you support);
- `<addon>.values`: a YAML object of base Helm values for every cluster (default `{}`);
- `<addon>.wait` (`true`), `<addon>.timeout` (`10m`), `<addon>.atomic` (`false`);
- `neuvector.apiService`: NeuVector's REST API as the Kubernetes service proxy names it,
  `scheme:service:port` in NeuVector's namespace (`https:neuvector-svc-controller:10443`);
- `neuvector.failOn`: a release's `securityScan` is Failed when one of its images has a
  vulnerability this severe or worse: `critical` (default) or `high`;
- `secretName`: the Secret (same namespace) with the keys below; default: the
  ConfigMap's own name.

Secret keys: `stackstate.url` and `stackstate.apiKey` (required for `observability:
enabled`), `neuvector.username` (default `admin`) and `neuvector.password` (optional:
without it the scan status is Unavailable; with it, it is also NeuVector's
`bootstrapPassword` in each cluster, so a NeuVector that Herd installs accepts it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from pydantic import ValidationError

from herd.api.charts import ChartSpec, ChartValues
from herd.errors import PermanentError, Problem
from herd.status.facts import AGENT, NEUVECTOR, FailOn

_PREFIX = {NEUVECTOR: "neuvector", AGENT: "observability"}

NEUVECTOR_DEFAULTS: Final[Mapping[str, Any]] = {
    "repo": "https://neuvector.github.io/neuvector-helm/",
    "chart": "core",
    "version": "2.8.6",
    "namespace": "cattle-neuvector-system",
    "releaseName": "neuvector",
}
AGENT_DEFAULTS: Final[Mapping[str, Any]] = {
    "repo": "https://charts.rancher.com/server-charts/prime/suse-observability",
    "chart": "suse-observability-agent",
    "version": "1.2.16",
    "namespace": "suse-observability",
    "releaseName": "suse-observability-agent",
}
_COMMON_DEFAULTS: Final[Mapping[str, Any]] = {"wait": True, "timeout": "10m", "atomic": False}
_CHART_KEYS = ("repo", "chart", "version", "namespace", "releaseName", "wait", "timeout", "atomic")
_BOOLEAN_KEYS = frozenset({"wait", "atomic"})

DEFAULT_API_SERVICE: Final = "https:neuvector-svc-controller:10443"
DEFAULT_NEUVECTOR_USER: Final = "admin"

SECRET_URL: Final = "stackstate.url"
SECRET_API_KEY: Final = "stackstate.apiKey"
SECRET_NV_USER: Final = "neuvector.username"
SECRET_NV_PASSWORD: Final = "neuvector.password"
SECRET_KEYS: Final = frozenset({SECRET_URL, SECRET_API_KEY, SECRET_NV_USER, SECRET_NV_PASSWORD})


class AddonConfigError(PermanentError):
    """The add-on ConfigMap or Secret is unusable; `problems` name the keys."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class NeuVectorApi:
    """Where NeuVector's REST API is in each cluster and how strict the verdict is."""

    namespace: str
    service: str = DEFAULT_API_SERVICE
    fail_on: FailOn = FailOn.CRITICAL


@dataclass(frozen=True)
class AddonsConfig:
    """The add-on charts (defaults overridden by the ConfigMap) and the Secret's name."""

    neuvector: ChartSpec
    agent: ChartSpec
    api: NeuVectorApi
    secret_name: str


@dataclass(frozen=True)
class Credentials:
    """Values read from the add-on Secret. `repr` shows which are set, never a value."""

    stackstate_url: str = field(default="", repr=False)
    stackstate_api_key: str = field(default="", repr=False)
    neuvector_username: str = field(default=DEFAULT_NEUVECTOR_USER, repr=False)
    neuvector_password: str = field(default="", repr=False)

    @property
    def missing_for_agent(self) -> list[str]:
        """The Secret keys the observability agent needs that are empty or absent."""
        wanted = ((SECRET_URL, self.stackstate_url), (SECRET_API_KEY, self.stackstate_api_key))
        return [key for key, value in wanted if not value]

    @property
    def can_read_scans(self) -> bool:
        return bool(self.neuvector_username and self.neuvector_password)

    def secret_values(self) -> list[str]:
        """Every non-empty secret string (for leak checks and redaction)."""
        return [v for v in (self.stackstate_api_key, self.neuvector_password) if v]

    def __repr__(self) -> str:
        present = [
            key
            for key, value in (
                (SECRET_URL, self.stackstate_url),
                (SECRET_API_KEY, self.stackstate_api_key),
                (SECRET_NV_PASSWORD, self.neuvector_password),
            )
            if value
        ]
        return f"Credentials(set={present})"


def default_config(configmap: str = "herd-addons", namespace: str = "herd-system") -> AddonsConfig:
    """The configuration when the ConfigMap does not exist."""
    return parse_config({}, configmap=configmap, namespace=namespace)


def parse_config(
    data: Mapping[str, Any], *, configmap: str = "herd-addons", namespace: str = "herd-system"
) -> AddonsConfig:
    """The `data` of the add-on ConfigMap as an `AddonsConfig`; raises `AddonConfigError`.

    Values may be strings (as a ConfigMap holds them) or already typed (a dict written by
    hand for the CLI or tests). Unknown keys are errors, so a typo is not silently ignored.
    """
    where = f"ConfigMap {namespace}/{configmap}"
    problems: list[Problem] = []
    known = {f"{_PREFIX[a]}.{k}" for a in _PREFIX for k in (*_CHART_KEYS, "values")}
    known |= {"neuvector.apiService", "neuvector.failOn", "secretName"}
    problems += [Problem(f"{where}, key {key}", "unknown key") for key in sorted(set(data) - known)]
    neuvector = _chart(NEUVECTOR, NEUVECTOR_DEFAULTS, data, where, problems)
    agent = _chart(AGENT, AGENT_DEFAULTS, data, where, problems)
    service = _text(data, "neuvector.apiService", DEFAULT_API_SERVICE, where, problems)
    if service.count(":") != 2 or not all(service.split(":")):
        problems.append(
            Problem(f"{where}, key neuvector.apiService", "must be scheme:service:port")
        )
    fail_on_text = _text(data, "neuvector.failOn", FailOn.CRITICAL.value, where, problems)
    try:
        fail_on = FailOn(fail_on_text.lower())
    except ValueError:
        problems.append(Problem(f"{where}, key neuvector.failOn", "must be critical or high"))
        fail_on = FailOn.CRITICAL
    secret_name = _text(data, "secretName", configmap, where, problems)
    if problems or neuvector is None or agent is None:
        raise AddonConfigError(problems)
    return AddonsConfig(
        neuvector=neuvector,
        agent=agent,
        api=NeuVectorApi(namespace=neuvector.namespace, service=service, fail_on=fail_on),
        secret_name=secret_name,
    )


def parse_secret(data: Mapping[str, str]) -> Credentials:
    """Decoded Secret data as `Credentials`; keys Herd does not use are ignored."""
    return Credentials(
        stackstate_url=data.get(SECRET_URL, "").strip(),
        stackstate_api_key=data.get(SECRET_API_KEY, "").strip(),
        neuvector_username=data.get(SECRET_NV_USER, "").strip() or DEFAULT_NEUVECTOR_USER,
        neuvector_password=data.get(SECRET_NV_PASSWORD, "").strip(),
    )


def _chart(
    name: str,
    defaults: Mapping[str, Any],
    data: Mapping[str, Any],
    where: str,
    problems: list[Problem],
) -> ChartSpec | None:
    prefix = _PREFIX[name]
    fields: dict[str, Any] = {**_COMMON_DEFAULTS, **defaults}
    for key in _CHART_KEYS:
        if f"{prefix}.{key}" not in data:
            continue
        raw = data[f"{prefix}.{key}"]
        if key in _BOOLEAN_KEYS:
            parsed = _boolean(raw)
            if parsed is None:
                problems.append(Problem(f"{where}, key {prefix}.{key}", "must be true or false"))
                continue
            fields[key] = parsed
        else:
            fields[key] = str(raw).strip()
    values = _values(data, f"{prefix}.values", where, problems)
    try:
        return ChartSpec.model_validate(
            {**fields, "name": name, "values": ChartValues(inline=values)}
        )
    except ValidationError as error:
        for issue in error.errors():
            field_name = str(issue["loc"][0]) if issue["loc"] else "?"
            problems.append(Problem(f"{where}, key {prefix}.{field_name}", issue["msg"]))
        return None


def _values(
    data: Mapping[str, Any], key: str, where: str, problems: list[Problem]
) -> dict[str, Any]:
    raw = data.get(key)
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark is not None else ""
            problems.append(Problem(f"{where}, key {key}", f"is not valid YAML{line}"))
            return {}
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(Problem(f"{where}, key {key}", "must be a YAML object of Helm values"))
        return {}
    return raw


def _text(
    data: Mapping[str, Any], key: str, default: str, where: str, problems: list[Problem]
) -> str:
    raw = data.get(key, default)
    text = str(raw).strip() if raw is not None else ""
    if not text:
        problems.append(Problem(f"{where}, key {key}", "must not be empty"))
        return default
    return text


def _boolean(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    return {"true": True, "false": False}.get(text)
