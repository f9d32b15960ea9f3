"""ClusterGrant documents beside Stacks: checked, and never mistaken for a Stack."""

from __future__ import annotations

from pathlib import Path

from herd.cli.documents import load

ROOT = Path(__file__).parent.parent

BAD_GRANT = """\
apiVersion: herd.suse.com/v1
kind: ClusterGrant
metadata: {name: broken}
spec:
  namespaces: [team-a]
  targetNamespaces: [team-a]
"""


def test_the_example_grant_is_valid_and_no_stack() -> None:
    assert load([ROOT / "examples" / "grant-default.yaml"]) == []
    stacks = load([ROOT / "examples"])
    assert stacks and all(doc.stack is not None and not doc.problems for doc in stacks)


def test_an_invalid_grant_is_listed_with_its_problems(tmp_path: Path) -> None:
    (tmp_path / "grant.yaml").write_text(BAD_GRANT)
    (document,) = load([tmp_path])
    assert document.stack is None
    assert [str(p) for p in document.problems] == ["spec.clusters: is required"]
