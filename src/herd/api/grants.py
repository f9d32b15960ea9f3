"""The `ClusterGrant` resource of `herd.suse.com/v1`: what the Stacks of some namespaces may reach.

Data only, no I/O. A cluster admin creates ClusterGrants (cluster-scoped); the Herd controller
reads them and `herd.plan.tenancy` decides from them which clusters, downstream namespaces,
cluster-scoped objects and add-ons a Stack may use. The CRD in
`crds/herd.suse.com_clustergrants.yaml` is generated from these models (`herd.api.crd`); the
field descriptions are what `kubectl explain clustergrant.spec` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from herd.api.common import DNS1123_LABEL, SpecModel
from herd.api.parse import problems_of
from herd.api.targets import LabelSelector
from herd.api.v1 import VERSION
from herd.errors import SpecError
from herd.names import GROUP

GRANT_API_VERSION = f"{GROUP}/{VERSION}"
GRANT_KIND = "ClusterGrant"
GRANT_PLURAL = "clustergrants"
GRANT_SINGULAR = "clustergrant"
GRANT_SHORT_NAMES = ("cg",)

# A glob over namespace names: DNS-1123 label characters plus fnmatch's * ? [ ] (and ! in
# a class). The CRD checks the characters; `herd.plan.tenancy` matches with fnmatch semantics.
NAMESPACE_GLOB = r"^[a-z0-9*?\[\]!-]{1,63}$"


class GrantClusters(SpecModel):
    # An empty `clusters: {}` would grant nothing by mistake: the API server refuses it.
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    cluster_ids: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description=(
            "Granted clusters by Rancher cluster ID (e.g. c-m-abc12) or by name, as in "
            "Stack spec.targets.clusterIds. Unioned with the selector's clusters."
        ),
    )
    selector: LabelSelector | None = Field(
        default=None,
        description=(
            "Granted clusters by label (Kubernetes LabelSelector semantics), as in Stack "
            "spec.targets.selector. A cluster relabelled out of the selector is no longer granted."
        ),
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> GrantClusters:
        if not self.cluster_ids and self.selector is None:
            raise ValueError("clusters needs clusterIds or a selector")
        return self


class ClusterGrantSpec(SpecModel):
    namespaces: list[Annotated[str, Field(max_length=63, pattern=DNS1123_LABEL)]] = Field(
        min_length=1,
        description=(
            "Namespaces of the management cluster whose Stacks this grant applies to. "
            "Grants naming the same namespace add up."
        ),
    )
    clusters: GrantClusters = Field(
        description="Downstream clusters the Stacks of these namespaces may target."
    )
    target_namespaces: list[Annotated[str, Field(pattern=NAMESPACE_GLOB)]] = Field(
        min_length=1,
        description=(
            "Namespaces in the granted clusters that their charts may deploy into, as globs "
            "(e.g. team-a, team-a-*). Herd creates a chart's namespace when it is missing, and "
            "its helm identity may act only in these namespaces there."
        ),
    )
    cluster_scoped_resources: bool = Field(
        default=False,
        description=(
            "true: their charts may create cluster-scoped objects (CustomResourceDefinitions, "
            "ClusterRoles, Namespaces, ...) in the granted clusters. This trusts the namespace "
            "with the whole cluster (a ClusterRoleBinding is cluster-scoped too)."
        ),
    )
    addons: bool = Field(
        default=False,
        description=(
            "true: their Stacks may turn on spec.security and spec.observability, which deploy "
            "shared, cluster-wide add-ons (NeuVector, the SUSE Observability agent)."
        ),
    )


class ClusterGrant(BaseModel):
    """A whole ClusterGrant document as stored in Kubernetes or in a YAML file."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    api_version: Literal["herd.suse.com/v1"] = Field(alias="apiVersion")
    kind: Literal["ClusterGrant"]
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ClusterGrantSpec

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))


def parse_grant(body: Mapping[str, Any]) -> ClusterGrant:
    """A whole ClusterGrant document; raises `SpecError` naming every schema problem."""
    try:
        return ClusterGrant.model_validate(dict(body))
    except ValidationError as error:
        raise SpecError(problems_of(error)) from None
