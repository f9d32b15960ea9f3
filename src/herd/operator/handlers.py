"""kopf handlers: translate Kubernetes events into `Stacks` calls, and run the controller.

- startup/cleanup: build and close the `Runtime` (process-wide parts) and the `Stacks`
  (one object per Stack: `herd.operator.stack`), start metrics and the fleet watcher.
- create/update/resume: wake the Stack's keeper (the daemon below).
- daemon: the keeper loop, one per Stack: reconcile, then wait for resync or a signal.
- event: a new `herd.suse.com/approve` (staged rollouts) or `herd.suse.com/reconcile-at`
  (retry held failures) value wakes the Stack's keeper.
- delete: uninstall everything the Stack deployed (the finalizer holds the object until
  that is done); herd's TransientError becomes kopf's TemporaryError, so kopf retries.

Every Stack handler is filtered by shard (`shard_filter`): a controller with `HERD_SHARD`
handles only Stacks labelled `herd.suse.com/shard=<shard>`, one without handles only
Stacks without that label.

`run` (called by `herd operator`) is the process: it waits as a standby until it holds the
shard's Lease (`herd.operator.leader`), runs kopf while it leads, and stops on SIGTERM
without cutting helm short: no new helm operation starts, running ones get
`HERD_SHUTDOWN_SECONDS` to finish, then kopf stops and the Lease is handed over. Losing the
Lease stops the work the same way, within what is left of the Lease, and exits 1 so the
pod restarts as a standby. Once stopping, a watchdog (`herd.operator.shutdown`) ends the
process within `HERD_EXIT_SECONDS` even when a thread hangs. For the whole process, the
event loop's lag is sampled (`herd_event_loop_lag_seconds`) and the work directory is made
again if something removed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import kopf

from herd.api import PLURAL, VERSION
from herd.errors import TransientError
from herd.helm import worker
from herd.helm.environment import kill_running
from herd.helm.workdir import ensure, take_over
from herd.kube.client import api_client_from_kubeconfig, load_apis
from herd.names import APPROVE_ANNOTATION, GROUP, RECONCILE_AT, SHARD_LABEL
from herd.operator import metrics
from herd.operator.config import OperatorConfig
from herd.operator.health import serve_health
from herd.operator.impersonation import keep_bindings
from herd.operator.leader import LeaderElector, identity, lease_name
from herd.operator.runtime import Runtime, open_workdir
from herd.operator.shutdown import Watchdog
from herd.operator.stack import Stacks
from herd.plan.tenancy import Mode

STACKS = (GROUP, VERSION, PLURAL)
EXIT_LOST = 1  # leadership lost: the pod restarts and stands by
SETTLE_SECONDS = 10.0  # after helm is idle: kopf's own stop (final status writes)

logger = logging.getLogger(__name__)


def shard_filter(shard: str) -> dict[str, Any]:
    """kopf's `labels=` filter of a controller's shard ("" = Stacks without the label)."""
    return {SHARD_LABEL: shard or kopf.ABSENT}


def finalizer(shard: str) -> str:
    """Each shard its own finalizer: kopf removes its finalizer from objects its filters
    exclude, so a shared name would let one shard strip another shard's finalizer."""
    return f"{GROUP}/finalizer-{shard}" if shard else f"{GROUP}/finalizer"


def registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """The handlers below, filtered to the controller's shard."""
    found = kopf.OperatorRegistry()
    labels = shard_filter(config.shard)
    # kopf's default registry logs in with the kubernetes client; a new one must be told.
    kopf.on.login(registry=found)(kopf.login_via_client)
    kopf.on.startup(registry=found)(startup)
    kopf.on.cleanup(registry=found)(cleanup)
    for on in (kopf.on.create, kopf.on.update, kopf.on.resume):
        on(*STACKS, labels=labels, registry=found)(changed)
    # Stopping a keeper (Stack deleted, shard relabelled, controller exiting) first waits
    # for it to end its pass: cancelling it would kill its helm processes half-way.
    kopf.daemon(
        *STACKS,
        labels=labels,
        cancellation_backoff=config.shutdown_seconds,
        cancellation_timeout=SETTLE_SECONDS,
        registry=found,
    )(keeper)
    kopf.on.delete(*STACKS, labels=labels, registry=found)(deleted)
    # kopf's create/update diff ignores annotations under its storage prefix (our group),
    # so herd.suse.com/approve and herd.suse.com/reconcile-at are watched raw: a new value
    # wakes the Stack's keeper. The filter lets only a new value through, since kopf logs
    # (and posts as an Event) every handled event, and a status write is an event too. It
    # sees the events without the annotation as well: they forget its value (`_new_value`).
    for annotation in WAKE_ANNOTATIONS:
        kopf.on.event(
            *STACKS,
            id=f"wake-{annotation.split('/')[-1]}",
            param=annotation,
            labels=labels,
            when=_new_value(annotation),
            registry=found,
        )(annotated)
    return found


WAKE_ANNOTATIONS = (APPROVE_ANNOTATION, RECONCILE_AT)


async def startup(settings: kopf.OperatorSettings, memo: Any, logger: Any, **_: Any) -> None:
    config: OperatorConfig = memo["config"]
    settings.persistence.finalizer = finalizer(config.shard)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.INFO
    # Clients, helm home, add-on catalog: blocking work, kept off the event loop.
    runtime = await asyncio.to_thread(Runtime.create, config, memo["workdir"], memo.get("tenure"))
    memo["runtime"] = runtime
    if runtime.journal is not None:  # what an earlier holder's helm left pending
        await runtime.journal.load()
    stacks = memo["stacks"] = Stacks(runtime)
    metrics.serve(config.metrics_port)
    await runtime.check_grants(logger, stacks)  # the baseline, before any Stack's pass
    memo["fleet"] = asyncio.create_task(runtime.watch_fleet(logger, stacks))
    # Impersonation only where grants name a namespace (`herd.operator.impersonation`).
    memo["impersonation"] = asyncio.create_task(keep_bindings(runtime.api, config, logger))
    if config.tenancy is Mode.OPEN:
        logger.warning(
            "HERD_TENANCY=open: every Stack, in any namespace, may deploy anything into every "
            "cluster with its admin credentials; use grants unless one team owns the fleet"
        )
    logger.info(
        "Herd operator started (shard: %s, Rancher namespaces: %s, tenancy: %s)",
        config.shard or "none",
        ",".join(config.rancher_namespaces) or "none",
        config.tenancy.value,
    )


async def cleanup(memo: Any, **_: Any) -> None:
    memo["fleet"].cancel()
    memo["impersonation"].cancel()
    memo["runtime"].close()


async def changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo["stacks"].signal((namespace or "", name))


def _annotation(body: kopf.Body, annotation: str) -> tuple[tuple[str, str], str | None]:
    meta = body.get("metadata") or {}
    key = (meta.get("namespace") or "", meta.get("name") or "")
    return key, (meta.get("annotations") or {}).get(annotation)


def _new_value(annotation: str) -> Callable[..., bool]:
    """The wake handler's filter: True for a value not acted on yet. An event without the
    annotation (the keeper removed the approval it used) forgets the last value, so that
    approving the same stage again wakes the keeper at once, not at its next resync."""

    def new(body: kopf.Body, memo: Any, **_: Any) -> bool:
        stacks = memo.get("stacks")
        key, value = _annotation(body, annotation)
        if stacks is None:
            return False
        if not value:
            stacks.annotation_gone(key, annotation)
            return False
        return bool(stacks.annotation_new(key, annotation, value))

    return new


async def annotated(body: kopf.Body, memo: Any, param: Any = None, **_: Any) -> None:
    stacks = memo.get("stacks")
    if stacks is not None and isinstance(param, str):
        key, value = _annotation(body, param)
        stacks.annotation_seen(key, param, value)


class _StackEvents:
    """`herd.operator.events.Events` through kopf's event poster."""

    def __init__(self, body: kopf.Body) -> None:
        self._body = body

    def normal(self, reason: str, message: str) -> None:
        kopf.info(self._body, reason=reason, message=message)

    def warning(self, reason: str, message: str) -> None:
        kopf.warn(self._body, reason=reason, message=message)


async def keeper(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    await memo["stacks"].keep(body, stopped, logger, _StackEvents(body))


async def deleted(body: kopf.Body, memo: Any, logger: Any, **_: Any) -> None:
    try:
        await memo["stacks"].delete(body, logger)
    except TransientError as error:
        raise kopf.TemporaryError(str(error), delay=error.delay) from None


# -- the process ---------------------------------------------------------------------------


def run(*, namespaces: list[str] | None = None) -> None:
    """Run the controller in this process (blocks); every namespace unless given.

    Raises SystemExit(1) when leadership was lost (the pod restarts as a standby).
    """
    config = OperatorConfig.from_env()
    kopf.configure(log_format=kopf.LogFormat.FULL)  # INFO to stderr, as `kopf run` does
    code = asyncio.run(_main(config, namespaces or []))
    if code:
        raise SystemExit(code)


async def _main(config: OperatorConfig, namespaces: list[str]) -> int:
    workdir = open_workdir(config)  # before any API client writes its key files
    me = identity()
    gone = take_over(workdir, me)  # before any helm runs: every helm inherits its lock
    worker.configure(config.worker_limits())
    api = api_client_from_kubeconfig(None)
    elector = LeaderElector(
        api, config.namespace, lease_name(config.shard), me, config.lease_seconds, gone=gone
    )
    watchdog = Watchdog()
    watchdog.on_exit("stop the check workers", lambda: worker.pool().close())
    watchdog.on_exit("hand the Lease over", elector.release_now)
    watchdog.on_exit("kill running helm", kill_running)  # before the hand-over
    background = [
        asyncio.create_task(metrics.sample_loop_lag(), name="herd loop lag"),
        asyncio.create_task(_keep_workdir(workdir), name="herd work directory"),
        asyncio.create_task(_warm_up(), name="herd warm-up"),
    ]
    health = await serve_health(config.health_port, lambda: elector.leading)
    stopping = asyncio.Event()  # SIGTERM or SIGINT
    _on_signals(stopping)
    try:
        if not await _first(elector.acquire(), stopping.wait()):
            watchdog.arm(config.exit_budget, 0, "signalled while standby")
            logger.info("Stopped while standby")
            return 0
        return await _lead(config, namespaces, elector, stopping, workdir, watchdog)
    finally:
        for task in background:
            task.cancel()
        worker.pool().close()
        if health is not None:
            await health.cleanup()
        api.close()  # type: ignore[no-untyped-call]


async def _warm_up() -> None:
    """While standing by for the Lease: load what the first pass after taking it would
    wait for (the client's API modules, the check workers' fork server and one worker).
    A failure only leaves that to the first pass."""
    try:
        await asyncio.to_thread(load_apis)
        await worker.pool().warmed()
    except Exception as error:  # the first pass starts them itself, and says why not
        logger.info("Warm-up skipped: %s", error)


async def _keep_workdir(workdir: Path, interval: float = 1.0) -> None:
    """Make the work directory again whenever something removed it (`herd.helm.workdir.ensure`)."""
    while True:
        try:
            await asyncio.to_thread(ensure, workdir)
        except OSError as error:
            logger.warning("Cannot recreate work directory %s: %s", workdir, error.strerror)
        await asyncio.sleep(interval)


async def _lead(  # noqa: PLR0917 (the process's parts, handed down once)
    config: OperatorConfig,
    namespaces: list[str],
    elector: LeaderElector,
    stopping: asyncio.Event,
    workdir: Path,
    watchdog: Watchdog,
) -> int:
    memo = kopf.Memo(config=config, workdir=workdir, tenure=elector.tenure())
    elector.fence(kill_running)

    def paused(pause: bool) -> None:
        stacks: Stacks | None = memo.get("stacks")
        if stacks is not None:
            stacks.pause(pause)

    renewal = asyncio.create_task(elector.keep(paused), name="herd lease renewal")
    signalled = asyncio.create_task(stopping.wait(), name="herd signal waiter")
    stop_flag = asyncio.Event()
    ours = asyncio.all_tasks()  # kopf cancels every other task when it exits
    tasks = await kopf.spawn_tasks(
        registry=registry(config),
        memo=memo,
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        stop_flag=stop_flag,
    )
    _on_signals(stopping)  # kopf took SIGTERM/SIGINT; helm must finish before kopf stops
    operator = asyncio.create_task(kopf.run_tasks(tasks, ignored=ours), name="herd kopf")
    try:
        await asyncio.wait({operator, renewal, signalled}, return_when=asyncio.FIRST_COMPLETED)
        lost = renewal.done()
        why = "Lease lost" if lost else "signalled" if signalled.done() else "kopf stopped"
        # Whatever hangs from here on (a thread stuck in a call, a pass that does not end),
        # the process ends in time; one that lost the Lease has nothing left to finish.
        exit_budget = config.lost_exit_budget if lost else config.exit_budget
        watchdog.arm(exit_budget, EXIT_LOST if lost else 0, why)
        if lost:  # another process leads: its journal recovery must find no helm of ours
            logger.warning("Lease lost: killed %d running helm process(es)", kill_running())
        if not operator.done():
            budget = min(config.shutdown_seconds, exit_budget)
            settle = 1.0 if lost else SETTLE_SECONDS
            exit_at = time.monotonic() + exit_budget
            await _stop(memo, stop_flag, operator, budget, settle, exit_at)
    finally:
        renewal.cancel()
        signalled.cancel()
    if lost:
        return EXIT_LOST
    await elector.release()
    if not operator.cancelled() and operator.exception() is not None:
        logger.error("kopf stopped: %s", operator.exception())
        return 1
    return 0


async def _stop(  # noqa: PLR0917 (the stop's parts, from `_lead` only)
    memo: kopf.Memo,
    stop_flag: asyncio.Event,
    operator: asyncio.Task[None],
    budget: float,
    settle: float,
    exit_at: float,
) -> None:
    """Start no new helm work, let running helm finish within `budget`, stop the check
    workers, then stop kopf."""
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        gates = runtime.gates
        gates.drain()
        logger.info("Stopping: no new helm work; waiting up to %.0fs for running helm", budget)
        started = time.monotonic()
        try:
            await asyncio.wait_for(gates.idle(), budget)
            logger.info("Helm is idle after %.1fs", time.monotonic() - started)
        except TimeoutError:
            logger.warning(
                "Helm still running after %.0fs; stopping it (the next leader recovers "
                "those releases as stuck)",
                budget,
            )
    # No check matters once helm may not start: a pass waiting on one (a render check, up
    # to HERD_CHECK_SECONDS) would hold the stop; its check ends now, as not a verdict.
    worker.pool().close()
    stop_flag.set()
    # kopf's stop, then the Lease hand-over, must fit before the watchdog's exit.
    settle = min(settle, max(0.5, exit_at - time.monotonic() - 3.0))
    done, _ = await asyncio.wait({operator}, timeout=settle)
    if not done:
        operator.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await operator


def _on_signals(stopping: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stopping.set)


async def _first(wanted: Coroutine[Any, Any, None], other: Coroutine[Any, Any, Any]) -> bool:
    """Run both; True when `wanted` finished first (the other is cancelled)."""
    first = asyncio.ensure_future(wanted)
    second = asyncio.ensure_future(other)
    try:
        await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (first, second):
            task.cancel()
    if first.done() and not first.cancelled():
        first.result()  # re-raise its error
        return True
    return False
