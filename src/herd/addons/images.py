"""What a release runs, read from its rendered manifest: images, workloads, GPUs.

`manifest_facts` (pure) parses a stored release's manifest (what `helm get manifest`
prints), only the documents that can hold a fact (`fact_documents`: a release of 400
ConfigMaps parses nothing); `bounded_manifest_facts` runs it in helm's worker pool (its
callers' manifests are namespace writers' data: bounded, and off the event loop); `normalize`
writes an image reference the way a container runtime resolves it, so the images a
chart names (`nginx:1.25`) match what NeuVector reports (`docker.io/library/nginx:1.25`).
`gpus` is the `nvidia.com/gpu` demand (`herd.addons.gpu.demand`). Callers: `herd.addons.probe`
(images for the scan, workloads for the agent's readiness, GPUs for the rows) and
`herd.addons.gpu.fit` (the early fit warning).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from herd.addons.gpu.demand import GpuDemand, gpu_demand
from herd.helm import worker
from herd.plan import yamlsafe

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
# What a document must spell for a fact to come from it: a container list key (they all
# end in "ontainers"), a workload kind, or a backslash (a double-quoted escape can spell
# either without its letters). Aliases cannot reach across documents, and a key folded
# over lines gains a space, so a document without any of these yields no fact.
_NEEDLES = ("ontainers", *sorted(WORKLOAD_KINDS), "\\")
# A line starting "---" or "..." then a blank or the end: a document boundary wherever it
# stands (YAML forbids such a line inside any scalar); a %directive line turns the skip off.
_BOUNDARY = re.compile(r"^(?:---|\.\.\.)(?=[ \t\r\n]|\Z)", re.MULTILINE)
_DIRECTIVE = re.compile(r"^%", re.MULTILINE)
_DEFAULT_REGISTRY = "docker.io"


@dataclass(frozen=True, order=True)
class Workload:
    """A long-running workload object a release created."""

    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class ManifestFacts:
    images: frozenset[str]  # normalized references
    workloads: tuple[Workload, ...]
    gpus: GpuDemand = field(default_factory=GpuDemand)


def manifest_facts(manifest: str, namespace: str) -> ManifestFacts:
    """Images (normalized) and workloads in a rendered manifest; `namespace` is the
    release's, used for objects whose template does not name one."""
    images: set[str] = set()
    workloads: list[Workload] = []
    try:
        kept = fact_documents(manifest)
        documents = [d for d in yamlsafe.load_all(kept) if isinstance(d, dict)]
    except yaml.YAMLError:
        return ManifestFacts(frozenset(), ())
    for doc in documents:
        images.update(normalize(image) for image in _images(doc))
        kind, metadata = doc.get("kind"), doc.get("metadata") or {}
        if kind in WORKLOAD_KINDS and isinstance(metadata, dict) and metadata.get("name"):
            workloads.append(
                Workload(str(kind), str(metadata.get("namespace") or namespace), metadata["name"])
            )
    gpus = gpu_demand(documents, namespace)
    return ManifestFacts(frozenset(images), tuple(sorted(workloads)), gpus)


def fact_documents(manifest: str) -> str:
    """The documents of `manifest` that can hold a fact (`_NEEDLES`), in order, split at
    the boundaries the YAML parser sees too; the others (a chart's ConfigMaps, Services,
    CRDs without pod templates) are never parsed. Within `yamlsafe`'s bounds: more bytes
    or documents than it allows raise its `YamlLimitError`, as parsing them all would."""
    limits = yamlsafe.DEFAULT_LIMITS
    if len(manifest) > limits.bytes:
        raise yamlsafe.YamlLimitError(f"more than {limits.bytes} bytes of YAML")
    if _DIRECTIVE.search(manifest):
        return manifest  # a %TAG may name what a later document's tags mean: parse all
    starts = [0, *(m.start() for m in _BOUNDARY.finditer(manifest) if m.start()), len(manifest)]
    if len(starts) - 2 > limits.documents:
        raise yamlsafe.YamlLimitError(f"more than {limits.documents} YAML documents")
    chunks = (manifest[a:b] for a, b in itertools.pairwise(starts))
    return "".join(c for c in chunks if any(needle in c for needle in _NEEDLES))


async def bounded_manifest_facts(manifest: str, namespace: str) -> ManifestFacts:
    """`manifest_facts` in the worker pool, bounded in time and memory as a render check
    is: a stored manifest is data whoever writes the release's namespace controls, and
    parsing it on the event loop would stall the controller. No facts when the worker
    refuses it."""
    try:
        return await worker.pool().run("a release manifest", manifest_facts, manifest, namespace)
    except worker.WorkerError:
        return ManifestFacts(frozenset(), ())


def _images(node: Any) -> Iterator[str]:
    """Every `image` of every container list anywhere in an object (pod templates of
    Deployments, Jobs, CronJobs, and custom resources that embed a pod spec)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _CONTAINER_LISTS and isinstance(value, list):
                for container in value:
                    if isinstance(container, dict) and isinstance(container.get("image"), str):
                        yield container["image"]
            else:
                yield from _images(value)
    elif isinstance(node, list):
        for item in node:
            yield from _images(item)


def normalize(image: str) -> str:
    """`registry/path:tag` (or `@digest`) with Docker's defaults filled in.

    `nginx` → `docker.io/library/nginx:latest`; `quay.io/x/y:1` stays; a digest is kept
    and no tag is invented next to it.
    """
    reference = image.strip()
    name, digest = reference.split("@", 1) if "@" in reference else (reference, "")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = _DEFAULT_REGISTRY, name
    if registry == "index.docker.io":
        registry = _DEFAULT_REGISTRY
    last = path.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        path += ":latest"
    if registry == _DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    return f"{registry}/{path}" + (f"@{digest}" if digest else "")
