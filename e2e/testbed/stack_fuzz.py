"""Hypothesis strategies for Stack bodies, generated from the CRD's own openAPIV3Schema.

Role: every body drawn here passes the structural schema of
`crds/herd.suse.com_stacks.yaml` as far as Python can tell (types, required fields,
enums, patterns, lengths, minItems), and its strings mix ordinary text with targeted
nasty values (`--help`, `--repo=http://127.0.0.1:1`, unicode, long names), so a parser
or a helm command line that trusts them shows it. The real API server is the final
judge; callers count the bodies it rejects apart.

Callers: `tests/test_fuzz_stacks.py` (parse/validate never raise anything but
SpecError), `e2e/test_fuzz_operator.py` and `benchmarks/faults.py` (bodies applied to a
real management cluster, through the real controller).

`repo_hosts` keeps every generated repository URL on a closed loopback port, so no
generated body ever makes helm reach the network; each URL carries a per-body marker
path so a helm call can be traced back to the body that caused it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

CRD = Path(__file__).resolve().parents[2] / "crds" / "herd.suse.com_stacks.yaml"

NASTY: tuple[str, ...] = (
    "--help",
    "-h",
    "--repo=http://127.0.0.1:1",
    "--kubeconfig=/etc/passwd",
    "--post-renderer=/bin/sh",
    "-",
    "--",
    "../../etc/passwd",
    "/tmp",
    "oci://",
    "app --help",
    "$(id)",
    "`id`",
    "a\nb",
    "\u00e9t\u00e9",
    "\u5b89\u88c5",
    "\U0001f680",
    "\u202eevil",
    "x" * 300,
    "a" * 53,
    "a" * 54,
    " ",
    "{{ .Values }}",
    "null",
    "true",
    "0",
)

# Strings the API server stores as given: no lone surrogates (JSON cannot carry them
# as UTF-8) and no NUL (kubectl and YAML tooling choke on it before the server sees it).
_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
_TEXT = st.text(alphabet=_CHARS, max_size=40)
_JSON_SCALAR = st.none() | st.booleans() | st.integers(-(2**31), 2**31) | _TEXT
_JSON = st.recursive(
    _JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


def crd_schema(path: Path = CRD) -> dict[str, Any]:
    """The openAPIV3Schema of the Stack CRD's first version."""
    crd = yaml.safe_load(path.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _fits(schema: dict[str, Any], value: str) -> bool:
    if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 10**9):
        return False
    pattern = schema.get("pattern")
    # Go's RE2 and Python agree on these simple patterns once the whole string must match.
    return pattern is None or re.fullmatch(pattern, value) is not None


def _string(schema: dict[str, Any], path: str) -> st.SearchStrategy[str]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    nasty = [s for s in NASTY if _fits(schema, s)]
    if "pattern" in schema:
        base: st.SearchStrategy[str] = st.from_regex(schema["pattern"], fullmatch=True)
    else:
        base = st.text(
            alphabet=_CHARS,
            min_size=schema.get("minLength", 0),
            max_size=max(schema.get("minLength", 0), 60),
        )
    base = base.filter(lambda s: _fits(schema, s))
    return st.one_of(base, st.sampled_from(nasty)) if nasty else base


def strategy(
    schema: dict[str, Any],
    path: str = "",
    overrides: dict[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[Any]:
    """A strategy for values `schema` accepts; `overrides` replaces the one at a path."""
    overrides = overrides or {}
    if path in overrides:
        return overrides[path]
    kind = schema.get("type")
    if kind is None or (kind == "object" and not schema.get("properties")):
        if "additionalProperties" in schema:
            values = strategy(schema["additionalProperties"], path + ".*", overrides)
            return st.dictionaries(_TEXT, values, max_size=3)
        return _JSON if kind is None else st.dictionaries(_TEXT, _JSON, max_size=3)
    if kind == "string":
        return _string(schema, path)
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(-(2**31), 2**31)
    if kind == "array":
        items = strategy(schema["items"], path + "[]", overrides)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=4)
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fields = {
        name: strategy(sub, f"{path}.{name}".lstrip("."), overrides)
        for name, sub in properties.items()
    }
    return st.fixed_dictionaries(
        {k: v for k, v in fields.items() if k in required},
        optional={k: v for k, v in fields.items() if k not in required},
    )


def _chart_strategy(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    chart_schema = schema["properties"]["spec"]["properties"]["charts"]["items"]
    names = chart_schema["properties"]["name"]
    # Chart names drawn from a small pool, so dependsOn often names a real chart (and
    # sometimes a cycle or itself) instead of always an unknown one.
    pool = st.sampled_from(["a", "b", "c", "app", "x" * 53, "--help"]).filter(
        lambda s: _fits(names, s)
    )
    return strategy(
        chart_schema,
        overrides={
            "name": st.one_of(pool, pool, _string(names, "name")),
            "dependsOn": st.lists(st.one_of(pool, pool, pool, _TEXT), max_size=2),
        },
    )


def _targets_strategy(
    schema: dict[str, Any], labels: dict[str, str]
) -> st.SearchStrategy[dict[str, Any]]:
    """Raw schema-drawn targets (often empty: an error), or ones Herd can act on."""
    targets = schema["properties"]["spec"]["properties"]["targets"]
    raw = strategy(targets)
    key = st.one_of(st.sampled_from(sorted(labels) or ["team"]), _TEXT.filter(bool))
    with_values = st.fixed_dictionaries(
        {
            "key": key,
            "operator": st.sampled_from(["In", "NotIn"]),
            "values": st.lists(_string({"type": "string"}, ""), min_size=1, max_size=3),
        }
    )
    without = st.fixed_dictionaries(
        {"key": key, "operator": st.sampled_from(["Exists", "DoesNotExist"])}
    )
    selector = st.one_of(
        st.just({"matchLabels": dict(labels)}) if labels else st.nothing(),
        st.fixed_dictionaries({"matchLabels": st.dictionaries(key, _TEXT, min_size=1, max_size=2)}),
        st.fixed_dictionaries(
            {"matchExpressions": st.lists(st.one_of(with_values, without), min_size=1, max_size=2)}
        ),
    )
    ids = st.lists(
        _string(targets["properties"]["clusterIds"]["items"], ""), min_size=1, max_size=3
    )
    return st.one_of(
        raw,
        st.fixed_dictionaries({"selector": selector}),
        st.fixed_dictionaries({"clusterIds": ids}),
    )


def spec_strategy(
    schema: dict[str, Any] | None = None,
    repo: st.SearchStrategy[str] | None = None,
    labels: dict[str, str] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Stack specs; `repo` replaces the repository URL strategy (see module docstring).

    `labels`: a cluster's labels that generated selectors often ask for, so some bodies
    target that cluster. Add-on toggles are usually `enabled`/`disabled` (or booleans),
    sometimes any JSON, so most bodies get past them.
    """
    schema = schema or crd_schema()
    spec_schema = schema["properties"]["spec"]
    chart = _chart_strategy(schema)
    if repo is not None:
        chart = st.tuples(chart, repo).map(lambda pair: {**pair[0], "repo": pair[1]})
    toggle = st.one_of(
        st.sampled_from(["disabled", "disabled", "enabled", False, True]),
        _JSON,
    )
    return strategy(
        spec_schema,
        overrides={
            "charts": st.lists(chart, min_size=1, max_size=4),
            "targets": _targets_strategy(schema, labels or {}),
            "security": toggle,
            "observability": toggle,
        },
    )


MARKER = "MARKER"


def loopback_repo() -> st.SearchStrategy[str]:
    """Repository URLs that pass the CRD pattern but lead only to a closed local port.

    Each holds the path segment `MARKER`; `mark` replaces it with a per-body token.
    """
    scheme = st.sampled_from(["http", "https", "oci"])
    tail = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/.?=&%~", max_size=20)
    return st.builds(lambda s, t: f"{s}://127.0.0.1:1/{MARKER}/{t}", scheme, tail)


def mark(spec: dict[str, Any], token: str) -> dict[str, Any]:
    """A copy of `spec` whose loopback repository URLs carry `token` instead of MARKER."""
    charts = [
        {**chart, "repo": chart["repo"].replace(f"/{MARKER}/", f"/{token}/", 1)}
        for chart in spec["charts"]
    ]
    return {**spec, "charts": charts}


def generate(count: int, values: st.SearchStrategy[Any]) -> list[Any]:
    """`count` values of `values`, the same ones on every run (derandomized).

    Hypothesis runs a throwaway test that records what it is given.
    """
    drawn: list[Any] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(values)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn[:count]


def stack_body(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def targeted_specs(repo: str) -> Sequence[dict[str, Any]]:
    """Hand-picked bodies from the issue: flag-like charts, odd versions, huge names."""
    common = {"repo": repo, "version": "0.1.0"}
    targets = {"selector": {"matchLabels": {"herd-fuzz": "nothing"}}}
    charts: list[dict[str, Any]] = [
        {"name": "a", "chart": "--help", **common},
        {"name": "a", "chart": "--repo=http://127.0.0.1:1", **common},
        {"name": "a", "chart": "app", "repo": repo, "version": "--help"},
        {"name": "a", "chart": "-", **common},
        {"name": "a", "chart": "\u5b89\u88c5", **common},
        {"name": "a" * 53, **common},
        {"name": "a", "chart": "app", **common, "dependsOn": ["a"]},
        {"name": "a", "chart": "x" * 300, **common},
        {"name": "a", **common, "values": {"from": [{"kind": "Secret", "name": "--help"}]}},
        {"name": "a", **common, "releaseName": "a" * 53, "namespace": "a" * 63},
    ]
    return [{"targets": targets, "charts": [chart]} for chart in charts]
