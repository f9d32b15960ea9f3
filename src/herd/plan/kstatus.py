"""Whether a Kubernetes object is Current, by kstatus rules. Pure.

The rules of `sigs.k8s.io/cli-utils/pkg/kstatus/status` (`core.go`, `generic.go`), for the
kinds a chart commonly makes: Deployment, StatefulSet, DaemonSet, Job, Pod,
PersistentVolumeClaim, Service, and any object's `status.observedGeneration` and
`Reconciling` / `Stalled` / `Ready` conditions. `manifest_objects` lists the objects of a
rendered manifest (bounded: a stored manifest is data the namespace's writers control).

Callers: `herd.clusters.readiness` (the readiness check of a stage's soak).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import yaml

from herd.plan import yamlsafe

MAX_OBJECTS = 300
# What may go into a request path: a manifest's names are hostile input.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_VERSION = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?v[0-9]+[a-z0-9]{0,20}$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")


class Status(enum.StrEnum):
    CURRENT = "Current"
    IN_PROGRESS = "InProgress"
    FAILED = "Failed"


@dataclass(frozen=True, order=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str  # "" for cluster-scoped objects (or unknown: the reader decides)
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def manifest_objects(manifest: str, namespace: str) -> list[ObjectRef]:
    """The objects of a rendered manifest, at most MAX_OBJECTS; `namespace` is the
    release's, for objects whose template names none."""
    try:
        documents = [d for d in yamlsafe.load_all(manifest) if isinstance(d, dict)]
    except yaml.YAMLError:
        return []
    found: set[ObjectRef] = set()
    for doc in documents:
        metadata = doc.get("metadata")
        kind, version = doc.get("kind"), doc.get("apiVersion")
        if not (isinstance(metadata, dict) and isinstance(kind, str) and isinstance(version, str)):
            continue
        name, where = metadata.get("name"), metadata.get("namespace") or namespace
        if _safe(version, kind, name, where):
            found.add(ObjectRef(version, kind, str(where), str(name)))
    return sorted(found)[:MAX_OBJECTS]


def _safe(version: str, kind: str, name: Any, namespace: Any) -> bool:
    return (
        bool(_VERSION.match(version) and _KIND.match(kind))
        and isinstance(name, str)
        and isinstance(namespace, str)
        and bool(_NAME.match(name) and _NAME.match(namespace))
        and ".." not in name
    )


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    items = status.get("conditions")
    return (
        {str(c.get("type")): c for c in items if isinstance(c, dict)}
        if isinstance(items, list)
        else {}
    )


def _is(conditions: dict[str, dict[str, Any]], kind: str, value: str) -> bool:
    return conditions.get(kind, {}).get("status") == value


def object_status(obj: dict[str, Any]) -> tuple[Status, str]:
    """The object's kstatus and, unless Current, why."""
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    assert isinstance(status, dict)
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    generation = _int(metadata.get("generation"))
    observed = status.get("observedGeneration")
    if isinstance(observed, int) and observed < generation:
        return Status.IN_PROGRESS, "its controller has not observed the latest generation"
    conditions = _conditions(status)
    if _is(conditions, "Stalled", "True"):
        return Status.FAILED, _message(conditions["Stalled"], "Stalled")
    if _is(conditions, "Reconciling", "True"):
        return Status.IN_PROGRESS, _message(conditions["Reconciling"], "Reconciling")
    rule = _RULES.get(str(obj.get("kind")))
    if rule is not None:
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        return rule(spec, status, conditions)
    if _is(conditions, "Ready", "False"):
        return Status.IN_PROGRESS, _message(conditions["Ready"], "not Ready")
    return Status.CURRENT, ""


def _message(condition: dict[str, Any], fallback: str) -> str:
    text = condition.get("message") or condition.get("reason") or fallback
    return str(text)[:200]


Conditions = dict[str, dict[str, Any]]
Result = tuple[Status, str]


def _deployment(spec: dict[str, Any], status: dict[str, Any], cond: Conditions) -> Result:
    wanted = _int(spec.get("replicas"), 1)
    progressing = cond.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Status.FAILED, "progress deadline exceeded"
    for field in ("updatedReplicas", "availableReplicas", "readyReplicas"):
        have = _int(status.get(field))
        if have < wanted:
            return Status.IN_PROGRESS, f"{field}: {have} of {wanted}"
    if _int(status.get("replicas")) > wanted:
        return Status.IN_PROGRESS, "old replicas are pending termination"
    if _is(cond, "Available", "False"):
        return Status.IN_PROGRESS, "not Available"
    return Status.CURRENT, ""


def _statefulset(spec: dict[str, Any], status: dict[str, Any], cond: Conditions) -> Result:
    wanted = _int(spec.get("replicas"), 1)
    for field in ("readyReplicas", "currentReplicas"):
        have = _int(status.get(field))
        if have < wanted:
            return Status.IN_PROGRESS, f"{field}: {have} of {wanted}"
    strategy = spec.get("updateStrategy") if isinstance(spec.get("updateStrategy"), dict) else {}
    on_delete = isinstance(strategy, dict) and strategy.get("type") == "OnDelete"
    if not on_delete and status.get("updateRevision") != status.get("currentRevision"):
        return Status.IN_PROGRESS, "rolling update in progress"
    return Status.CURRENT, ""


def _daemonset(spec: dict[str, Any], status: dict[str, Any], cond: Conditions) -> Result:
    wanted = _int(status.get("desiredNumberScheduled"))
    for field in ("currentNumberScheduled", "updatedNumberScheduled", "numberAvailable"):
        have = _int(status.get(field))
        if have < wanted:
            return Status.IN_PROGRESS, f"{field}: {have} of {wanted}"
    if _int(status.get("numberReady")) < wanted:
        return Status.IN_PROGRESS, f"numberReady: {_int(status.get('numberReady'))} of {wanted}"
    return Status.CURRENT, ""


def _job(spec: dict[str, Any], status: dict[str, Any], cond: Conditions) -> Result:
    if _is(cond, "Failed", "True"):
        return Status.FAILED, _message(cond["Failed"], "Job failed")
    if _is(cond, "Complete", "True") or status.get("startTime"):
        return Status.CURRENT, ""
    return Status.IN_PROGRESS, "Job not started"


def _pod(spec: dict[str, Any], status: dict[str, Any], cond: Conditions) -> Result:
    phase = status.get("phase")
    if phase == "Succeeded":
        return Status.CURRENT, ""
    if phase == "Failed":
        return Status.FAILED, f"Pod failed: {status.get('reason') or 'phase Failed'}"
    for container in status.get("containerStatuses") or []:
        waiting = ((container or {}).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            return Status.FAILED, f"container {container.get('name')} is in CrashLoopBackOff"
    if _is(cond, "PodScheduled", "False") and cond["PodScheduled"].get("reason") == (
        "Unschedulable"
    ):
        return Status.FAILED, "Pod is unschedulable"
    if phase == "Running" and _is(cond, "Ready", "True"):
        return Status.CURRENT, ""
    return Status.IN_PROGRESS, f"Pod {phase or 'Pending'}, not Ready"


def _pvc(spec: dict[str, Any], status: dict[str, Any], cond: Conditions) -> Result:
    if status.get("phase") == "Bound":
        return Status.CURRENT, ""
    return Status.IN_PROGRESS, f"PVC {status.get('phase') or 'Pending'}, not Bound"


def _service(spec: dict[str, Any], status: dict[str, Any], cond: Conditions) -> Result:
    if spec.get("type") != "LoadBalancer":
        return Status.CURRENT, ""
    ingress = (status.get("loadBalancer") or {}).get("ingress")
    if ingress:
        return Status.CURRENT, ""
    return Status.IN_PROGRESS, "LoadBalancer has no ingress yet"


_RULES = {
    "Deployment": _deployment,
    "StatefulSet": _statefulset,
    "DaemonSet": _daemonset,
    "Job": _job,
    "Pod": _pod,
    "PersistentVolumeClaim": _pvc,
    "Service": _service,
}
