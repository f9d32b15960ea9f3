"""Read the ClusterGrants of the management cluster (blocking; run in a worker thread).

Callers: the operator, before deciding a pass of a non-admin Stack (`herd.plan.tenancy.grants_for`
takes what this returns). Read fresh each pass, so a grant edit or deletion counts on the
next pass. An invalid grant grants nothing and comes back as a message (never its content
beyond the field at fault), for a log line.
"""

from __future__ import annotations

from kubernetes import client

from herd.api.grants import GRANT_PLURAL, ClusterGrant
from herd.api.v1 import VERSION
from herd.errors import TransientError
from herd.kube.client import API_ERRORS, api_error_summary, read_json
from herd.names import GROUP
from herd.plan.tenancy import parse_grants


def list_grants(api: client.ApiClient) -> tuple[list[ClusterGrant], list[str]]:
    """Every valid ClusterGrant, and one message per invalid one; `TransientError` if unreadable."""
    custom = client.CustomObjectsApi(api)
    try:
        body = read_json(custom.list_cluster_custom_object, GROUP, VERSION, GRANT_PLURAL)
    except API_ERRORS as error:
        raise TransientError(f"cannot list ClusterGrants: {api_error_summary(error)}") from None
    return parse_grants(body.get("items") or [])
