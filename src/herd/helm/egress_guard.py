"""The egress check of a tenant Stack's chart repositories, just before helm pulls.

`RepoGuard` is made per pass of a Stack bounded by grants (`herd.engine.engine`), for the
Stack's own charts (`spec.charts[i]`, by name; add-on charts come from the admins'
configuration and are not checked). `herd.helm.chart_cache.ChartCache` calls it before
every pull: it resolves the repository's host (once per pass and host, in a small dedicated
thread pool, so neither the event loop nor the shared worker threads wait on a slow DNS
server; with a timeout) and asks `herd.plan.egress.decide`. A refusal is a permanent
`HelmFailure` whose message names the field and the rule; nothing is contacted.

Residual risk: helm resolves the host again when it connects, so a DNS name that answers
differently the second time (DNS rebinding), an HTTP redirect, or an index.yaml whose
`urls` point elsewhere reach hosts this check did not see. The NetworkPolicy of
`install/` (egress: no metadata address, no pod/service ranges unless allowed) is the
backstop for those.

Callers: `herd.engine.engine` (makes it), `herd.helm.chart_cache.ChartCache` (calls it),
`herd.operator.runtime` (the management API server, `api_server_endpoint`).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from herd.api.charts import ChartSpec
from herd.helm.failures import FailureKind, HelmFailure
from herd.plan.egress import (
    Address,
    EgressPolicy,
    Endpoint,
    decide,
    endpoint,
    host_allowed,
    literal_address,
    refusal_message,
)

RESOLVE_SECONDS = 5.0
# Its own threads: a tenant whose DNS never answers must not hold the default executor
# that Secret reads and helm bookkeeping share. Threads start on first use.
_RESOLVERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="herd-dns")


def _getaddrinfo(host: str, port: int) -> list[Address]:
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[Address] = []
    for *_, sockaddr in found:
        address = literal_address(str(sockaddr[0]).split("%", 1)[0])  # fe80::1%eth0
        if address is not None and address not in out:
            out.append(address)
    return out


async def resolve(host: str, port: int, timeout: float = RESOLVE_SECONDS) -> list[Address]:
    """Every address `host` resolves to; OSError or TimeoutError when it does not."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    work = loop.run_in_executor(_RESOLVERS, _getaddrinfo, host, port)
    return await asyncio.wait_for(work, timeout)


class RepoGuard:
    """One pass's check of a tenant Stack's repositories. `fields`: chart name → the field
    path of its `repo` (`spec.charts[i].repo`); other charts pass unchecked."""

    def __init__(
        self,
        policy: EgressPolicy,
        fields: Mapping[str, tuple[str, str]],
        timeout: float = RESOLVE_SECONDS,
    ) -> None:
        self._policy = policy
        self._fields = dict(fields)  # chart name -> (repo URL, field path)
        self._timeout = timeout
        self._verdicts: dict[str, asyncio.Task[None]] = {}

    @classmethod
    def for_charts(
        cls, policy: EgressPolicy, charts: Sequence[ChartSpec], skip: frozenset[str] = frozenset()
    ) -> RepoGuard:
        """A guard for `spec.charts` as the tenant wrote them (`skip`: repos not pulled)."""
        fields = {
            chart.name: (chart.repo, f"spec.charts[{i}].repo")
            for i, chart in enumerate(charts)
            if chart.repo not in skip
        }
        return cls(policy, fields)

    async def __call__(self, chart: ChartSpec) -> None:
        """Raise `HelmFailure` when `chart`'s repository may not be contacted."""
        wanted = self._fields.get(chart.name)
        if wanted is None or wanted[0] != chart.repo:
            return
        url, where = wanted
        if url not in self._verdicts:
            self._verdicts[url] = asyncio.ensure_future(self._check(url, where))
        await asyncio.shield(self._verdicts[url])

    async def _check(self, url: str, where: str) -> None:
        verdict = decide(self._policy, url, None)  # unusable URL, or a host allowed by name
        if verdict.endpoint is None or verdict.problem:
            raise _refused(refusal_message(where, verdict))
        target = verdict.endpoint
        if host_allowed(self._policy, target):
            return
        try:
            policy = await _resolved_api_servers(self._policy, self._timeout)
            addresses = await resolve(target.host, target.port, self._timeout)
        except (OSError, TimeoutError):
            raise HelmFailure(
                FailureKind.REPO_UNREACHABLE,
                f"{where}: cannot resolve host {target.host!r}",
                transient=True,
            ) from None
        verdict = decide(policy, url, addresses)
        if not verdict.allowed:
            raise _refused(refusal_message(where, verdict))


def _refused(message: str) -> HelmFailure:
    return HelmFailure(FailureKind.EGRESS_DENIED, message, transient=False)


def api_server_endpoint(url: str) -> Endpoint | None:
    """The management API server's host and port, from the client's configured host."""
    return endpoint(url)


async def _resolved_api_servers(policy: EgressPolicy, timeout: float) -> EgressPolicy:
    """`policy` with the API server's name (if a name) replaced by its addresses. One that
    does not resolve is left out: the deny CIDRs and the NetworkPolicy still apply."""
    names = [e for e in policy.api_servers if literal_address(e.host) is None]
    if not names:
        return policy
    endpoints = {e for e in policy.api_servers if literal_address(e.host) is not None}
    for named in names:
        try:
            addresses = await resolve(named.host, named.port, timeout)
        except (OSError, TimeoutError):
            continue
        endpoints |= {Endpoint(str(a), named.port) for a in addresses}
    return policy.with_api_servers(endpoints)
