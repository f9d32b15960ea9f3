"""Helm's errors, classified once: kind, transient or not, and a one-line message.

`classify` reads helm's stderr (never a kubeconfig or values file: helm does not print
them) into a `HelmFailure` fit for status rows and Events. Pure: no I/O, no pyhelm3.

Callers: `herd.helm.client` (which raises them and re-exports them), the rollout, the CLI.
"""

from __future__ import annotations

import enum
import re

from herd.errors import ReleaseError


class FailureKind(enum.StrEnum):
    AUTH = "AuthenticationFailed"
    TLS = "TLSVerifyFailed"
    CHART_NOT_FOUND = "ChartNotFound"
    REPO_UNREACHABLE = "RepoUnreachable"
    RENDER = "RenderFailed"
    TIMEOUT = "Timeout"
    OPERATION_IN_PROGRESS = "OperationInProgress"
    CLUSTER_UNREACHABLE = "ClusterUnreachable"
    API_TIMEOUT = "ApiTimeout"
    RESOURCE_CONFLICT = "ResourceConflict"
    INVALID = "InvalidResource"
    FORBIDDEN = "Forbidden"  # the API server's RBAC refused a call of Herd's own (CRD apply)
    FAILED = "HelmFailed"
    # A tenant's chart repository is on Herd's egress deny list (`herd.plan.egress`): no pull.
    EGRESS_DENIED = "RepoNotAllowed"


# (pattern in helm's stderr, kind, transient). First match wins; order matters. The texts
# are helm 3's and helm 4's (tests/test_failures.py holds both, as each printed them).
_RULES: tuple[tuple[re.Pattern[str], FailureKind, bool], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind, transient)
    for pattern, kind, transient in [
        (r"another operation .* is in progress", FailureKind.OPERATION_IN_PROGRESS, True),
        # A private source refused the credentials (or got none): permanent until the
        # Secret or the spec changes (the hold is keyed by the Secret's resourceVersion).
        (
            r"\b401\b|unauthorized|authentication required|authorization failed|"
            r"basic credential not found|pull access denied|\b403 forbidden",
            FailureKind.AUTH,
            False,
        ),
        # The source's certificate is not trusted: permanent until caSecretName (or the CA
        # in it) or insecureSkipTLSVerify changes.
        (
            r"x509: |tls: failed to verify certificate|certificate signed by unknown authority",
            FailureKind.TLS,
            False,
        ),
        (r"kubernetes cluster unreachable", FailureKind.CLUSTER_UNREACHABLE, True),
        # The API server or the connection to it was slow: the same call may succeed next
        # time. Placed before TIMEOUT, which is the chart's own resources not getting ready.
        (
            r"client\.timeout exceeded|tls handshake timeout|"
            r"unable to return a response in the time allotted|"
            r"etcdserver: request timed out|http2: client connection lost|"
            r"net/http: request canceled",
            FailureKind.API_TIMEOUT,
            True,
        ),
        # helm 4's watcher names the object first: "resource Deployment/ns/x not ready.
        # status: InProgress, ..." then "context deadline exceeded".
        (r"timed out waiting|context deadline exceeded", FailureKind.TIMEOUT, False),
        (
            r"execution error|parse error|failed to render|error converting yaml|"
            r"template: |values don't meet the specifications",
            FailureKind.RENDER,
            False,
        ),
        (
            r"chart .*not found|no chart version found|no chart name found|"
            r"404 not found|failed to fetch .* : 404|"
            r"\S+/\S+:\S+: not found",  # an OCI reference (host/repo/chart:version)
            FailureKind.CHART_NOT_FOUND,
            False,
        ),
        (
            r"is not a valid chart repository or cannot be reached|"
            r"failed to fetch .*index\.yaml|couldn't load repositories",
            FailureKind.REPO_UNREACHABLE,
            True,
        ),
        (
            # helm 4's server-side apply: another field manager owns a field the chart sets.
            r"resource that already exists|invalid ownership metadata|"
            r"conflict occurred while applying|apply failed with \d+ conflicts?",
            FailureKind.RESOURCE_CONFLICT,
            False,
        ),
        (
            r"connection refused|no such host|i/o timeout|dial tcp|eof$",
            FailureKind.CLUSTER_UNREACHABLE,
            True,
        ),
        (r" is invalid", FailureKind.INVALID, False),
    ]
)


_PULL_ONLY = frozenset({FailureKind.AUTH, FailureKind.TLS})


def auth_message(repo: str | None, secret: str | None) -> str:
    message = f"authentication failed for {repo or 'the chart repository'}"
    if secret:
        return f"{message} (credentials Secret {secret})"
    return f"{message} (no charts[].credentials set, or the chart does not exist)"


_SAYS_TIMEOUT = re.compile(r"timed out|deadline exceeded", re.IGNORECASE)


class HelmFailure(ReleaseError):
    """A classified helm error: `kind`, `transient`, and a one-line `message`."""

    def __init__(self, kind: FailureKind, message: str, *, transient: bool) -> None:
        self.kind = kind
        self.transient = transient
        self.message = clip(message)  # kept in status rows and Events: bounded
        super().__init__(self.message)


MESSAGE_LIMIT = 1000  # characters of a failure message kept in a row
STDERR_LIMIT = 64 * 1024  # the tail of helm's output that is classified (the error is last)


def clip(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """`message` cut to `limit` characters (an ellipsis marks the cut)."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


def first_line(stderr: str, limit: int = 300) -> str:
    """The line of helm's stderr that says what went wrong, without the `Error: ` noise."""
    lines = [ln.strip() for ln in stderr[-STDERR_LIMIT:].splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith("error")]
    line = (errors or lines or ["helm failed without a message"])[-1]
    line = re.sub(r"^error:\s*", "", line, flags=re.IGNORECASE)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def classify(
    stderr: str, *, pulling: bool = False, repo: str | None = None, secret: str | None = None
) -> HelmFailure:
    """One HelmFailure for helm's stderr. Connection errors while pulling are the repo's.

    A refused login while pulling from `repo` says "authentication failed for <repo>",
    naming the credentials Secret (`namespace/name`) when there is one, never its content.
    """
    stderr = stderr[-STDERR_LIMIT:]  # helm may echo tenant text; the patterns stay cheap
    message = first_line(stderr)
    for pattern, kind, transient in _RULES:
        if pattern.search(stderr):
            if kind in _PULL_ONLY and not pulling:
                continue  # an API server's 401 or certificate is not a chart source's
            if kind is FailureKind.AUTH:
                message = auth_message(repo, secret)
            if kind is FailureKind.TIMEOUT and not _SAYS_TIMEOUT.search(message):
                # helm 4 names the object not ready and prints the deadline on a line of
                # its own: keep the object, say that it was a timeout.
                message = f"timed out: {message}"
            unreachable_repo = pulling and kind is FailureKind.CLUSTER_UNREACHABLE
            return HelmFailure(
                FailureKind.REPO_UNREACHABLE if unreachable_repo else kind,
                message,
                transient=transient,
            )
    return HelmFailure(FailureKind.FAILED, message, transient=False)


def api_failure(
    what: str, status: int | None, detail: str = "", *, forbidden_hint: str = ""
) -> HelmFailure:
    """A failed Kubernetes API call of a release's own step (not helm's), classified.

    `what` says what was attempted (naming the object, never its content); `status` is the
    HTTP status (None: the API server did not answer); `detail` the server's message, for
    invalid objects. Forbidden and invalid are permanent; throttling, server errors and no
    answer are transient.
    """
    if status is None:
        return HelmFailure(
            FailureKind.CLUSTER_UNREACHABLE, f"{what}: API server unreachable", transient=True
        )
    kind, transient = _API_STATUS.get(status, (FailureKind.FAILED, status >= 500))
    message = f"{what}: HTTP {status}"
    if detail:
        message += f": {detail}"
    if status == 403 and forbidden_hint:
        message += f" ({forbidden_hint})"
    message = " ".join(message.split())  # one line, whatever the server's detail held
    if len(message) > _API_MESSAGE_LIMIT:
        message = message[: _API_MESSAGE_LIMIT - 1] + "…"
    return HelmFailure(kind, message, transient=transient)


_API_MESSAGE_LIMIT = 400


# HTTP status of a failed API call -> (kind, transient).
_API_STATUS: dict[int, tuple[FailureKind, bool]] = {
    400: (FailureKind.INVALID, False),
    403: (FailureKind.FORBIDDEN, False),
    404: (FailureKind.FAILED, False),
    409: (FailureKind.RESOURCE_CONFLICT, False),
    422: (FailureKind.INVALID, False),
    429: (FailureKind.API_TIMEOUT, True),
    504: (FailureKind.API_TIMEOUT, True),
}
_UPDATE_FAILED = re.compile(r"unable to get an update from .*?:\s*\n\s*(.+)", re.IGNORECASE)


def update_failure(output: str) -> str | None:
    """Why `helm repo update` could not fetch a repository's index (`Error: <reason>`),
    from its output; None when it could."""
    output = output[-STDERR_LIMIT:]
    found = _UPDATE_FAILED.search(output)
    if found:
        return f"Error: {found.group(1).strip()}"
    if "failed to update the following repositories" in output.lower():
        return first_line(output)
    return None
