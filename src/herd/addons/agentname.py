"""The cluster name Herd sends to the SUSE Observability agent (`stackstate.cluster.name`). Pure.

The agent chart checks its values with a JSON schema: the name must match `AGENT_NAME`
(lowercase letters, digits, `-` and `.`; at least two characters; a letter or digit at
both ends). Every Rancher cluster name (a Kubernetes object name: DNS-1123) of two or more
characters already does, and is sent unchanged, so the name in SUSE Observability is the
cluster's own. Any other name (one character, or a cluster id given to the CLI such as
`GPU_East`) is made valid: lowercased, other characters become `-`, the ends trimmed, and
a short digest of the original appended, so two different names never become the same
agent identity. The result always passes the schema, so no cluster fails at helm time.

Callers: `herd.addons.catalog` (`AddonCatalog.cluster_values`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

AGENT_NAME: Final = re.compile(r"^[a-z0-9]([a-z0-9\-\.]*[a-z0-9])$")
"""The agent chart's schema pattern for `stackstate.cluster.name`."""

_INVALID = re.compile(r"[^a-z0-9.\-]+")
_DIGEST_CHARS = 8


def agent_cluster_name(name: str) -> str:
    """`name` when the agent schema accepts it; else a valid, distinct name derived from it."""
    if AGENT_NAME.fullmatch(name):
        return name
    stem = _INVALID.sub("-", name.lower()).strip("-.")
    digest = hashlib.sha256(name.encode()).hexdigest()[:_DIGEST_CHARS]
    return f"{stem}-{digest}" if stem else f"cluster-{digest}"
