"""What a Stack's namespace was granted, and every decision taken from it. Pure.

`Grants` is the union of the `ClusterGrant`s naming one Stack namespace. The decisions are
plain functions of it, table-tested in `tests/test_tenancy.py`:

- `cluster_granted` / `granted_clusters`: may the Stack touch this cluster (same id / name /
  label semantics as `herd.plan.targets`)? A cluster that is not granted is left untouched
  and reported with the reason `NOT_GRANTED`.
- `namespace_allowed`: may a release (or one of its objects) live in this downstream
  namespace (`targetNamespaces` globs, fnmatch semantics)? Never `IDENTITY_NAMESPACE` nor an
  add-on namespace, whatever the globs say (`reserved_reason`).
- `addons_allowed`, `cluster_scoped_allowed`: the two switches of a grant.
- `spec_problems`: the spec-level checks, as `Problem`s naming the field and the grants.
- the render check of one release's manifest is `herd.plan.render_check`.
- `helm_identity`: who helm acts as in a downstream cluster: the tenant's ServiceAccount
  `system:serviceaccount:herd-tenants:tenant-<namespace>` (`herd.clusters.tenant_rbac`
  provisions it and its RBAC there). `addon_release`: which of a Stack's own releases are
  Herd's add-on releases, deployed with the kubeconfig's identity instead.

Stacks in the controller's own namespace (`HERD_NAMESPACE`) are admin Stacks and need no grant;
`open` mode (`HERD_TENANCY=open`) grants everything to everyone. Both give an unrestricted
`Grants`, for which every check passes and helm keeps the kubeconfig's identity.

Grants for one namespace add up, and per cluster: `Grants.on_cluster` keeps the grants that
cover that cluster, so a namespace granted on the staging clusters by one grant is not
granted on the production clusters of another. Callers: the engine (spec checks before any
helm call, render check per release and cluster) and the operator (which lists the grants).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any

from herd.api import ChartSpec, SkippedCluster, StackSpec, Targets, Toggle
from herd.api.grants import ClusterGrant, ClusterGrantSpec, parse_grant
from herd.errors import Problem, SpecError
from herd.plan.chart_sources import secret_names
from herd.plan.clusters import Cluster
from herd.plan.targets import targets_match

NOT_GRANTED = "NotGranted"
"""Row state and Stack reason for a cluster (or a whole Stack) no grant covers."""

IDENTITY_NAMESPACE = "herd-tenants"
"""The downstream namespace of the tenants' ServiceAccounts. No tenant may use it: whoever may
create tokens or pods there can act as every tenant."""
SERVICE_ACCOUNT_PREFIX = "tenant-"
RECORDS_NAMESPACE = "herd-system"
"""The downstream namespace of the CLI's ownership records (`herd.kube.owned`). No tenant
may use it: a tenant with rights there could forge the records an admin's `herd apply` trusts."""


class Mode(enum.StrEnum):
    """`HERD_TENANCY`: `grants` (default) bounds every non-admin Stack; `open` bounds nobody."""

    GRANTS = "grants"
    OPEN = "open"


@dataclass(frozen=True)
class Grants:
    """The grants that apply to the Stacks of one namespace.

    `unrestricted` is true for the admin namespace and in open mode; `grants` then is empty
    and every check passes.
    """

    namespace: str
    grants: tuple[tuple[str, ClusterGrantSpec], ...] = ()
    unrestricted: bool = False
    admin: bool = False  # the controller's own namespace: reads values.from as the controller
    # Downstream namespaces of the add-ons (NeuVector, the observability agent, Herd's
    # dashboards beside it): only Herd's add-on releases go there, never a tenant's charts.
    addon_namespaces: frozenset[str] = frozenset()

    @property
    def names(self) -> list[str]:
        return sorted(name for name, _ in self.grants)

    def describe(self) -> str:
        """The grants, as error messages name them."""
        if self.unrestricted:
            return f"namespace {self.namespace} is unrestricted"
        if not self.grants:
            return f"no ClusterGrant names namespace {self.namespace}"
        label = "ClusterGrant" if len(self.grants) == 1 else "ClusterGrants"
        return f"{label} {', '.join(self.names)} of namespace {self.namespace}"

    def on_cluster(self, cluster: Cluster) -> Grants:
        """Only the grants that cover `cluster`: what the Stack may do there."""
        if self.unrestricted:
            return self
        kept = tuple((n, s) for n, s in self.grants if _covers(s, cluster))
        return replace(self, grants=kept)

    def _specs(self) -> Iterator[ClusterGrantSpec]:
        return (spec for _, spec in self.grants)


def grants_for(
    namespace: str,
    grants: Iterable[ClusterGrant],
    *,
    admin_namespace: str,
    mode: Mode = Mode.GRANTS,
    addon_namespaces: Iterable[str] = (),
) -> Grants:
    """The union of `grants` that name `namespace` (all when it is the admin namespace or open).

    `addon_namespaces`: where the add-on releases go downstream (`AddonCatalog.namespaces`).
    """
    if namespace == admin_namespace:
        return Grants(namespace, unrestricted=True, admin=True)
    if mode is Mode.OPEN:
        return Grants(namespace, unrestricted=True)
    mine = sorted(
        ((grant.name, grant.spec) for grant in grants if namespace in grant.spec.namespaces),
        key=lambda pair: pair[0],
    )
    return Grants(namespace, tuple(mine), addon_namespaces=frozenset(addon_namespaces))


def parse_grants(bodies: Iterable[Mapping[str, Any]]) -> tuple[list[ClusterGrant], list[str]]:
    """ClusterGrant bodies as the API server lists them: the valid grants, and one message per
    invalid one (it grants nothing: a broken grant fails closed). Messages name the grant and
    the field, for a log line or an Event on the grant.
    """
    grants: list[ClusterGrant] = []
    invalid: list[str] = []
    for body in bodies:
        try:
            grants.append(parse_grant(body))
        except SpecError as error:
            name = (body.get("metadata") or {}).get("name", "?")
            invalid.append(f"ClusterGrant {name} grants nothing: {error}")
    return grants, invalid


def affected_namespaces(*bodies: Mapping[str, Any] | None) -> set[str]:
    """Stack namespaces whose grants a change of these bodies (old, new) touches."""
    found: set[str] = set()
    for body in bodies:
        namespaces = ((body or {}).get("spec") or {}).get("namespaces") or []
        found.update(str(ns) for ns in namespaces if isinstance(ns, str))
    return found


def _covers(spec: ClusterGrantSpec, cluster: Cluster) -> bool:
    clusters = spec.clusters
    return targets_match(
        Targets(cluster_ids=clusters.cluster_ids, selector=clusters.selector), cluster
    )


def cluster_granted(grants: Grants, cluster: Cluster) -> bool:
    """True when some grant covers the cluster by id, by name or by its labels now."""
    return grants.unrestricted or any(_covers(spec, cluster) for spec in grants._specs())


def namespace_allowed(grants: Grants, namespace: str) -> bool:
    """True when a `targetNamespaces` glob of some grant matches the downstream namespace,
    and the namespace is not reserved (`reserved_reason`)."""
    if grants.unrestricted:
        return True
    return not reserved_reason(grants, namespace) and any(
        fnmatchcase(namespace, pattern)
        for spec in grants._specs()
        for pattern in spec.target_namespaces
    )


def reserved_reason(grants: Grants, namespace: str) -> str:
    """Why no tenant may use this downstream namespace, whatever its grants' globs say; "".

    - `IDENTITY_NAMESPACE` holds every tenant's ServiceAccount: a tenant with rights there
      could mint a token for another tenant's.
    - `RECORDS_NAMESPACE` holds the CLI's ownership records downstream.
    - The add-on namespaces hold the shared add-ons (and their Secrets: the agent's API
      key) and Herd's dashboards; Herd deploys those with the kubeconfig's identity, so a
      tenant needs no rights there, even with `addons: true`, and gets none.
    """
    if grants.unrestricted:
        return ""
    if namespace == IDENTITY_NAMESPACE:
        return f"namespace {namespace!r} holds Herd's tenant identities"
    if namespace == RECORDS_NAMESPACE:
        return f"namespace {namespace!r} holds Herd's ownership records"
    if namespace in grants.addon_namespaces:
        return f"namespace {namespace!r} is an add-on namespace, where only Herd's add-ons go"
    return ""


def addons_allowed(grants: Grants) -> bool:
    """True when the Stacks may turn on spec.security / spec.observability."""
    return grants.unrestricted or any(spec.addons for spec in grants._specs())


def cluster_scoped_allowed(grants: Grants) -> bool:
    """True when the charts may create cluster-scoped objects (CRDs, ClusterRoles, ...)."""
    return grants.unrestricted or any(spec.cluster_scoped_resources for spec in grants._specs())


def granted_clusters(
    grants: Grants, clusters: Sequence[Cluster]
) -> tuple[list[Cluster], list[SkippedCluster]]:
    """Split resolved target clusters into the granted ones and `NotGranted` skips (in order)."""
    kept: list[Cluster] = []
    skipped: list[SkippedCluster] = []
    for cluster in clusters:
        if cluster_granted(grants, cluster):
            kept.append(cluster)
        else:
            skipped.append(
                SkippedCluster(
                    cluster_id=cluster.id,
                    reason=f"not granted ({grants.describe()})",
                )
            )
    return kept, skipped


def addon_namespace_problems(grants: Grants | None, charts: Sequence[ChartSpec]) -> list[Problem]:
    """Charts of the Stack's own that an add-on brings (Herd's dashboards and alerts, beside
    the agent) need `addons: true`, like the add-on itself; `targetNamespaces` do not matter
    (`addon_release`). Each refusal names the add-on field."""
    if grants is None or grants.unrestricted:
        return []
    problems = []
    for chart in charts:
        if not addons_allowed(grants):
            why = f"need a ClusterGrant with addons: true ({grants.describe()})"
        elif chart.namespace not in grants.addon_namespaces:
            # Only when the add-on configuration changed between reading the grants and
            # planning: the next pass reads both again.
            why = "go to a namespace Herd did not know as an add-on namespace"
        else:
            continue
        problems.append(
            Problem(
                "spec.observability",
                f"Herd's dashboards and alerts (release {chart.release}, namespace "
                f"{chart.namespace!r}) {why}",
            )
        )
    return problems


def addon_release(grants: Grants, namespace: str) -> bool:
    """True when a bounded Stack's own release in `namespace` is an add-on release of Herd's
    (its dashboards and alerts), deployed with the kubeconfig's identity, not the tenant's.

    Only Herd's charts can be there: `namespace_allowed` refuses the add-on namespaces to the
    tenant's own charts, so this never lets a tenant chart run as admin. The chart is Herd's
    (bundled), its values are Herd's (the Stack's name and chart namespaces), and its release
    data sits where no tenant may write; giving the tenant rights there instead would give it
    the add-ons' Secrets (helm's release storage needs `list` on Secrets).
    """
    return not grants.unrestricted and namespace in grants.addon_namespaces


def _metric_problems(grants: Grants, spec: StackSpec) -> list[Problem]:
    """Metric checks run a Stack's PromQL against the cluster's whole Prometheus (every
    tenant's series), so a bounded Stack needs the grant that shared add-ons need."""
    rollout = spec.rollout
    if rollout is None:
        return []
    places = [("spec.rollout.checks.metrics", rollout.checks)]
    places += [
        (f"spec.rollout.stages[{i}].checks.metrics", s.checks) for i, s in enumerate(rollout.stages)
    ]
    why = (
        "metric checks query the cluster's whole Prometheus and need a ClusterGrant with "
        f"addons: true ({grants.describe()})"
    )
    return [Problem(field, why) for field, checks in places if checks and checks.metrics]


def spec_problems(
    grants: Grants, spec: StackSpec, *, service_account_name: str | None = None
) -> list[Problem]:
    """What the grants forbid in the spec itself, each naming its field; [] when unrestricted.

    `service_account_name` is the Stack's spec.serviceAccountName: a bounded Stack that reads
    `values.from` (or a private chart source's Secret) must name the ServiceAccount Herd
    reads them as.
    """
    if grants.unrestricted:
        return []
    problems: list[Problem] = []
    for i, chart in enumerate(spec.charts):
        if not namespace_allowed(grants, chart.namespace):
            reserved = reserved_reason(grants, chart.namespace)
            why = (
                f"{reserved}: no tenant may use it ({grants.describe()})"
                if reserved
                else f"namespace {chart.namespace!r} is not in the targetNamespaces of "
                f"{grants.describe()}"
            )
            problems.append(Problem(f"spec.charts[{i}].namespace", why))
    if not addons_allowed(grants):
        toggles = (("security", spec.security_toggle), ("observability", spec.observability))
        for field, toggle in toggles:
            if toggle is Toggle.ENABLED:
                problems.append(
                    Problem(
                        f"spec.{field}",
                        "add-ons are shared by the whole cluster and need a ClusterGrant with "
                        f"addons: true ({grants.describe()})",
                    )
                )
    if not addons_allowed(grants):
        problems += _metric_problems(grants, spec)
    if not service_account_name:
        readers = [(i, "values.from") for i, chart in enumerate(spec.charts) if chart.values.from_]
        # Private chart sources' Secrets are read by the same rules (`herd.kube.chart_secrets`).
        readers += [
            (i, where) for i, chart in enumerate(spec.charts) for where, _ in secret_names(chart)
        ]
        if readers:
            i, where = min(readers)
            problems.append(
                Problem(
                    "spec.serviceAccountName",
                    f"spec.charts[{i}].{where} needs a ServiceAccount of namespace "
                    f"{grants.namespace} to read it as (Stacks outside Herd's namespace read "
                    "ConfigMaps and Secrets with their own rights)",
                )
            )
    return problems


# ---------------------------------------------------------------------------------------
# The downstream identity


@dataclass(frozen=True)
class Identity:
    """Who helm impersonates in a downstream cluster (`--kube-as-user`, `--kube-as-group`).

    A ServiceAccount needs no group: the API server adds `system:serviceaccounts`,
    `system:serviceaccounts:<its namespace>` and `system:authenticated` itself.
    """

    user: str
    groups: tuple[str, ...] = ()


def service_account_name(namespace: str) -> str:
    """`tenant-<namespace>`: the tenant's ServiceAccount in `IDENTITY_NAMESPACE`."""
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}"


def tenant_identity(namespace: str) -> Identity:
    """`system:serviceaccount:herd-tenants:tenant-<namespace>`: one tenant namespace's identity.

    A ServiceAccount, not a made-up user, so that it works the same through Rancher's cluster
    proxy, which impersonates only its own Users or ServiceAccounts (for which it mints a
    token downstream).
    """
    return Identity(f"system:serviceaccount:{IDENTITY_NAMESPACE}:{service_account_name(namespace)}")


def helm_identity(grants: Grants) -> Identity | None:
    """The identity helm acts as for these grants; None keeps the kubeconfig's (admin, open)."""
    return None if grants.unrestricted else tenant_identity(grants.namespace)
