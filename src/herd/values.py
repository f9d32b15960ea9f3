"""Read `values.from` sources (ConfigMap/Secret keys) from the Stack's own namespace.

Used by the engine of both faces (`herd.engine.ValuesReader`): the operator reads the
management cluster, the CLI the cluster named by `--values-kubeconfig`. Content is parsed,
never logged: errors name the object and key only. A missing object or key, or content that
is not a YAML object, is a spec problem located at `spec.charts[i].values.from[k]`.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd.api.v1 import StackSpec, ValuesSource
from herd.clusters.kube import NOT_FOUND, api_error_summary, read_json
from herd.errors import Problem, SpecError, TransientError
from herd.plan import SourceKey, Values, source_key


class KubeValuesReader:
    def __init__(self, api: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api)

    async def read(self, namespace: str, spec: StackSpec) -> Mapping[SourceKey, Values]:
        found: dict[SourceKey, Values] = {}
        problems: list[Problem] = []
        for i, chart in enumerate(spec.charts):
            for k, source in enumerate(chart.values.from_):
                where = f"spec.charts[{i}].values.from[{k}]"
                try:
                    values = await asyncio.to_thread(self._read, namespace, source)
                except _Missing as missing:
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

    def _read(self, namespace: str, source: ValuesSource) -> Values:
        what = f"{source.kind} {namespace}/{source.name}"
        try:
            if source.kind == "Secret":
                body = read_json(self._core.read_namespaced_secret, source.name, namespace)
            else:
                body = read_json(self._core.read_namespaced_config_map, source.name, namespace)
        except ApiException as error:
            if error.status == NOT_FOUND:
                raise _Missing(f"{what} not found") from None
            raise TransientError(f"cannot read {what}: {api_error_summary(error)}") from None
        data: dict[str, str] = body.get("data") or {}
        if source.key not in data:
            raise _Missing(f"{what} has no key {source.key!r}")
        text = data[source.key]
        if source.kind == "Secret":
            text = base64.b64decode(text).decode()
        return _yaml_object(text, f"{what} key {source.key!r}")


class _Missing(Exception):
    pass


def _yaml_object(text: str, what: str) -> Values:
    try:
        loaded: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"{what} is not valid YAML") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{what} must hold a YAML object of Helm values")
    return loaded
