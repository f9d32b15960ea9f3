"""`herd apply`, `plan`, `delete` and `status`: the operator's engine, run from a pipeline.

Each command checks its input first (the Stack file, the cluster options, the kubeconfig
files exist) and exits 2 before any helm call when something is wrong. It then builds
what the operator builds — an `Inventory` (here of kubeconfig files), a `HelmEnvironment`
and an `Engine` — and calls the same engine method the operator calls: `apply`,
`preview`, `delete`. Status reads helm's release labels with `ClusterHelm.observe`, as
the rollout does. Rendering and exit codes live in `herd.cli.render`, live progress in
`herd.cli.progress`.

`values.from` sources are ConfigMaps/Secrets in a cluster; the CLI reads them with the
operator's reader from the cluster given as `--values-kubeconfig` (so are the Secrets of
private chart sources, `charts[].credentials` and `caSecretName`: `herd.kube.chart_secrets`).
Without it, a Stack whose charts need such values or Secrets is invalid input (the CLI
never deploys a chart silently without values the Stack asks for).

Add-ons (`security` / `observability: enabled`) come from `--addons FILE`, the operator's
add-on ConfigMap and Secret as a file (`herd.cli.addons`); without it such a Stack is
invalid input. The Secret's values never appear in anything the CLI prints.

Callers: `herd.cli.commands` (which registers the commands), `herd.cli.main`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client

from herd.addons.catalog import AddonCatalog
from herd.api.v1 import Stack, StackSpec
from herd.cli import addons as addon_file
from herd.cli import progress as live
from herd.cli import render, stages, tables
from herd.cli.cluster_options import OPTIONS_DEST, parse_cluster_options
from herd.cli.constants import EXIT_FAILED, EXIT_INVALID
from herd.cli.documents import load
from herd.clusters.files import ClusterConfigError, FileCluster, FileSource
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.engine.wiring import build_engine
from herd.errors import PermanentError, Problem, SpecError, TransientError
from herd.helm.client import ClusterHelm
from herd.helm.environment import HelmDialect, HelmEnvironment, version_of
from herd.helm.failures import HelmFailure
from herd.kube.client import api_client_from_kubeconfig
from herd.kube.lastgood import DownstreamLastGood
from herd.kube.owned import DownstreamOwnership
from herd.plan.chart_sources import ChartSource, unread_sources
from herd.plan.clusters import Cluster, ClusterUnavailable
from herd.plan.desired import SourceKey
from herd.plan.drift import ReleaseDrift
from herd.plan.releases import ObservedRelease, ReleaseKey, Values, owner_label
from herd.plan.results import ReleaseResult, State
from herd.rollout.drift import status_drift
from herd.rollout.gates import DEFAULT_LIMITS, Limits


class InvalidInput(PermanentError):
    """Bad arguments or an invalid Stack: exit 2, nothing touched. `lines` say why."""

    def __init__(self, *lines: str) -> None:
        self.lines = lines
        super().__init__("; ".join(lines))


# -- input ---------------------------------------------------------------------------------


def load_stack(path: Path) -> Stack:
    """The one valid Stack in `path` (schema and graph checked, as `herd validate` does)."""
    documents = load([path])
    if not documents:
        raise InvalidInput(f"{path}: no Stack document found")
    if len(documents) > 1:
        raise InvalidInput(f"{path}: {len(documents)} documents; give one Stack per run")
    (document,) = documents
    if document.problems:
        raise InvalidInput(f"{document.label} is invalid:", *(f"  {p}" for p in document.problems))
    assert document.stack is not None
    if not document.stack.name:
        raise InvalidInput(f"{document.label}: metadata.name is required")
    return document.stack


def file_clusters(args: argparse.Namespace) -> list[FileCluster]:
    """The clusters given on the command line; each kubeconfig file must exist."""
    try:
        clusters = parse_cluster_options(getattr(args, OPTIONS_DEST))
    except ClusterConfigError as error:
        raise InvalidInput(str(error)) from None
    if not clusters:
        raise InvalidInput("no cluster given: use --kubeconfig FILE[=ID] or --clusters FILE")
    missing = [c for c in clusters if not c.path.is_file()]
    if missing:
        raise InvalidInput(
            *(f"cluster {c.id}: kubeconfig file {c.path} not found" for c in missing)
        )
    return clusters


class NoValuesCluster:
    """`values.from` without `--values-kubeconfig`: every required source is a problem."""

    async def read(
        self, namespace: str, spec: StackSpec, *, service_account: str | None = None
    ) -> Mapping[SourceKey, Values]:
        problems = [
            Problem(
                f"spec.charts[{i}].values.from[{k}]",
                f"{source.kind} {namespace}/{source.name} cannot be read: give the cluster "
                "holding it with --values-kubeconfig FILE",
            )
            for i, chart in enumerate(spec.charts)
            for k, source in enumerate(chart.values.from_)
            if not source.optional
        ]
        if problems:
            raise SpecError(problems)
        return {}


class NoSourcesCluster:
    """Private chart sources without `--values-kubeconfig`: a Secret named is a problem."""

    async def read(
        self, namespace: str, spec: StackSpec, *, service_account: str | None = None
    ) -> Mapping[str, ChartSource]:
        return unread_sources(
            namespace, spec, "give the cluster holding it with --values-kubeconfig FILE"
        )


# -- the engine, as the operator builds it ---------------------------------------------------


class Session:
    """Inventory of kubeconfig files, a private helm home and the engine; `close()` removes
    every file it wrote (kubeconfigs split out of multi-context files, helm's home)."""

    def __init__(
        self,
        clusters: Sequence[FileCluster],
        *,
        limits: Limits = DEFAULT_LIMITS,
        values_kubeconfig: Path | None = None,
        addons: AddonCatalog | None = None,
    ) -> None:
        self._api: client.ApiClient | None = None
        if values_kubeconfig is not None:
            try:
                self._api = api_client_from_kubeconfig(values_kubeconfig)
            except Exception as error:
                raise InvalidInput(
                    f"--values-kubeconfig {values_kubeconfig}: not a usable kubeconfig "
                    f"({type(error).__name__})"
                ) from None
        self.limits = limits
        self.redact = addon_file.Redactor.of(addons)
        self.store = KubeconfigStore(None)
        self.env = HelmEnvironment()
        self.inventory, self.engine = build_engine(
            [FileSource(clusters)],
            self.store,
            self.env,
            api=self._api,
            offline=(NoValuesCluster(), NoSourcesCluster()),
            limits=limits,
            addons=addons or addon_file.NoAddons(),
            manager="cli",
            # No management cluster: the ownership record lives in each cluster's
            # herd-system namespace, which only the cluster's admins write.
            ownership=DownstreamOwnership(),
            # So are its last good revisions (`herd rollback`), beside it.
            lastgood=DownstreamLastGood(),
        )

    def close(self) -> None:
        self.store.close()
        self.env.close()
        if self._api is not None:
            self._api.close()  # type: ignore[no-untyped-call]


Body = Callable[[argparse.Namespace, Session, Stack | None], Coroutine[Any, Any, int]]


def run(body: Body, *, needs_stack: bool = True) -> Callable[[argparse.Namespace], int]:
    """A command: check input (exit 2), run `body` on a fresh Session, map the errors."""

    def command(args: argparse.Namespace) -> int:
        _quiet_logs()
        session: Session | None = None
        redact = addon_file.Redactor()
        try:
            filename: Path | None = args.filename
            stack = load_stack(filename) if filename is not None else None
            if needs_stack and stack is None:
                raise InvalidInput("give the Stack file with -f FILE")
            addons = load_addons(getattr(args, "addons", None))
            redact = addon_file.Redactor.of(addons)
            clusters = file_clusters(args)
            session = Session(
                clusters,
                limits=limits_of(args.concurrency),
                values_kubeconfig=getattr(args, "values_kubeconfig", None),
                addons=addons,
            )
            return asyncio.run(body(args, session, stack))
        except InvalidInput as error:
            _error(args, *map(redact.text, error.lines))
            return EXIT_INVALID
        except SpecError as error:
            _error(
                args,
                "the Stack is invalid; nothing was changed:",
                *(redact.text(f"  {p}") for p in error.problems),
            )
            return EXIT_INVALID
        except TransientError as error:
            _error(args, redact.text(f"{error} (retry later)"))
            return EXIT_FAILED
        finally:
            if session is not None:
                session.close()

    return command


def load_addons(path: Path | None) -> AddonCatalog | None:
    """`--addons FILE` parsed as the operator parses its add-on configuration."""
    if path is None:
        return None
    try:
        return addon_file.load(path)
    except addon_file.AddonFileError as error:
        raise InvalidInput(*error.lines) from None


def limits_of(concurrency: int | None) -> Limits:
    """`--concurrency N`: at most N clusters and N helm processes at once."""
    return Limits(clusters=concurrency, helm=concurrency) if concurrency else DEFAULT_LIMITS


def _quiet_logs() -> None:
    """Warnings of Herd's own modules on stderr. The libraries' are silenced: urllib3 logs
    every connection retry, which would tear the live progress and only repeat what the
    release's row says in one line."""
    logging.basicConfig(level=logging.WARNING, format="herd: %(levelname)s: %(message)s")
    for library in ("urllib3", "kubernetes"):
        logging.getLogger(library).setLevel(logging.CRITICAL)


def _error(args: argparse.Namespace, *lines: str) -> None:
    for line in lines:
        print(f"herd {args.command}: {line}" if line[:1] != " " else line, file=sys.stderr)


def emit(
    args: argparse.Namespace,
    document: dict[str, Any],
    table: tables.Grid,
    notes: Sequence[str],
    text: str,
) -> None:
    """The result on stdout: one JSON document, or the table, notes and summary."""
    if args.output == "json":
        print(json.dumps(document, indent=2))
        return
    tables.write_result(sys.stdout, table, notes, text)


# -- commands --------------------------------------------------------------------------------


def helm_line(executable: str) -> str:
    """`herd apply`'s first line: which helm runs, and a warning when it is Helm 3.
    Blocking (`helm version` once per process)."""
    try:
        version = version_of(executable)
    except HelmFailure as failure:
        return f"herd apply: helm {executable}: {failure.message}"
    if HelmDialect.from_version(version).major >= 4:
        return f"herd apply: helm {version} ({executable})"
    return (
        f"herd apply: warning: helm {version} ({executable}) is Helm 3, at the end of its "
        "support, and its --wait polls every 2 s: put Helm 4 on PATH or set HERD_HELM"
    )


async def apply(args: argparse.Namespace, session: Session, stack: Stack | None) -> int:
    assert stack is not None
    if stack.spec.mode == "DryRun":  # the operator's DryRun from CI: a plan, no writes
        _error(args, "spec.mode is DryRun: nothing is applied; this is what apply would do")
        return await plan(args, session, stack)
    progress = live.for_stream(sys.stderr)
    code: int | None = None

    announced: list[str] = []

    def redacted(row: ReleaseResult) -> None:
        if not announced and row.state in (State.DEPLOYING, State.UNINSTALLING):
            # The first line, once helm is about to run (an invalid Stack or a pass with
            # nothing to do starts no helm): `helm version` once, which the dialect reuses.
            announced.append(helm_line(session.env.executable))
            print(announced[0], file=sys.stderr, flush=True)
        progress(session.redact.result(row))

    try:
        if stages.staged(stack, args.stage):
            result, code = await stages.staged_apply(
                session.engine,
                stack,
                redacted,
                force=args.force,
                stage=args.stage,
                approve=args.approve or (),
            )
        else:
            result = await session.engine.apply(stack, redacted, force=args.force)
    finally:
        progress.close()
    result.releases = [session.redact.result(r) for r in result.releases]
    rows = render.release_rows(result)
    text = render.apply_summary(result)
    document = render.release_document(stack, result, rows, text)
    if result.rollout is not None:  # status.rollout's shape: stage, state, message, stages
        document["rollout"] = result.rollout.status.model_dump(by_alias=True, mode="json")
    notes = [*render.skipped_lines(result.skipped), *stages.stage_lines(result.rollout)]
    emit(args, document, render.release_grid(rows), notes, text)
    return render.apply_exit(result) if code is None else code


async def plan(args: argparse.Namespace, session: Session, stack: Stack | None) -> int:
    assert stack is not None
    result, previews = await session.engine.preview(stack, drift=True)
    result = render.with_unreadable(result, result.unreachable)
    previews, stage_notes = stages.plan_stages(session.engine, stack, result, previews, args.stage)
    rows = render.plan_rows(stack, result, previews)
    text = render.plan_summary(result, rows)
    document = render.plan_document(stack, result, rows, text)
    notes = [
        *render.skipped_lines(result.skipped),
        *render.placement_lines(result.placement),
        *stage_notes,
    ]
    emit(args, document, render.plan_grid(rows), notes, text)
    return render.plan_exit(result, rows)


async def delete(args: argparse.Namespace, session: Session, stack: Stack | None) -> int:
    assert stack is not None
    progress = live.for_stream(sys.stderr)
    try:
        result = await session.engine.delete(
            stack.namespace,
            stack.name,
            lambda r: progress(session.redact.result(r)),
            force=args.force,
        )
    finally:
        progress.close()
    result.releases = [session.redact.result(r) for r in result.releases]
    # A cluster that could not be read may still hold releases: say so, and exit 1.
    result = render.with_unreadable(result, result.unreachable)
    rows = render.release_rows(result)
    text = render.delete_summary(result)
    document = render.release_document(stack, result, rows, text)
    emit(args, document, render.release_grid(rows), render.skipped_lines(result.skipped), text)
    return render.delete_exit(result)


async def status(args: argparse.Namespace, session: Session, stack: Stack | None) -> int:
    clusters = await session.inventory.clusters()
    observed, unreachable = await observe(session, clusters)
    owner = owner_label(stack.namespace, stack.name) if stack else None
    rows = render.status_rows(observed, owner)
    if stack is not None:  # its releases' drift, checked now with its spec.drift
        rows = render.with_drift(rows, await _drift(session, stack, clusters, observed))
    text = render.status_summary(rows, len(clusters), unreachable)
    document = render.status_document(rows, unreachable, text)
    notes = [f"cannot read cluster {c}: {reason}" for c, reason in sorted(unreachable.items())]
    emit(args, document, render.status_grid(rows), notes, text)
    return render.status_exit(rows, unreachable)


async def _drift(
    session: Session,
    stack: Stack,
    clusters: Sequence[Cluster],
    observed: Mapping[str, list[ObservedRelease]],
) -> dict[ReleaseKey, ReleaseDrift]:
    owner = owner_label(stack.namespace, stack.name)
    found: dict[ReleaseKey, ReleaseDrift] = {}
    for cluster in clusters:
        mine = [o for o in observed.get(cluster.id, []) if o.owner == owner]
        if mine:
            path = await session.inventory.kubeconfig(cluster)
            found |= await status_drift(stack.spec, cluster.id, path, mine)
    return found


async def observe(
    session: Session, clusters: Sequence[Cluster]
) -> tuple[dict[str, list[ObservedRelease]], dict[str, str]]:
    """Every cluster's helm releases (labels only), clusters in parallel, bounded."""
    slots = asyncio.Semaphore(session.limits.clusters)
    observed: dict[str, list[ObservedRelease]] = {}
    unreachable: dict[str, str] = {}

    async def one(cluster: Cluster) -> None:
        async with slots:
            try:
                path = await session.inventory.kubeconfig(cluster)
            except ClusterUnavailable as error:
                unreachable[cluster.id] = error.reason
                return
            helm = ClusterHelm(session.env, cluster.id, path)
            try:
                observed[cluster.id] = list((await helm.observe()).values())
            except HelmFailure as failure:
                unreachable[cluster.id] = failure.message
            finally:
                helm.close()

    async with asyncio.TaskGroup() as group:
        for cluster in clusters:
            group.create_task(one(cluster))
    return observed, unreachable
