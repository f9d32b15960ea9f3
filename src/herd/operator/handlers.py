"""kopf handlers: translate Kubernetes events into `Runtime` calls. No logic lives here.

- startup/cleanup: build and close the `Runtime`, start metrics and the fleet watcher.
- create/update/resume: wake the Stack's keeper (the daemon below).
- daemon: the keeper loop, one per Stack: reconcile, then wait for resync or a signal.
- delete: uninstall everything the Stack deployed (the finalizer holds the object until
  that is done); herd's TransientError becomes kopf's TemporaryError, so kopf retries.

Run with `herd operator` (or `python -m herd`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from herd.api import GROUP, PLURAL, VERSION
from herd.errors import TransientError
from herd.operator import metrics
from herd.operator.config import OperatorConfig
from herd.operator.runtime import Runtime

STACKS = (GROUP, VERSION, PLURAL)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, logger: Any, **_: Any) -> None:
    config = OperatorConfig.from_env()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.INFO
    runtime = Runtime.create(config)
    memo["runtime"] = runtime
    metrics.serve(config.metrics_port)
    memo["fleet"] = asyncio.create_task(runtime.watch_fleet(logger))
    logger.info(
        "Herd operator started (Rancher namespaces: %s)",
        ",".join(config.rancher_namespaces) or "none",
    )


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    memo["fleet"].cancel()
    memo["runtime"].close()


@kopf.on.create(*STACKS)
@kopf.on.update(*STACKS)
@kopf.on.resume(*STACKS)
async def changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo["runtime"].signal((namespace or "", name))


class _StackEvents:
    """`herd.operator.runtime.Events` through kopf's event poster."""

    def __init__(self, body: kopf.Body) -> None:
        self._body = body

    def normal(self, reason: str, message: str) -> None:
        kopf.info(self._body, reason=reason, message=message)

    def warning(self, reason: str, message: str) -> None:
        kopf.warn(self._body, reason=reason, message=message)


@kopf.daemon(*STACKS, cancellation_timeout=30.0)
async def keeper(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    await memo["runtime"].keep(body, stopped, logger, _StackEvents(body))


@kopf.on.delete(*STACKS)
async def deleted(body: kopf.Body, memo: Any, logger: Any, **_: Any) -> None:
    try:
        await memo["runtime"].delete(body, logger)
    except TransientError as error:
        raise kopf.TemporaryError(str(error), delay=error.delay) from None


def run(*, namespaces: list[str] | None = None) -> None:
    """Run the operator in this process (blocks); every namespace unless given."""
    config = OperatorConfig.from_env()
    kopf.configure(log_format=kopf.LogFormat.FULL)  # INFO to stderr, as `kopf run` does
    liveness = f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces or (),
            standalone=True,
            liveness_endpoint=liveness,
        )
    )
