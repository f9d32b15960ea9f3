"""The add-on catalog: which charts a Stack gets prepended, and their per-cluster values.

`AddonCatalog` implements `herd.engine.engine.AddOns`. The engine calls `refresh()` before each
plan; `charts(spec)` then returns the NeuVector chart for `security: enabled` and the
SUSE Observability agent for `observability: enabled`, and `cluster_values` gives each
cluster its own values:

- agent: `stackstate.cluster.name` = the cluster's name (made valid for the agent's
  schema when it is not, `herd.addons.agentname`), plus `stackstate.url` and
  `stackstate.apiKey` from the add-on Secret;
- NeuVector: `bootstrapPassword` = the Secret's `neuvector.password` when set (NeuVector
  applies it on first start only, so Herd can later log in to read scans); else nothing.

`stack_charts(stack)` adds charts of the Stack's own: with `observability: enabled`,
Herd's dashboards and alerts (`herd.addons.insights`), which the Stack's deletion removes.

Secret values live only here and in the helm values handed to helm on stdin: never in a
`ChartSpec`, the Stack, its status, Events or logs.

Where the configuration comes from (`herd.addons.config` lists the keys):
- `from_cluster`: the operator's ConfigMap and the Secret it names, read from the
  management cluster on `refresh()` (at most every `min_interval` seconds, re-parsed
  only when a resourceVersion changes). A missing ConfigMap means the defaults.
- `from_config` / `from_file`: a dict or a YAML file (a ConfigMap document and optionally a
  Secret document, as in `examples`), for the CLI and tests.

Configuration problems do not stop Stacks that use no add-on: `charts` raises a
`SpecError` (invalid configuration, missing Secret keys) or a `TransientError` (the
configuration could never be read) only for a Stack that enables an add-on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd.addons.agentname import agent_cluster_name
from herd.addons.config import (
    AGENT_DEFAULTS,
    NEUVECTOR_DEFAULTS,
    AddonConfigError,
    AddonsConfig,
    Credentials,
    parse_config,
    parse_secret,
)
from herd.addons.insights import insights_chart
from herd.api.charts import ChartSpec
from herd.api.v1 import Stack, StackSpec, Toggle
from herd.errors import Problem, SpecError, TransientError
from herd.kube.client import API_ERRORS, NOT_FOUND, api_error_summary, read_json
from herd.plan.clusters import Cluster
from herd.plan.releases import Values
from herd.status.facts import AGENT, NEUVECTOR

logger = logging.getLogger(__name__)

_ABSENT = "absent"  # resource version of an object that does not exist


class AddonCatalog:
    def __init__(
        self,
        config: AddonsConfig | None,
        credentials: Credentials | None = None,
        *,
        problem: AddonConfigError | None = None,
        where: str = "the add-on configuration",
    ) -> None:
        self._config = config
        self._credentials = credentials or Credentials()
        self._problem = problem
        self._unavailable = ""
        self._where = where
        self._source: _ClusterSource | None = None

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        data: Mapping[str, Any] | None = None,
        secret_values: Mapping[str, str] | None = None,
        *,
        configmap: str = "herd-addons",
        namespace: str = "herd-system",
    ) -> AddonCatalog:
        """From ConfigMap-style data and decoded Secret values; raises AddonConfigError."""
        config = parse_config(data or {}, configmap=configmap, namespace=namespace)
        where = f"ConfigMap {namespace}/{configmap}"
        return cls(config, parse_secret(secret_values or {}), where=where)

    @classmethod
    def from_file(cls, path: Path) -> AddonCatalog:
        """From a YAML file holding the add-on ConfigMap document and optionally its Secret,
        as `kubectl apply` would create them for the operator (`examples/addons-config.yaml
        .sample`); parsed by the operator's `parse_config` and `parse_secret`.

        As the operator reads only the Secret the ConfigMap names (`secretName`, same
        namespace), a Secret named otherwise is an error, not silently unused. Raises
        `AddonConfigError`; its problems name documents and keys, never a value (a YAML
        syntax error gives its line only: the text around it may be a secret).
        """
        documents = _documents(path)
        configmaps = [d for d in documents if d.get("kind") == "ConfigMap"]
        secrets = [d for d in documents if d.get("kind") == "Secret"]
        if not configmaps:
            raise AddonConfigError([Problem(str(path), "has no ConfigMap document")])
        if len(configmaps) > 1 or len(secrets) > 1:
            raise AddonConfigError(
                [Problem(str(path), "give one ConfigMap and at most one Secret document")]
            )
        name, namespace = _name(configmaps[0], "herd-addons"), _namespace(configmaps[0])
        catalog = cls.from_config(
            _mapping(configmaps[0], "data", f"{path}: ConfigMap"),
            _secret_values(path, secrets[0]) if secrets else {},
            configmap=name,
            namespace=namespace,
        )
        assert catalog.config is not None
        if secrets:
            _check_secret_is_named(path, secrets[0], catalog.config.secret_name, namespace)
        return catalog

    @classmethod
    def from_cluster(
        cls, api: client.ApiClient, namespace: str, configmap: str, *, min_interval: float = 5.0
    ) -> AddonCatalog:
        """Read from the management cluster on each `refresh()`; nothing is read yet."""
        catalog = cls(None, where=f"ConfigMap {namespace}/{configmap}")
        catalog._source = _ClusterSource(api, namespace, configmap, min_interval)
        return catalog

    # -- engine.AddOns ----------------------------------------------------------------------

    @property
    def config(self) -> AddonsConfig | None:
        return self._config

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    async def refresh(self) -> None:
        if self._source is None:
            return
        outcome = await self._source.read()
        if outcome is None:
            return  # read recently, or nothing changed
        if isinstance(outcome, str):
            self._unavailable = outcome
            return
        self._unavailable = ""
        self._config, self._credentials, self._problem = outcome

    async def namespaces(self) -> frozenset[str]:
        """Every downstream namespace an add-on release may go to: the defaults' and the
        configuration's (read once first if it never was), for `herd.plan.tenancy.grants_for`,
        which keeps tenants out of them."""
        if self._config is None:
            await self.refresh()
        found = {str(NEUVECTOR_DEFAULTS["namespace"]), str(AGENT_DEFAULTS["namespace"])}
        if self._config is not None:
            found |= {self._config.neuvector.namespace, self._config.agent.namespace}
        return frozenset(found)

    def charts(self, spec: StackSpec) -> list[ChartSpec]:
        """The add-on charts `spec` enables, NeuVector first."""
        charts = []
        if spec.security_toggle is Toggle.ENABLED:
            charts.append(self._usable("spec.security").neuvector)
        if spec.observability is Toggle.ENABLED:
            config = self._usable("spec.observability")
            missing = self._credentials.missing_for_agent
            if missing:
                raise SpecError(
                    [
                        Problem(
                            "spec.observability",
                            f"the SUSE Observability agent needs {' and '.join(missing)} in "
                            f"the add-on Secret {config.secret_name!r} "
                            f"(named by {self._where}, key secretName)",
                        )
                    ]
                )
            charts.append(config.agent)
        return charts

    def stack_charts(self, stack: Stack) -> list[ChartSpec]:
        """Charts of the Stack's own that its add-ons bring: with observability enabled,
        Herd's dashboards and alerts (`herd.addons.insights`) beside the agent. Call after
        `charts`, which raises when the configuration is unusable."""
        if stack.spec.observability is not Toggle.ENABLED or self._config is None:
            return []
        agent = self._config.agent
        return [insights_chart(stack, agent.namespace, timeout=agent.timeout)]

    def cluster_values(self, cluster: Cluster, chart: ChartSpec) -> Values:
        credentials = self._credentials
        if chart.name == AGENT:
            return {
                "stackstate": {
                    "cluster": {"name": agent_cluster_name(cluster.name)},
                    "url": credentials.stackstate_url,
                    "apiKey": credentials.stackstate_api_key,
                }
            }
        if chart.name == NEUVECTOR and credentials.neuvector_password:
            return {"bootstrapPassword": credentials.neuvector_password}
        return {}

    def _usable(self, field: str) -> AddonsConfig:
        if self._problem is not None:
            raise SpecError([Problem(field, f"add-on configuration is invalid: {self._problem}")])
        if self._config is None:
            reason = self._unavailable or "not read yet"
            raise TransientError(f"add-on configuration {self._where} unavailable: {reason}")
        return self._config


class _ClusterSource:
    """Reads the ConfigMap and its Secret; parses only what changed."""

    def __init__(
        self, api: client.ApiClient, namespace: str, configmap: str, min_interval: float
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._namespace = namespace
        self._configmap = configmap
        self._min_interval = min_interval
        self._lock = asyncio.Lock()
        self._last_read = -float("inf")
        self._versions = ("", "")
        self._parsed: tuple[AddonsConfig | None, AddonConfigError | None] = (None, None)

    async def read(
        self,
    ) -> tuple[AddonsConfig | None, Credentials, AddonConfigError | None] | str | None:
        """New (config, credentials, problem); a reason string when unreadable; None
        when unchanged or read less than `min_interval` ago."""
        async with self._lock:
            if time.monotonic() - self._last_read < self._min_interval:
                return None
            try:
                outcome = await asyncio.to_thread(self._read)
            except API_ERRORS as error:
                reason = api_error_summary(error)
                logger.warning(
                    "Cannot read add-on configuration ConfigMap %s/%s: %s",
                    self._namespace,
                    self._configmap,
                    reason,
                )
                return reason
            self._last_read = time.monotonic()
            return outcome

    def _read(self) -> tuple[AddonsConfig | None, Credentials, AddonConfigError | None] | None:
        data, cm_version = self._get(self._core.read_namespaced_config_map, self._configmap)
        where = f"ConfigMap {self._namespace}/{self._configmap}"
        if cm_version != self._versions[0]:
            try:
                self._parsed = (
                    parse_config(data, configmap=self._configmap, namespace=self._namespace),
                    None,
                )
                logger.info("Add-on configuration read from %s", where)
            except AddonConfigError as invalid:
                self._parsed = (None, invalid)
                logger.warning("Add-on configuration is invalid: %s", invalid)
        config, problem = self._parsed
        secret_name = config.secret_name if config else self._configmap
        raw, secret_version = self._get(self._core.read_namespaced_secret, secret_name)
        secret_version = f"{secret_name}@{secret_version}"
        if (cm_version, secret_version) == self._versions:
            return None
        self._versions = (cm_version, secret_version)
        secret_where = f"Secret {self._namespace}/{secret_name}"
        try:
            credentials = parse_secret(_decoded(raw, secret_where))
        except AddonConfigError as bad:
            problem = problem or bad
            credentials = Credentials()
        if raw:
            logger.info("Add-on credentials read from %s: %r", secret_where, credentials)
        return config, credentials, problem

    def _get(self, read: Any, name: str) -> tuple[dict[str, Any], str]:
        """An object's `data` and resourceVersion; ({}, "absent") when it does not exist."""
        try:
            body = read_json(read, name, self._namespace)
        except ApiException as error:
            if error.status == NOT_FOUND:
                return {}, _ABSENT
            raise
        return dict(body.get("data") or {}), str(body["metadata"].get("resourceVersion", ""))


def _decoded(data: Mapping[str, Any], where: str) -> dict[str, str]:
    """Base64-decoded Secret data; a key that does not decode is named, not shown."""
    decoded: dict[str, str] = {}
    for key, value in data.items():
        try:
            decoded[str(key)] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise AddonConfigError(
                [Problem(f"{where}, key {key}", "is not base64-encoded UTF-8 text")]
            ) from None
    return decoded


# -- the add-on file (`from_file`) --------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    try:
        loaded = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise AddonConfigError([Problem(str(path), f"is not valid YAML{line}")]) from None
    return [doc for doc in loaded if isinstance(doc, dict)]


def _name(doc: Mapping[str, Any], default: str) -> str:
    metadata = doc.get("metadata")
    return str(metadata.get("name") or default) if isinstance(metadata, dict) else default


def _namespace(doc: Mapping[str, Any]) -> str:
    metadata = doc.get("metadata")
    found = metadata.get("namespace") if isinstance(metadata, dict) else None
    return str(found or "herd-system")


def _mapping(doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AddonConfigError([Problem(f"{where}, {key}", "must be a mapping of keys")])
    return value


def _secret_values(path: Path, secret: Mapping[str, Any]) -> dict[str, str]:
    where = f"{path}: Secret"
    plain = _mapping(secret, "stringData", where)
    bad = sorted(str(k) for k, v in plain.items() if not isinstance(v, str))
    if bad:
        raise AddonConfigError(
            [Problem(f"{where}, key {key}", "must be a string (quote it)") for key in bad]
        )
    return {**_decoded(_mapping(secret, "data", where), where), **plain}


def _check_secret_is_named(
    path: Path, secret: Mapping[str, Any], wanted: str, namespace: str
) -> None:
    name = _name(secret, wanted)
    where = f"{path}: Secret {name}"
    if name != wanted:
        reason = f"the ConfigMap names the Secret {wanted!r} (key secretName), not this one"
        raise AddonConfigError([Problem(where, reason)])
    metadata = secret.get("metadata")
    explicit = metadata.get("namespace") if isinstance(metadata, dict) else None
    if explicit and str(explicit) != namespace:
        reason = f"must be in the ConfigMap's namespace {namespace!r}"
        raise AddonConfigError([Problem(where, reason)])
