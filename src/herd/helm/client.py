"""One cluster's helm, for the rollout: `ClusterHelm`.

`ClusterHelm` observes releases, installs/upgrades, renders, uninstalls and recovers stuck
releases in one cluster. Observation reads helm's release Secrets' *labels* only (one
metadata list per cluster), so a pass with nothing to do makes no helm call at all. Every
helm error becomes a `HelmFailure` (`herd.helm.failures`): kind, transient or not, and a
one-line message fit for status and Events (never a kubeconfig or a values file).

helm runs in the process's `HelmEnvironment` (`herd.helm.environment`: private home,
executable, Helm 3/4 dialect); charts come from `herd.helm.chart_cache.ChartCache`.

Callers: `herd.rollout` (and through it the operator and the CLI), `herd.addons`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from herd.helm.environment import HelmCommand, HelmEnvironment, HelmError, ReleaseNotFound
from herd.helm.failures import FailureKind, HelmFailure, classify
from herd.helm.release_secret import ReleaseDataError, read_release, stored_manifest
from herd.kube.client import api_error_summary
from herd.kube.core import CoreApi
from herd.kube.shared import shared_client
from herd.names import LABEL_MANAGER, LABEL_STACK
from herd.plan.ownership import Recorded, manifest_digest
from herd.plan.releases import DesiredRelease, ObservedRelease
from herd.plan.tenancy import Identity

HISTORY_MAX = 10
FIELD_MANAGER = "herd"  # of the namespaces Herd creates for releases
TEST_SUMMARY = 400  # characters of a failed helm test kept for the row
logger = logging.getLogger(__name__)
_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def _failure(error: HelmError, *, pulling: bool = False) -> HelmFailure:
    return classify(error.stderr.decode(errors="replace"), pulling=pulling)


class ClusterHelm:
    """helm for one cluster, through one kubeconfig file kept alive by the caller."""

    def __init__(
        self,
        env: HelmEnvironment,
        cluster: str,
        kubeconfig: Path,
        *,
        identity: Identity | None = None,
    ) -> None:
        self.cluster = cluster
        self._env = env
        self._kubeconfig = kubeconfig
        # --kubeconfig goes before `--`, which ends the flags.
        self._command: HelmCommand | None = None  # with this cluster's cache, on first use
        self._flags = [f"--kubeconfig={kubeconfig}"]
        # A tenant Stack's helm acts as the tenant's ServiceAccount
        # (`herd.plan.tenancy.helm_identity`): the downstream API server enforces the RBAC Herd
        # provisioned from the grants. It may not create namespaces: Herd creates the allowed
        # ones beforehand. A ServiceAccount has no --kube-as-group: the API server adds its
        # groups (and Rancher's proxy would refuse any other group).
        self.identity = identity
        if identity is not None:
            self._flags.append(f"--kube-as-user={identity.user}")
            self._flags += [f"--kube-as-group={group}" for group in identity.groups]
        self._api: CoreApi | None = None
        self._namespaces: set[str] = set()  # made sure of by this object

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig file helm uses (for the release's own API calls, as `identity`)."""
        return self._kubeconfig

    async def _run(
        self, args: list[str], positionals: list[str], stdin: bytes | None = None
    ) -> bytes:
        if self._command is None:
            user = self.identity.user if self.identity else None
            groups = self.identity.groups if self.identity else ()
            cache = await asyncio.to_thread(
                self._env.kube_cache, self.cluster, self._kubeconfig, user, groups
            )
            self._command = self._env.command({"KUBECACHEDIR": str(cache)})
        output: bytes = await self._command.run([*args, *self._flags, "--", *positionals], stdin)
        return output

    async def observe(self) -> dict[tuple[str, str], ObservedRelease]:
        """Latest revision of every helm release in the cluster, with its labels."""
        try:
            items = await asyncio.to_thread(self._release_secrets)
        except Exception as error:
            raise HelmFailure(
                FailureKind.CLUSTER_UNREACHABLE,
                f"cannot list helm releases: {api_error_summary(error)}",
                transient=True,
            ) from None
        return _latest(items)

    async def observe_release(self, namespace: str, name: str) -> ObservedRelease | None:
        """The latest revision of one release, read fresh (its storage Secrets' labels).

        The rollout calls it under the release's lock, just before acting.
        """
        try:
            items = await asyncio.to_thread(self._release_secrets, namespace, name)
        except Exception as error:
            raise HelmFailure(
                FailureKind.CLUSTER_UNREACHABLE,
                f"cannot read helm release {namespace}/{name}: {api_error_summary(error)}",
                transient=True,
            ) from None
        return _latest(items).get((namespace, name))

    async def _ensure_namespace(self, namespace: str) -> None:
        """What `helm --create-namespace` does, done by Herd: the namespace, labelled
        `name=<namespace>` as helm labels it, when it is missing. helm would validate that
        one Namespace against the API server's OpenAPI v3 documents, fetched and parsed by
        every helm process that installs (Helm 3 and 4 alike, --disable-openapi-validation
        or not): about 40% of a fresh install's helm CPU (README "Performance"). Once per
        namespace and object; any failure but "exists" is left to helm, whose install then
        says the namespace is missing."""
        if namespace in self._namespaces:
            return
        labels = {"name": namespace}
        ensure = self._core().ensure_namespace
        try:
            await asyncio.to_thread(
                ensure, namespace, labels, field_manager=FIELD_MANAGER, _request_timeout=30
            )
        except Exception as error:  # forbidden, unreachable: helm's own call says so
            logger.debug("cannot create namespace %s: %s", namespace, api_error_summary(error))
            return
        self._namespaces.add(namespace)

    def _core(self) -> CoreApi:
        """The cluster's API, as the kubeconfig's own identity (made on first use)."""
        if self._api is None:
            self._api = CoreApi(shared_client(self._kubeconfig))
        return self._api

    def _release_secrets(
        self, namespace: str | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        options: dict[str, Any] = {
            "_headers": {"Accept": _METADATA_ONLY},
            "_preload_content": False,
            "_request_timeout": 30,
        }
        if namespace is None:
            response = self._core().list_secret_for_all_namespaces(
                label_selector="owner=helm", **options
            )
        else:
            response = self._core().list_namespaced_secret(
                namespace, label_selector=f"owner=helm,name={name}", **options
            )
        # Metadata only: the release bodies (chart, values) are never downloaded.
        raw: bytes = cast(Any, response).data
        items: list[dict[str, Any]] = json.loads(raw).get("items") or []
        return items

    async def install_or_upgrade(
        self, desired: DesiredRelease, chart_dir: Path, owner: str, manager: str = "operator"
    ) -> Recorded:
        """`helm upgrade --install`; returns the new revision and the digest of the manifest
        helm stored for it, from helm's own output (what drift correction may apply later:
        `herd.plan.ownership.stored_verdict`). Add-ons keep their shared owner.

        The release is labelled with its owner Stack and the Herd face (`manager`) acting.
        """
        chart = desired.chart
        labels = {LABEL_STACK: desired.owner or owner, LABEL_MANAGER: manager, **desired.labels}
        if self.identity is None:  # a tenant's namespaces are made beforehand, by Herd
            await self._ensure_namespace(desired.key.namespace)
        command: list[str] = [
            *("upgrade", "--install", f"--namespace={desired.key.namespace}"),
            *(f"--history-max={HISTORY_MAX}", f"--timeout={chart.timeout}"),
            *("--values=-", "--output=json"),
            "--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()),
            f"--description=Herd Stack {owner}, chart {chart.name}",
        ]
        dialect = await self._env.dialect()
        command += dialect.upgrade(wait=chart.wait, atomic=chart.atomic)
        command += dialect.client_validation
        if chart.crds != "Create":  # Skip; or CreateReplace, which Herd applied itself
            command.append("--skip-crds")
        try:
            output = await self._run(
                command, [desired.key.name, str(chart_dir)], json.dumps(desired.values).encode()
            )
        except HelmError as error:
            raise _failure(error) from None
        release = json.loads(output[output.index(b"{") :])
        manifest = release.get("manifest")
        digest = manifest_digest(manifest) if isinstance(manifest, str) else None
        return Recorded(int(release["version"]), digest)

    async def render(
        self,
        desired: DesiredRelease,
        chart_dir: Path,
        *,
        upgrade: bool = False,
        server: bool = False,
    ) -> str:
        """`helm template` with the release's values (stdin, as install): every object the
        install (`upgrade`: the upgrade, `.Release.IsUpgrade` set) would create, hooks and
        the chart's `crds/` included (unless `crds: Skip`). `server`: `lookup` answered by
        the API server as this helm's identity (a tenant sees what the tenant may read;
        `HelmDialect.template_server`); nothing is written either way."""
        flags = ["--is-upgrade"] if upgrade else []
        if server:
            flags += (await self._env.dialect()).template_server
        command = [
            "template",
            f"--namespace={desired.key.namespace}",
            *([] if desired.chart.crds == "Skip" else ["--include-crds"]),
            *flags,
            "--values=-",
        ]
        try:
            output = await self._run(
                command, [desired.key.name, str(chart_dir)], json.dumps(desired.values).encode()
            )
        except HelmError as error:
            raise _failure(error) from None
        return output.decode(errors="replace")

    async def uninstall(
        self, namespace: str, name: str, timeout: str = "5m", *, no_hooks: bool = False
    ) -> None:
        """`helm uninstall`; `no_hooks`: the stored release's hooks do not run."""
        wait = (await self._env.dialect()).wait
        flags = ["--no-hooks"] if no_hooks else []
        try:
            await self._run(
                ["uninstall", f"--namespace={namespace}", f"--timeout={timeout}", *wait, *flags],
                [name],
            )
        except ReleaseNotFound:
            return
        except HelmError as error:
            raise _failure(error) from None

    async def rollback(self, namespace: str, name: str, revision: int, timeout: str) -> int:
        """`helm rollback` to `revision` (waiting as an upgrade does); returns the new
        revision helm wrote (the latest one after the rollback)."""
        wait = (await self._env.dialect()).wait
        command = ["rollback", f"--namespace={namespace}", f"--timeout={timeout}", *wait]
        command.append(f"--history-max={HISTORY_MAX}")
        try:
            await self._run(command, [name, str(revision)])
        except HelmError as error:
            raise _failure(error) from None
        latest = await self.observe_release(namespace, name)
        return latest.revision if latest is not None else revision

    async def test(self, namespace: str, name: str, timeout: str) -> str | None:
        """`helm test`: the release's test hooks, as this helm's identity (the tenant's for a
        tenant release). None when they passed; else helm's error, on one bounded line."""
        try:
            await self._run(["test", f"--namespace={namespace}", f"--timeout={timeout}"], [name])
        except HelmError as error:
            text = " ".join(error.stderr.decode(errors="replace").split())
            text = text.removeprefix("Error: ") or f"helm test exited {type(error).__name__}"
            return text if len(text) <= TEST_SUMMARY else text[: TEST_SUMMARY - 1] + "…"
        return None

    async def hooks(self, namespace: str, name: str) -> str | None:
        """The hooks of the release's latest stored revision (`helm get hooks`, as this
        helm's identity); None when helm cannot tell."""
        return await self._get("hooks", namespace, name)

    async def manifest(self, namespace: str, name: str, revision: int | None) -> str | None:
        """The rendered manifest of a release revision (None: the latest stored one), read
        from its storage Secret as this helm's identity (`herd.helm.release_secret`: one or
        two API reads, where `helm get manifest` is a process that lists and decodes every
        revision); None, logged, when it cannot be read. An identity with groups, which one
        request header cannot carry, is left to helm."""
        if self.identity is not None and self.identity.groups:
            return await self._get("manifest", namespace, name, revision)
        headers = {"Impersonate-User": self.identity.user} if self.identity else {}
        try:
            release = await asyncio.to_thread(
                read_release, self._core(), namespace, name, revision, headers
            )
        except ReleaseDataError as error:
            logger.info("Cannot read the manifest of release %s/%s: %s", namespace, name, error)
            return None
        except Exception as error:
            summary = api_error_summary(error)
            logger.info("Cannot read the manifest of release %s/%s: %s", namespace, name, summary)
            return None
        return None if release is None else stored_manifest(release)

    async def _get(
        self, what: str, namespace: str, name: str, revision: int | None = None
    ) -> str | None:
        """`helm get <what>` of a release (a revision: `revision`); None, logged, on failure."""
        command = ["get", what, f"--namespace={namespace}"]
        if revision:
            command.append(f"--revision={revision}")
        try:
            output: bytes = await self._run(command, [name])
        except HelmError as error:
            logger.info(
                "Cannot read the %s of release %s/%s: %s",
                what,
                namespace,
                name,
                _failure(error).message,
            )
            return None
        return output.decode(errors="replace")

    async def nodes(self) -> list[dict[str, Any]]:
        """The cluster's Node objects (with the kubeconfig's own identity, never a
        tenant's); raises what the API client raises."""
        return await asyncio.to_thread(self._nodes)

    def _nodes(self) -> list[dict[str, Any]]:
        response = self._core().list_node(_preload_content=False, _request_timeout=30)
        items: list[dict[str, Any]] = json.loads(cast(Any, response).data).get("items") or []
        return items

    async def recover(self, observed: ObservedRelease) -> None:
        """Unstick a pending-* release: roll back an upgrade, remove a half install."""
        if observed.status in ("pending-upgrade", "pending-rollback") and observed.revision > 1:
            wait = (await self._env.dialect()).wait
            try:
                await self._run(
                    ["rollback", f"--namespace={observed.namespace}", *wait], [observed.name]
                )
            except HelmError as error:
                raise _failure(error) from None
        else:
            await self.uninstall(observed.namespace, observed.name)

    def close(self) -> None:
        """Let go of the cluster's client (the process's shared one: `herd.kube.shared`)."""
        self._api = None


def _latest(items: list[dict[str, Any]]) -> dict[tuple[str, str], ObservedRelease]:
    """The latest revision of each release among helm's storage Secrets."""
    latest: dict[tuple[str, str], ObservedRelease] = {}
    for item in items:
        release = _observed(item)
        if release is None:
            continue
        key = (release.namespace, release.name)
        if key not in latest or latest[key].revision < release.revision:
            latest[key] = release
    return latest


def _observed(item: Mapping[str, Any]) -> ObservedRelease | None:
    metadata = item.get("metadata", {})
    labels: dict[str, str] = metadata.get("labels") or {}
    try:
        return ObservedRelease(
            namespace=metadata["namespace"],
            name=labels["name"],
            status=labels.get("status", "unknown"),
            revision=int(labels["version"]),
            labels=labels,
            modified=_modified(labels, metadata.get("creationTimestamp")),
        )
    except (KeyError, ValueError):
        return None  # not a helm release Secret after all


def _modified(labels: Mapping[str, str], created: str | None) -> float | None:
    """helm's last write of a revision: the `modifiedAt` label the Secret driver of helm 3
    and helm 4 sets on every create and update (epoch seconds; `createdAt` where a helm
    version sets it), else the Secret's creation time."""
    stamps = [float(labels[k]) for k in ("modifiedAt", "createdAt") if labels.get(k, "").isdigit()]
    if stamps:
        return max(stamps)
    if created:
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
