"""What a Stack deploys: `ChartSpec` (repository, chart, version, helm options) and its
values (`ChartValues`: inline, per environment, per cluster, from ConfigMaps and Secrets),
and a private repository's credentials (`ChartCredentials`).

Callers: `herd.api.v1` (`spec.charts`), and every layer that plans, pulls or installs a chart.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from herd.api.checks import ChartTest
from herd.api.common import (
    CHART_REF,
    CHART_VERSION,
    DATA_KEY,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    GO_DURATION,
    REPO_URL,
    SpecModel,
    duration_seconds,
)
from herd.api.drift import DriftSpec
from herd.api.targets import LabelSelector


class ValuesSource(SpecModel):
    kind: Literal["ConfigMap", "Secret"] = Field(
        description="ConfigMap or Secret, in the Stack's own namespace."
    )
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="Name of the ConfigMap or Secret.",
    )
    key: str = Field(
        default="values.yaml",
        min_length=1,
        max_length=253,
        pattern=DATA_KEY,
        description="Key holding a YAML object of Helm values.",
    )
    optional: bool = Field(
        default=False, description="When true, a missing object or key is not an error."
    )


class ClusterOverride(SpecModel):
    cluster_ids: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Clusters by Rancher cluster ID or by name; unioned with the selector's.",
    )
    selector: LabelSelector | None = Field(
        default=None, description="Clusters by label (Kubernetes LabelSelector semantics)."
    )
    inline: dict[str, Any] = Field(
        default_factory=dict,
        description="Helm values for the selected clusters, merged over inline and envs.",
    )

    @model_validator(mode="after")
    def _selects_something(self) -> ClusterOverride:
        if not self.cluster_ids and self.selector is None:
            raise ValueError("a clusters entry needs clusterIds or a selector")
        return self


class ChartValues(SpecModel):
    inline: dict[str, Any] = Field(
        default_factory=dict,
        description="Helm values written in the Stack (free-form).",
    )
    envs: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Values per environment: the entry named like spec.env is merged over inline.",
    )
    from_: list[ValuesSource] = Field(
        default_factory=list,
        alias="from",
        description=(
            "ConfigMap/Secret keys with Helm values, merged last and in order. "
            "Secret values never appear in status, events or logs."
        ),
    )
    clusters: list[ClusterOverride] = Field(
        default_factory=list,
        description=(
            "Per-cluster overrides, merged in order after envs and before from, on the "
            "clusters each entry selects."
        ),
    )
    templated: bool = Field(
        default=False,
        description=(
            "true: string values of inline, envs and clusters may use the cluster's facts, "
            "{{ .Cluster.id }}, {{ .Cluster.name }} and {{ .Cluster.labels.KEY }}, rendered "
            "per cluster (values from ConfigMaps/Secrets are not templated)."
        ),
    )


class ChartCredentials(SpecModel):
    secret_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description=(
            "Secret in the Stack's namespace: kubernetes.io/basic-auth (username, password) "
            "for https:// repositories and oci:// registries, or kubernetes.io/dockerconfigjson "
            "for oci:// registries. Its content never appears in status, events or logs."
        ),
    )


class ChartSpec(SpecModel):
    name: str = Field(
        max_length=53,
        pattern=DNS1123_LABEL,
        description=(
            "Unique key of this chart within the Stack (DNS-1123 label); what dependsOn "
            "refers to. Also the default chart and release name."
        ),
    )
    chart: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        json_schema_extra={"pattern": CHART_REF},  # checked below, with a clear message
        description=(
            "Chart name in the repository, or a path reference below it (team/app); "
            "defaults to name."
        ),
    )
    repo: str = Field(
        pattern=REPO_URL,
        description="Chart repository URL: https://, http:// or oci://.",
    )
    version: str = Field(
        min_length=1,
        max_length=128,
        json_schema_extra={"pattern": CHART_VERSION},
        description="Chart version to install (exact, e.g. 0.59.0); must not start with '-'.",
    )
    namespace: str = Field(
        default="default",
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Namespace in each target cluster; created when missing.",
    )
    release_name: str | None = Field(
        default=None,
        max_length=53,
        pattern=DNS1123_LABEL,
        description="Helm release name; defaults to name.",
    )
    values: ChartValues = Field(
        default_factory=ChartValues, description="Helm values for this chart."
    )
    depends_on: list[str] = Field(
        default_factory=list,
        description="Names of charts in this Stack that must be deployed first, in every cluster.",
    )
    wait: bool = Field(
        default=False,
        description="Wait until the release's resources are ready (helm --wait).",
    )
    timeout: str = Field(
        default="5m",
        pattern=GO_DURATION,
        description="Go duration bounding each helm operation, e.g. 15m (helm --timeout).",
    )
    test: ChartTest | None = Field(
        default=None,
        description="helm test after each install or upgrade; a failed test fails the release.",
    )
    atomic: bool = Field(
        default=False,
        description="Roll back (or uninstall, on first install) when the operation fails.",
    )
    crds: Literal["Skip", "Create", "CreateReplace"] = Field(
        default="Create",
        description=(
            "What happens to the CustomResourceDefinitions in the chart's crds/ directories "
            "(its subcharts' included), as Flux's CRD policy: Create (helm's behaviour) "
            "creates missing ones on install and never changes them; Skip installs none "
            "(helm --skip-crds); CreateReplace makes Herd apply them on every install and "
            "upgrade, server-side as field manager herd, before helm runs."
        ),
    )

    drift: DriftSpec | None = Field(
        default=None,
        description="Drift handling of this chart's releases: overrides spec.drift field by field.",
    )

    credentials: ChartCredentials | None = Field(
        default=None, description="Credentials for a private repository or registry."
    )
    ca_secret_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description=(
            "Secret in the Stack's namespace whose key ca.crt holds the PEM CA that signed "
            "the repository's certificate (a private CA)."
        ),
    )
    insecure_skip_tls_verify: bool = Field(
        default=False,
        alias="insecureSkipTLSVerify",
        description="Do not verify the repository's TLS certificate (labs only).",
    )
    plain_http: bool = Field(
        default=False,
        alias="plainHTTP",
        description="Talk plain HTTP to an oci:// registry (labs only); oci:// repos only.",
    )

    @field_validator("plain_http")
    @classmethod
    def _plain_http_oci_only(cls, value: bool, info: ValidationInfo) -> bool:
        repo = info.data.get("repo")
        if value and isinstance(repo, str) and not repo.startswith("oci://"):
            raise ValueError(
                "plainHTTP is for oci:// registries only; use an http:// repo URL instead"
            )
        return value

    @field_validator("chart")
    @classmethod
    def _chart_reference(cls, value: str | None) -> str | None:
        if value is not None and not re.match(CHART_REF, value):
            raise ValueError(
                "must be a chart name or a path below the repository (letters, digits, "
                f"'.', '_', '-' and '/', starting with a letter or digit), got {value!r}"
            )
        return value

    @field_validator("version")
    @classmethod
    def _version_not_a_flag(cls, value: str) -> str:
        if not re.match(CHART_VERSION, value):
            raise ValueError(f"must be a chart version such as 1.2.3, got {value!r}")
        return value

    @property
    def chart_name(self) -> str:
        return self.chart or self.name

    @property
    def release(self) -> str:
        return self.release_name or self.name

    @property
    def timeout_seconds(self) -> float:
        return duration_seconds(self.timeout)
