"""Keep the controller's impersonation RoleBindings in step with the ClusterGrants.

`herd.plan.impersonation` decides (granted namespaces, never protected ones); this module lists
the ClusterGrants and Herd's RoleBindings (label `herd.suse.com/impersonation`) on the
management cluster and creates or deletes RoleBindings until they match. It learns its
own identity once with a SelfSubjectReview (the subject of the RoleBinding). Its RBAC:
`bind` on the ClusterRole `herd-impersonate-serviceaccounts` only, and create/delete/list
on RoleBindings (install/10-rbac.yaml).

`keep_bindings` runs as one task of the leading controller (started in
`herd.operator.handlers.startup`): a sync at start, then at every fleet poll interval when
the granted namespaces changed, and every resync interval regardless (a RoleBinding
someone deleted comes back). A failure is logged and retried on the next round; a Stack
that reads as its ServiceAccount meanwhile gets a transient "may not impersonate" error.

Callers: `herd.operator.handlers`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from kubernetes import client

from herd.errors import HerdError
from herd.kube.client import API_ERRORS, api_error_summary, read_json
from herd.kube.grants import list_grants
from herd.names import MANAGED_LABEL
from herd.operator.config import OperatorConfig
from herd.plan.impersonation import ROLE_BINDING, changes, role_binding, subject, wanted_namespaces
from herd.plan.tenancy import Mode

logger = logging.getLogger(__name__)


class ImpersonationBindings:
    """The RoleBindings of one controller identity; `sync` makes them match the grants."""

    def __init__(self, api: client.ApiClient, config: OperatorConfig) -> None:
        self._api = api
        self._rbac = client.RbacAuthorizationV1Api(api)
        self._own = {config.namespace, *config.rancher_namespaces}
        self._subject: dict[str, str] | None = None

    def sync(self, granted: Iterable[str]) -> tuple[list[str], list[str]]:
        """Create and delete RoleBindings so that exactly the `granted` namespaces (those
        valid ClusterGrants name) hold one, protected ones never. Blocking (run in a
        thread). Returns (created, deleted) namespaces."""
        wanted = wanted_namespaces(granted, self._own)
        if self._subject is None:
            self._subject = subject(self._whoami())
        existing = self._existing()
        todo = changes(wanted, existing)
        for namespace in todo.create:
            self._create(namespace)
        for namespace in todo.delete:
            self._delete(namespace)
        return list(todo.create), list(todo.delete)

    def _whoami(self) -> str:
        body = read_json(
            client.AuthenticationV1Api(self._api).create_self_subject_review,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        return str(((body.get("status") or {}).get("userInfo") or {}).get("username") or "")

    def _existing(self) -> set[str]:
        body = read_json(
            self._rbac.list_role_binding_for_all_namespaces,
            label_selector=f"{MANAGED_LABEL}=true",
        )
        return {
            str(item["metadata"]["namespace"])
            for item in body.get("items") or []
            if item.get("metadata", {}).get("name") == ROLE_BINDING
        }

    def _create(self, namespace: str) -> None:
        assert self._subject is not None
        try:
            read_json(
                self._rbac.create_namespaced_role_binding,
                namespace,
                role_binding(namespace, self._subject),
            )
        except client.ApiException as error:
            if error.status == 409:  # there already (an earlier run, another replica)
                return
            if error.status == 404:  # the namespace does not exist (yet): next round
                return
            raise
        logger.info("May now impersonate ServiceAccounts of namespace %s (granted)", namespace)

    def _delete(self, namespace: str) -> None:
        try:
            self._rbac.delete_namespaced_role_binding(ROLE_BINDING, namespace, _request_timeout=30)
        except client.ApiException as error:
            if error.status != 404:
                raise
        logger.info("No longer impersonates ServiceAccounts of namespace %s", namespace)


async def keep_bindings(api: client.ApiClient, config: OperatorConfig, log: Any) -> None:
    """Sync now, then whenever the grants may have changed (see the module docstring)."""
    if config.tenancy is Mode.OPEN:
        log.info(
            "HERD_TENANCY=open: no impersonation RoleBindings are kept; bind the ClusterRole "
            "herd-impersonate-serviceaccounts where Stacks use spec.serviceAccountName"
        )
        return
    bindings = ImpersonationBindings(api, config)
    last: tuple[str, ...] | None = None
    synced = 0.0
    while True:
        try:
            grants, _ = await asyncio.to_thread(list_grants, api)
            granted = tuple(sorted({ns for g in grants for ns in g.spec.namespaces}))
            if granted != last or time.monotonic() - synced > config.resync_seconds:
                await asyncio.to_thread(bindings.sync, granted)
                last, synced = granted, time.monotonic()
        except HerdError as error:
            log.warning("Cannot keep the impersonation RoleBindings: %s", error)
        except API_ERRORS as error:
            log.warning("Cannot keep the impersonation RoleBindings: %s", api_error_summary(error))
        except Exception:  # a bug here must not end the loop for good
            logger.exception("Unexpected error keeping the impersonation RoleBindings")
        await asyncio.sleep(config.fleet_seconds)
