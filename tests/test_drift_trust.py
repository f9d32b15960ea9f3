"""Drift correction applies only the manifest Herd wrote (`herd.clusters.drift.check_cluster`
with `herd.plan.ownership.stored_verdict`), against an in-memory API: a release Secret
overwritten or added by a forger is never applied, the row says why, and a genuine
release is still corrected. Before digests were recorded, both forgeries were applied
as admin (a ClusterRoleBinding to cluster-admin)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from benchmarks.drift_bench import SimApi

from herd.clusters.drift import DriftMemory, ReleaseCheck, check_cluster
from herd.plan.drift import CORRECT, Policy, manifest_objects
from herd.plan.ownership import NO_DIGEST, NOT_HERDS, Recorded, manifest_digest
from herd.plan.releases import ReleaseKey
from herd.plan.yamlsafe import YamlLimitError
from herd.rollout.drift import _in_worker

HELM = {"app.kubernetes.io/managed-by": "Helm"}
CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "web", "namespace": "apps", "labels": HELM},
    "data": {"message": "hi"},
}
GRAB = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "grab", "labels": HELM},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"},
    "subjects": [{"kind": "ServiceAccount", "name": "forger", "namespace": "apps"}],
}
GENUINE = yaml.safe_dump(CONFIGMAP)
FORGED = f"{GENUINE}---\n{yaml.safe_dump(GRAB)}"
HERDS = Recorded(1, manifest_digest(GENUINE))


@dataclass
class FakeApi(SimApi):
    """The benchmark's in-memory API (`benchmarks.drift_bench.SimApi`), writes noted."""

    writes: list[str] = field(default_factory=list)

    def call_api(self, method: str, path: str, body: Any, **options: Any) -> Any:
        if method == "PATCH":
            self.writes.append(path)
        return super().call_api(method, path, body, **options)

    def release(self, revision: int, manifest: str) -> None:
        stored = base64.b64encode(gzip.compress(json.dumps({"manifest": manifest}).encode()))
        path = f"/api/v1/namespaces/apps/secrets/sh.helm.release.v1.web.v{revision}"
        self.objects[path] = {"data": {"release": base64.b64encode(stored).decode()}}


def check(stored: list[str], recorded: Recorded | None) -> tuple[FakeApi, tuple[str, ...]]:
    """A release whose ConfigMap was deleted, its revisions `stored` (1, 2, ...), checked
    in Correct mode with `recorded`; the API and the row's problems."""
    api = FakeApi()
    for revision, manifest in enumerate(stored, 1):
        api.release(revision, manifest)
    key = ReleaseKey("c", "apps", "web")
    due = ReleaseCheck(key, len(stored), Policy(CORRECT, 1.0), True, recorded)
    memory, now = DriftMemory(), time.time()
    memory.expect("o", key, 0.0, now)
    sim: Any = api
    found = check_cluster(memory, "o", [due], admin=sim, writer=sim, now=now)
    return api, found[key].problems


CONFIGMAP_PATH = "/api/v1/namespaces/apps/configmaps/web"


def test_the_manifest_herd_wrote_is_corrected() -> None:
    api, problems = check([GENUINE], HERDS)
    assert api.writes == [CONFIGMAP_PATH] and problems == ()


@pytest.mark.parametrize(
    ("stored", "recorded", "why"),
    [
        ([FORGED], HERDS, NOT_HERDS),  # the revision Herd wrote, overwritten
        ([GENUINE, FORGED], HERDS, NOT_HERDS),  # a newer revision added
        ([FORGED], Recorded(1), NO_DIGEST),  # a record from before digests
        ([FORGED], None, NO_DIGEST),  # no record
    ],
)
def test_a_forged_release_is_never_applied(
    stored: list[str], recorded: Recorded | None, why: str
) -> None:
    api, problems = check(stored, recorded)
    assert api.writes == []
    assert problems[0] == why, problems  # (a parsed forgery's ClusterRoleBinding: unlistable)


def test_a_manifest_that_is_not_herds_is_not_even_parsed() -> None:
    api, parsed = FakeApi(), []
    api.release(1, FORGED)

    def parse(manifest: str, namespace: str) -> list[Any]:
        parsed.append(manifest)
        return []

    key = ReleaseKey("c", "apps", "web")
    due = ReleaseCheck(key, 1, Policy(CORRECT, 1.0), True, HERDS)
    memory, now = DriftMemory(), time.time()
    sim: Any = api
    memory.expect("o", key, 0.0, now)
    found = check_cluster(memory, "o", [due], admin=sim, writer=sim, now=now, parse=parse)
    assert parsed == [] and found[key].problems == (NOT_HERDS,)


async def test_the_operator_parses_manifests_in_a_worker_process() -> None:
    """From the check's thread, through the worker pool (the event loop stays free)."""
    parse = _in_worker(asyncio.get_running_loop())
    found = await asyncio.to_thread(parse, GENUINE, "apps")
    assert found == manifest_objects(GENUINE, "apps")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    with pytest.raises(YamlLimitError):
        await asyncio.to_thread(parse, bomb, "apps")
