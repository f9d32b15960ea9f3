"""When each release's pods became Ready, seen by watching the downstream API servers.

Callers: `benchmarks/rollout_bench.py`. One thread per cluster lists pods (to learn the
resource version), then watches from there, so every event it records happened after
`PodWatch` was entered. A pod's Ready time is when the watch first saw it Ready (wall
clock, the same clock as Herd's `ReleaseResult.started`); a release's is its last pod's.
Pods belong to a release by the chart's `app.kubernetes.io/instance` label.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import kubernetes

INSTANCE = "app.kubernetes.io/instance"
ReleaseId = tuple[str, str, str]  # cluster, namespace, release


def _ready(pod: Any) -> bool:
    conditions = (pod.status and pod.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


class PodWatch:
    """Pods' first-seen-Ready times on several clusters, while the context is open."""

    def __init__(self, kubeconfigs: Mapping[str, Path]) -> None:
        self._kubeconfigs = dict(kubeconfigs)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ready: dict[ReleaseId, dict[str, float]] = {}  # release -> pod -> Ready at
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> PodWatch:
        started = [threading.Event() for _ in self._kubeconfigs]
        for (cluster, kubeconfig), watching in zip(self._kubeconfigs.items(), started, strict=True):
            thread = threading.Thread(
                target=self._watch, args=(cluster, kubeconfig, watching), daemon=True
            )
            thread.start()
            self._threads.append(thread)
        for watching in started:
            if not watching.wait(30):
                raise RuntimeError("pod watch did not start in 30 s")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def ready_at(self, release: ReleaseId) -> float | None:
        """When the release's last pod became Ready (epoch seconds); None: no Ready pod."""
        with self._lock:
            pods = self._ready.get(release)
            return max(pods.values()) if pods else None

    def _watch(self, cluster: str, kubeconfig: Path, watching: threading.Event) -> None:
        api = kubernetes.client.CoreV1Api(
            kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        )
        version = api.list_pod_for_all_namespaces(limit=1).metadata.resource_version
        watching.set()
        while not self._stop.is_set():
            stream = kubernetes.watch.Watch().stream(
                api.list_pod_for_all_namespaces,
                resource_version=version,
                timeout_seconds=2,
            )
            for event in stream:
                pod = event["object"]
                version = pod.metadata.resource_version
                if event["type"] in ("ADDED", "MODIFIED") and _ready(pod):
                    self._record(cluster, pod, time.time())
                if self._stop.is_set():
                    break
        api.api_client.close()

    def _record(self, cluster: str, pod: Any, at: float) -> None:
        release = (pod.metadata.labels or {}).get(INSTANCE)
        if release is None:
            return
        with self._lock:
            pods = self._ready.setdefault((cluster, pod.metadata.namespace, release), {})
            pods.setdefault(pod.metadata.name, at)
