"""Manifest facts parse only the documents that can hold one (`fact_documents`).

A release of 400 ConfigMaps beside nothing that runs cost the worker 85 ms of YAML parsing
per read (the GPU fit warning's and the add-on probe's); its facts are empty either way.
What is skipped must never hide a fact: these compare with a parse of every document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from herd.addons import images
from herd.addons.images import fact_documents, manifest_facts
from herd.plan import yamlsafe

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      containers:
        - {name: web, image: nginx:1.25, resources: {limits: {nvidia.com/gpu: 2}}}
"""


def configmap(i: int) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c-{i}\ndata:\n  index: '{i}'\n"


def every_document(manifest: str, namespace: str) -> images.ManifestFacts:
    """The facts as a parse of every document finds them (before the skip)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(images, "fact_documents", lambda text: text)
        return manifest_facts(manifest, namespace)


def test_configmaps_are_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = "".join(f"---\n# Source: slow/templates/c.yaml\n{configmap(i)}" for i in range(400))
    manifest += "---\n" + DEPLOYMENT
    parsed: list[str] = []
    real = yamlsafe.load_all

    def recording(text: str, *args: Any) -> Iterator[Any]:
        parsed.append(text)
        return real(text, *args)

    monkeypatch.setattr(yamlsafe, "load_all", recording)
    found = manifest_facts(manifest, "apps")
    assert parsed == ["---\n" + DEPLOYMENT]
    assert found.images == {"docker.io/library/nginx:1.25"} and found.gpus.total == 2
    assert [w.name for w in found.workloads] == ["web"]


SPELLINGS = {
    "escaped key": 'kind: Pod\nmetadata: {name: p}\nspec:\n  "c\\x6fntainers": [{image: a:1}]\n',
    "escaped kind": 'kind: "Deploym\\u0065nt"\nmetadata: {name: d}\nspec: {}\n',
    "alias key": (
        "kind: Pod\nmetadata: {name: p}\nx: &k initContainers\nspec: {*k : [{image: b}]}\n"
    ),
    "no start marker": DEPLOYMENT,
    "end marker then bare": configmap(1) + "...\n" + DEPLOYMENT,
    "skipped, then an end marker": configmap(1) + "---\n" + configmap(2) + "...\n" + DEPLOYMENT,
    "end marker, then a start": configmap(1) + "...\n---\n" + DEPLOYMENT,
    "marker with comment": "--- # web\n" + DEPLOYMENT + "--- \n" + configmap(2),
    "marker glued to text is no marker": configmap(3) + "---x: 1\n" + DEPLOYMENT,
    "block scalar": "kind: ConfigMap\ndata:\n  f: |\n    containers:\n---\n" + DEPLOYMENT,
    "crlf": (configmap(4) + "---\n" + DEPLOYMENT).replace("\n", "\r\n"),
    # Line breaks YAML knows and a regex's ^ does not: the marker after them is one to the
    # parser only, so the two documents stay one chunk (kept or dropped together).
    "lone cr": configmap(5) + "x: 1\r---\r" + DEPLOYMENT,
    "next line": configmap(6) + "x: 1\x85---\n" + DEPLOYMENT,
    "line separator": configmap(7) + "x: 1\u2028--- \u2029" + DEPLOYMENT,
    "directive after a line separator": "a: 1\u2028...\u2028%TAG !e! tag:x,2000:\n---\n"
    + DEPLOYMENT,
    "directive": "%YAML 1.1\n---\n" + DEPLOYMENT,
    "tag directive": "%TAG !e! tag:yaml.org,2002:\n--- !e!map\n" + DEPLOYMENT,
}


@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_the_facts_are_those_of_every_document(name: str) -> None:
    manifest = SPELLINGS[name]
    assert manifest_facts(manifest, "apps") == every_document(manifest, "apps")


def test_escapes_and_aliases_are_kept() -> None:
    assert manifest_facts(SPELLINGS["escaped key"], "a").images == {"docker.io/library/a:1"}
    assert [w.kind for w in manifest_facts(SPELLINGS["escaped kind"], "a").workloads] == [
        "Deployment"
    ]
    assert manifest_facts(SPELLINGS["alias key"], "a").images == {"docker.io/library/b:latest"}


def test_a_directive_keeps_every_document() -> None:
    manifest = "%YAML 1.1\n---\n" + configmap(0) + "---\n" + DEPLOYMENT
    assert fact_documents(manifest) == manifest


def test_the_bounds_still_hold() -> None:
    many = "---\na: 1\n" * (yamlsafe.DEFAULT_LIMITS.documents + 1) + "---\n" + DEPLOYMENT
    assert manifest_facts(many, "apps") == images.ManifestFacts(frozenset(), ())
    with pytest.raises(yamlsafe.YamlLimitError):
        fact_documents(" " * (yamlsafe.DEFAULT_LIMITS.bytes + 1))
