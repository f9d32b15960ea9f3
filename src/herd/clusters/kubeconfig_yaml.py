"""Checking a kubeconfig document before Herd hands it to helm, without revealing it.

Pure. Caller: `herd.clusters.kubeconfigs.KubeconfigStore`. Every problem is an
`InvalidKubeconfig` whose message describes the *shape* of the document (missing lists,
unknown context names, a YAML line number) and never quotes its content: PyYAML's own
error text includes a snippet of the offending line, which may hold a token or key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from herd.errors import PermanentError

# Fields kubectl resolves relative to the kubeconfig file's directory.
_CLUSTER_FILES = ("certificate-authority",)
_USER_FILES = ("client-certificate", "client-key", "tokenFile")


class InvalidKubeconfig(PermanentError, ValueError):
    """The document is not a usable kubeconfig; the message completes "the kubeconfig ..."."""


def parse_kubeconfig(content: bytes) -> dict[str, Any]:
    """Parse and check a kubeconfig: a YAML mapping with non-empty clusters, users, contexts."""
    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InvalidKubeconfig(f"is not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise InvalidKubeconfig("is not a kubeconfig (not a YAML mapping)")
    missing = [key for key in ("clusters", "users", "contexts") if not _named_list(document, key)]
    if missing:
        raise InvalidKubeconfig(f"is not a kubeconfig (no {', '.join(missing)})")
    return document


def plugin_users(document: dict[str, Any]) -> list[str]:
    """Names of the user entries that make the client run something: `exec` (a program)
    or `auth-provider` (gcp/azure/oidc plugins, some of which run a `cmd-path`)."""
    found = []
    for item in document.get("users") or []:
        user = item.get("user") if isinstance(item, dict) else None
        if isinstance(user, dict) and (user.get("exec") or user.get("auth-provider")):
            found.append(str(item.get("name")))
    return found


def refuse_plugins(document: dict[str, Any]) -> None:
    """`InvalidKubeconfig` when a user entry runs a plugin (names the entry, not content)."""
    users = plugin_users(document)
    if users:
        raise InvalidKubeconfig(
            "has an exec or auth-provider user, which would run a program in Herd: "
            "refused unless HERD_ALLOW_EXEC_KUBECONFIGS=true"
        )


def select_context(document: dict[str, Any], context: str | None) -> dict[str, Any] | None:
    """Check the context to use (`context`, else current-context, else the only one).

    Returns None when the document can be used as it is, else a copy whose current-context
    is the one to use.
    """
    contexts = {str(item.get("name")): item.get("context") or {} for item in document["contexts"]}
    current = document.get("current-context")
    if context is not None and context not in contexts:
        raise InvalidKubeconfig(f"has no context {context!r} (contexts: {_names(contexts)})")
    if context is None and current not in contexts:
        if len(contexts) != 1:
            raise InvalidKubeconfig(
                f"has no usable current-context (contexts: {_names(contexts)}); name one"
            )
        context = next(iter(contexts))
    wanted = context or str(current)
    _check_references(document, wanted, contexts[wanted])
    if wanted == current:
        return None
    selected = copy.deepcopy(document)
    selected["current-context"] = wanted
    return selected


def absolutize_paths(document: dict[str, Any], base: Path) -> dict[str, Any]:
    """Resolve relative certificate/key/token file paths against `base` (in place).

    Needed when a kubeconfig file is copied elsewhere: kubectl and helm resolve such paths
    relative to the kubeconfig's own location.
    """
    for section, inner, keys in (
        ("clusters", "cluster", _CLUSTER_FILES),
        ("users", "user", _USER_FILES),
    ):
        for item in document.get(section) or []:
            fields = item.get(inner) if isinstance(item, dict) else None
            if not isinstance(fields, dict):
                continue
            for key in keys:
                value = fields.get(key)
                if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                    fields[key] = str(base / value)
    return document


def _check_references(document: dict[str, Any], name: str, context: dict[str, Any]) -> None:
    for kind, section in (("cluster", "clusters"), ("user", "users")):
        wanted = context.get(kind)
        if wanted not in {item.get("name") for item in document[section] if isinstance(item, dict)}:
            raise InvalidKubeconfig(f"context {name!r} refers to a {kind} that is not defined")


def _named_list(document: dict[str, Any], key: str) -> bool:
    value = document.get(key)
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) for i in value)


def _names(contexts: dict[str, Any]) -> str:
    return ", ".join(sorted(contexts)) or "none"
