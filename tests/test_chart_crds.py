"""The CRDs a chart ships, as helm selects them, and the pure parts of `crds: CreateReplace`.

Charts are written to a temporary directory as `helm pull --untar` leaves them: the root
unpacked, subcharts as directories or `.tgz` archives in `charts/`.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from herd.api import StackSpec
from herd.helm.chart_crds import (
    ChartCrdError,
    ChartFile,
    chart_crds,
    crd_files,
    crd_note,
    parse_crds,
)
from herd.helm.crd_apply import established, impersonation
from herd.helm.failures import FailureKind, api_failure
from herd.plan.desired import config_digest
from herd.plan.tenancy import Identity, tenant_identity
from tests.conftest import chart as chart_entry
from tests.conftest import stack_body


def crd(name: str, group: str = "example.com") -> dict[str, Any]:
    plural = name.split(".", 1)[0]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": plural.title(), "plural": plural},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }


def documents(*docs: object) -> str:
    return yaml.safe_dump_all(docs)


def write_chart(root: Path, name: str, files: dict[str, str], **chart_yaml: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    metadata = {"apiVersion": "v2", "name": name, "version": "1.0.0", **chart_yaml}
    (root / "Chart.yaml").write_text(yaml.safe_dump(metadata))
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def pack(source: Path, archive: Path) -> None:
    """`helm package` layout: every file below a top directory named like the chart."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source, arcname=source.name)
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(buffer.getvalue())


def names(chart_dir: Path, values: dict[str, Any] | None = None) -> list[str]:
    return [c.name for c in chart_crds(chart_dir, values)]


def test_root_crds_files_by_helm_extension_rule_any_depth(tmp_path: Path) -> None:
    root = write_chart(
        tmp_path / "op",
        "op",
        {
            "crds/a.yaml": documents(crd("as.example.com")),
            "crds/nested/b.YML": documents(crd("bs.example.com")),
            "crds/c.json": '{"apiVersion": "apiextensions.k8s.io/v1", '
            '"kind": "CustomResourceDefinition", "metadata": {"name": "cs.example.com"}}',
            "crds/README.md": "not a manifest: helm ignores it",
            "templates/crd.yaml": documents(crd("templated.example.com")),  # a template
        },
    )
    files = crd_files(root)
    assert [f.path for f in files] == ["op/crds/a.yaml", "op/crds/c.json", "op/crds/nested/b.YML"]
    assert names(root) == ["as.example.com", "cs.example.com", "bs.example.com"]


def test_symlinks_out_of_the_chart_are_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(documents(crd("outsides.example.com")))
    root = write_chart(tmp_path / "op", "op", {"crds/a.yaml": documents(crd("as.example.com"))})
    (root / "crds" / "link.yaml").symlink_to(outside)
    assert names(root) == ["as.example.com"]


def test_multi_document_files_skip_empty_documents(tmp_path: Path) -> None:
    text = "---\n" + documents(crd("as.example.com"), None, crd("bs.example.com")) + "---\n"
    root = write_chart(tmp_path / "op", "op", {"crds/all.yaml": text})
    found = chart_crds(root)
    assert [(c.name, c.source) for c in found] == [
        ("as.example.com", "op/crds/all.yaml"),
        ("bs.example.com", "op/crds/all.yaml"),
    ]
    assert found[0].body["spec"]["group"] == "example.com"


def test_subcharts_as_directories_and_archives_recursively(tmp_path: Path) -> None:
    root = write_chart(tmp_path / "op", "op", {"crds/root.yaml": documents(crd("roots.a.io"))})
    write_chart(root / "charts" / "dir-sub", "dir-sub", {"crds/d.yaml": documents(crd("ds.a.io"))})
    packed = write_chart(
        tmp_path / "src" / "nfd", "nfd", {"crds/n.yaml": documents(crd("ns.a.io"))}
    )
    write_chart(packed / "charts" / "deep", "deep", {"crds/x.yaml": documents(crd("xs.a.io"))})
    pack(packed, root / "charts" / "nfd-0.1.0.tgz")
    (root / "charts" / "nfd-0.1.0.tgz.prov").write_text("signature")
    assert [f.path for f in crd_files(root)] == [
        "op/crds/root.yaml",
        "op/charts/dir-sub/crds/d.yaml",
        "op/charts/nfd/crds/n.yaml",
        "op/charts/nfd/charts/deep/crds/x.yaml",
    ]


def test_subchart_disabled_by_condition_or_tags_contributes_no_crds(tmp_path: Path) -> None:
    dependencies = [
        {"name": "nfd", "version": "1", "condition": "nfd.enabled"},
        {"name": "extra", "version": "1", "tags": ["extras"]},
        {"name": "both", "version": "1", "condition": "missing.path,both.on", "tags": ["extras"]},
    ]
    root = write_chart(
        tmp_path / "op",
        "op",
        {"values.yaml": yaml.safe_dump({"nfd": {"enabled": True}, "both": {"on": False}})},
        dependencies=dependencies,
    )
    for sub in ("nfd", "extra", "both"):
        write_chart(root / "charts" / sub, sub, {"crds/c.yaml": documents(crd(f"{sub}s.a.io"))})
    # Chart defaults: nfd on, extra on (no tag value), both off (its condition decides).
    assert names(root) == ["nfds.a.io", "extras.a.io"]
    # Release values over the chart's: the condition wins over the tags.
    assert names(root, {"nfd": {"enabled": False}, "tags": {"extras": False}}) == []
    assert names(root, {"both": {"on": True}, "tags": {"extras": False}}) == [
        "nfds.a.io",
        "boths.a.io",
    ]


def test_alias_is_its_own_copy_and_reads_its_values(tmp_path: Path) -> None:
    dependencies = [
        {"name": "db", "version": "1", "alias": "main", "condition": "main.enabled"},
        {"name": "db", "version": "1", "alias": "replica", "condition": "replica.enabled"},
    ]
    root = write_chart(tmp_path / "op", "op", {}, dependencies=dependencies)
    write_chart(root / "charts" / "db", "db", {"crds/c.yaml": documents(crd("dbs.a.io"))})
    files = crd_files(root, {"main": {"enabled": True}, "replica": {"enabled": False}})
    assert [f.path for f in files] == ["op/charts/main/crds/c.yaml"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            documents({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            "op/crds/bad.yaml holds a ConfigMap (v1): only apiextensions.k8s.io/v1 "
            "CustomResourceDefinitions are applied from crds/",
        ),
        (
            documents({**crd("old.example.com"), "apiVersion": "apiextensions.k8s.io/v1beta1"}),
            "op/crds/bad.yaml holds a CustomResourceDefinition (apiextensions.k8s.io/v1beta1)",
        ),
        ("- just\n- a list\n", "op/crds/bad.yaml holds a document that is not an object"),
        ("key: [unclosed\n", "op/crds/bad.yaml is not valid YAML"),
        (
            documents({**crd("x.example.com"), "metadata": {}}),
            "op/crds/bad.yaml holds a CustomResourceDefinition without metadata.name",
        ),
    ],
)
def test_anything_but_a_v1_crd_is_an_error_naming_the_file(content: str, problem: str) -> None:
    with pytest.raises(ChartCrdError) as raised:
        parse_crds([ChartFile("op/crds/bad.yaml", content.encode())])
    assert str(raised.value).startswith(problem)


def test_an_unreadable_subchart_archive_names_it(tmp_path: Path) -> None:
    root = write_chart(tmp_path / "op", "op", {"charts/broken-1.0.0.tgz": "not gzip"})
    with pytest.raises(
        ChartCrdError, match=re.escape("op/charts/broken-1.0.0.tgz is not a readable")
    ):
        crd_files(root)


def test_crds_field_defaults_to_create_and_rejects_other_words() -> None:
    spec = StackSpec.model_validate(stack_body()["spec"])
    assert spec.charts[0].crds == "Create"
    replace = StackSpec.model_validate(stack_body(chart_entry("a", crds="CreateReplace"))["spec"])
    assert replace.charts[0].crds == "CreateReplace"
    with pytest.raises(ValidationError, match="crds"):
        StackSpec.model_validate(stack_body(chart_entry("a", crds="Replace"))["spec"])


def test_the_default_policy_keeps_config_digests_and_others_change_them() -> None:
    spec = StackSpec.model_validate(
        stack_body(
            chart_entry("a"),
            chart_entry("b", crds="Create"),
            chart_entry("c", crds="CreateReplace"),
            chart_entry("d", crds="Skip"),
        )["spec"]
    )
    a, b, c, d = (
        config_digest(chart.model_copy(update={"name": "a"}), {}) for chart in spec.charts
    )
    assert a == b  # releases deployed before the field existed are not upgraded
    assert len({a, c, d}) == 3  # changing the policy is an upgrade


@pytest.mark.parametrize(
    ("policy", "count", "note"),
    [
        ("Create", 3, ""),
        ("Skip", None, "; CRDs: Skip"),
        ("CreateReplace", None, "; CRDs: CreateReplace"),
        ("CreateReplace", 2, "; CRDs: CreateReplace (2)"),
    ],
)
def test_crd_note(policy: Any, count: int | None, note: str) -> None:
    assert crd_note(policy, count) == note


@pytest.mark.parametrize(
    ("status", "kind", "transient"),
    [
        (None, FailureKind.CLUSTER_UNREACHABLE, True),
        (403, FailureKind.FORBIDDEN, False),
        (422, FailureKind.INVALID, False),
        (409, FailureKind.RESOURCE_CONFLICT, False),
        (429, FailureKind.API_TIMEOUT, True),
        (500, FailureKind.FAILED, True),
        (404, FailureKind.FAILED, False),
    ],
)
def test_api_failures_are_classified(
    status: int | None, kind: FailureKind, transient: bool
) -> None:
    failure = api_failure("cannot apply CRD xs.a.io (from op/crds/x.yaml)", status)
    assert (failure.kind, failure.transient) == (kind, transient)
    assert failure.message.startswith("cannot apply CRD xs.a.io (from op/crds/x.yaml): ")


def test_api_failure_message_is_one_bounded_line_with_the_hint_on_403() -> None:
    detail = "spec.versions[0]: Invalid value\n" + "x" * 1000
    invalid = api_failure("cannot apply CRD xs.a.io", 422, detail)
    assert "\n" not in invalid.message and len(invalid.message) == 400
    assert invalid.message.startswith("cannot apply CRD xs.a.io: HTTP 422: spec.versions[0]")
    forbidden = api_failure("cannot apply CRD xs.a.io", 403, forbidden_hint="grant it")
    assert forbidden.message == "cannot apply CRD xs.a.io: HTTP 403 (grant it)"


def test_impersonation_headers_mirror_helms_kube_as_flags() -> None:
    assert impersonation(None) == {}
    # A ServiceAccount: no group (the API server adds the ServiceAccount groups).
    assert impersonation(tenant_identity("team-a")) == {
        "Impersonate-User": "system:serviceaccount:herd-tenants:tenant-team-a"
    }
    assert impersonation(Identity("u", ("g",))) == {
        "Impersonate-User": "u",
        "Impersonate-Group": "g",
    }
    with pytest.raises(ValueError, match="more than one group"):
        impersonation(Identity("u", ("g1", "g2")))


@pytest.mark.parametrize(
    ("status", "served"),
    [
        ({}, False),
        ({"conditions": [{"type": "NamesAccepted", "status": "True"}]}, False),
        ({"conditions": [{"type": "Established", "status": "False"}]}, False),
        ({"conditions": [{"type": "Established", "status": "True"}]}, True),
    ],
)
def test_established(status: dict[str, Any], served: bool) -> None:
    assert established({"status": status}) is served
