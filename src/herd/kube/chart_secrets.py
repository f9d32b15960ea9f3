"""Read the Secrets of private chart sources (`charts[].credentials`, `caSecretName`).

The same rules as `values.from` (`herd.kube.values_from`, whose `read_object` this uses): only the
Stack's own namespace, and as the Stack's ServiceAccount where tenancy asks for one
(impersonation), so a Stack pulls only with credentials its ServiceAccount may read. A
missing Secret, a wrong type or a missing key is a `SpecError` at the field naming the
Secret (and key), never its content. Used by the engine of both faces
(`herd.engine.engine.SourcesReader`): the operator reads the management cluster, the CLI the
cluster named by `--values-kubeconfig`.

Callers: `herd.operator.runtime`, `herd.cli.fleet`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from kubernetes import client

from herd.api.v1 import StackSpec
from herd.errors import Problem, SpecError
from herd.kube.values_from import Missing, read_object
from herd.plan.chart_sources import ChartSource, SecretData, chart_source, decode_data, needs_source


class KubeSourcesReader:
    def __init__(self, api: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api)

    async def read(
        self, namespace: str, spec: StackSpec, *, service_account: str | None = None
    ) -> Mapping[str, ChartSource]:
        """chart name -> source, for every chart that has one. Raises `SpecError` listing
        every problem, `TransientError` when the API server cannot answer."""
        found: dict[str, ChartSource] = {}
        problems: list[Problem] = []
        for i, chart in enumerate(spec.charts):
            if not needs_source(chart):
                continue
            where = f"spec.charts[{i}]"
            secrets: dict[str, SecretData | None] = {"credentials": None, "ca": None}
            wanted = {
                "credentials": chart.credentials.secret_name if chart.credentials else None,
                "ca": chart.ca_secret_name,
            }
            fields = {"credentials": "credentials.secretName", "ca": "caSecretName"}
            for role, name in wanted.items():
                if name is None:
                    continue
                try:
                    secrets[role] = await asyncio.to_thread(
                        self._secret, namespace, name, service_account
                    )
                except (Missing, ValueError) as error:
                    problems.append(Problem(f"{where}.{fields[role]}", str(error)))
            if any(wanted[r] and secrets[r] is None for r in wanted):
                continue
            try:
                found[chart.name] = chart_source(
                    chart, namespace, secrets["credentials"], secrets["ca"], where=where
                )
            except SpecError as error:
                problems += error.problems
        if problems:
            raise SpecError(problems)
        return found

    def _secret(self, namespace: str, name: str, service_account: str | None) -> SecretData:
        body = read_object(self._core, "Secret", namespace, name, service_account)
        metadata = body.get("metadata") or {}
        return SecretData(
            name=name,
            type=str(body.get("type") or "Opaque"),
            data=decode_data(body.get("data")),
            uid=str(metadata.get("uid") or ""),
            resource_version=str(metadata.get("resourceVersion") or ""),
        )
