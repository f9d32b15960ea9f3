"""Read `values.from` sources (ConfigMap/Secret keys) from the Stack's own namespace.

Used by the engine of both faces (`herd.engine.engine.ValuesReader`): the operator reads the
management cluster, the CLI the cluster named by `--values-kubeconfig`. Content is parsed,
never logged: errors name the object and key only. A missing object or key, or content that
is not a YAML object, is a spec problem located at `spec.charts[i].values.from[k]`.

No confused deputy: given `service_account` (the Stack's `spec.serviceAccountName`), every
read impersonates that ServiceAccount of the Stack's namespace
(`Impersonate-User: system:serviceaccount:<ns>:<sa>`; the API server adds the
ServiceAccount's groups), so a Stack ships only what its ServiceAccount may read. A read the
API server forbids is a spec problem naming the field and the ServiceAccount; the
controller itself needs only `impersonate` on `serviceaccounts`, no cluster-wide Secret
`get`. A forbidden impersonation (Herd's own RBAC lacks it) is transient: an install problem.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd.api.charts import ValuesSource
from herd.api.v1 import StackSpec
from herd.errors import PermanentError, Problem, SpecError, TransientError
from herd.kube.client import FORBIDDEN, NOT_FOUND, api_error_summary, read_json
from herd.plan import yamlsafe
from herd.plan.desired import SourceKey, source_key
from herd.plan.releases import Values


class KubeValuesReader:
    def __init__(self, api: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api)

    async def read(
        self, namespace: str, spec: StackSpec, *, service_account: str | None = None
    ) -> Mapping[SourceKey, Values]:
        """Every `values.from` source of `spec`, read as `service_account` when given.

        Raises `SpecError` listing every missing, forbidden or malformed source, and
        `TransientError` when the API server cannot answer.
        """
        found: dict[SourceKey, Values] = {}
        problems: list[Problem] = []
        for i, chart in enumerate(spec.charts):
            for k, source in enumerate(chart.values.from_):
                where = f"spec.charts[{i}].values.from[{k}]"
                try:
                    values = await asyncio.to_thread(self._read, namespace, source, service_account)
                except Missing as missing:
                    if not source.optional:
                        problems.append(Problem(where, str(missing)))
                    continue
                except ValueError as error:
                    problems.append(Problem(where, str(error)))
                    continue
                found[source_key(source)] = values
        if problems:
            raise SpecError(problems)
        return found

    def _read(self, namespace: str, source: ValuesSource, service_account: str | None) -> Values:
        what = f"{source.kind} {namespace}/{source.name}"
        body = read_object(self._core, source.kind, namespace, source.name, service_account)
        data: dict[str, str] = body.get("data") or {}
        if source.key not in data:
            raise Missing(f"{what} has no key {source.key!r}")
        text = data[source.key]
        if source.kind == "Secret":
            text = base64.b64decode(text).decode()
        return _yaml_object(text, f"{what} key {source.key!r}")


def read_object(
    core: client.CoreV1Api,
    kind: str,
    namespace: str,
    name: str,
    service_account: str | None,
) -> dict[str, Any]:
    """A ConfigMap or Secret of the Stack's namespace, read as `service_account` when given.

    Raises `Missing` (not found), `ValueError` (the ServiceAccount may not read it: a spec
    problem) or `TransientError` (the API server did not answer, or Herd may not
    impersonate). Shared with `herd.kube.chart_secrets`: both follow the same rules.
    """
    what = f"{kind} {namespace}/{name}"
    headers = {}
    if service_account:
        headers["Impersonate-User"] = serviceaccount_user(namespace, service_account)
    call = core.read_namespaced_secret if kind == "Secret" else core.read_namespaced_config_map
    try:
        body: dict[str, Any] = read_json(call, name, namespace, _headers=headers)
    except ApiException as error:
        if error.status == NOT_FOUND:
            raise Missing(f"{what} not found") from None
        if error.status == FORBIDDEN and service_account:
            account = f"ServiceAccount {namespace}/{service_account}"
            if "cannot impersonate" in str(error.body or ""):
                raise TransientError(
                    f"Herd may not impersonate {account} to read {what} "
                    "(its ClusterRole needs impersonate on serviceaccounts)"
                ) from None
            raise ValueError(
                f"{account} (spec.serviceAccountName) may not get {what}: "
                "grant it get on that object with a Role in the Stack's namespace"
            ) from None
        raise TransientError(f"cannot read {what}: {api_error_summary(error)}") from None
    return body


def serviceaccount_user(namespace: str, name: str) -> str:
    """The user name Kubernetes gives a ServiceAccount: `system:serviceaccount:<ns>:<name>`."""
    return f"system:serviceaccount:{namespace}:{name}"


class Missing(PermanentError):
    """The object or key is not there."""


def _yaml_object(text: str, what: str) -> Values:
    try:
        loaded: Any = yamlsafe.load(text)
    except yamlsafe.YamlLimitError as error:
        raise ValueError(f"{what} is refused: {error}") from None
    except yaml.YAMLError:
        raise ValueError(f"{what} is not valid YAML") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{what} must hold a YAML object of Helm values")
    return loaded
