"""Forged helm release Secrets: what whoever may write Secrets in a release's namespace can do.

`forge_release` rewrites a release's storage Secret by hand (helm's Secret driver format:
base64 of gzip of the release JSON, base64 again by the API), as a given user (`kubectl
--as`, so the API server's RBAC decides) or as the admin. Callers: `e2e/test_drift.py`,
`e2e/test_drift_admin.py`.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

from e2e.testbed.faults import history
from e2e.testbed.helpers import kubectl


def forge_release(
    config: Path, ns: str, name: str, extra: str, user: str | None = None, *, new: bool = True
) -> None:
    """The latest revision of release `ns/name` with `extra` appended to its manifest,
    written as the next revision, labelled deployed (the old one superseded), or
    (`new=False`) over the latest one itself."""
    who = [f"--as={user}"] if user else []
    number = int(history(config, ns, name)[-1]["revision"])
    stored = f"sh.helm.release.v1.{name}.v{number}"
    secret = json.loads(kubectl(config, "get", "secret", stored, "-n", ns, "-o", "json", *who))
    release = json.loads(
        gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"])))
    )
    release["manifest"] += f"\n---\n{extra}"
    revision = number + 1 if new else number
    release["version"] = revision
    encoded = base64.b64encode(gzip.compress(json.dumps(release).encode())).decode()
    forged = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": secret["type"],
        "metadata": {
            "name": f"sh.helm.release.v1.{name}.v{revision}",
            "labels": {**secret["metadata"]["labels"], "version": str(revision)},
        },
        "data": {"release": base64.b64encode(encoded.encode()).decode()},
    }
    verb = "create" if new else "replace"
    kubectl(config, verb, "-n", ns, "-f", "-", *who, stdin=json.dumps(forged))
    if new:
        relabel = ["label", "secret", stored, "-n", ns, "status=superseded", "--overwrite"]
        kubectl(config, *relabel, *who)
