"""Which chart repository hosts a tenant Stack may make Herd (and helm) contact. Pure.

A tenant's `charts[].repo` is attacker input: pointed at the cloud metadata address, at
loopback, at the management cluster's API server or at an in-cluster Service, a pull
would be a request Herd makes from inside the management cluster on the tenant's behalf
(SSRF). `EgressPolicy` is the deny list, the admins' allow list, and `decide` the verdict
for one repository URL and the addresses its host resolved to. The resolution itself is
I/O: `herd.helm.egress_guard` does it, just before the pull (`herd.helm.chart_cache.ChartCache`).

The rules, in the order a refusal names them:
- hard ones, which an allowed CIDR does not lift: the cloud metadata addresses, and the
  management cluster's API server (address and port, from the controller's own config);
- the fixed ones: link-local, loopback, unspecified (0.0.0.0/8, ::);
- `deny_networks` (`HERD_EGRESS_DENY_CIDRS`: the cluster's service and pod ranges).
An address in `allow_networks` (`HERD_EGRESS_ALLOW_CIDRS`) passes the fixed and configured
rules; a host in `allow_hosts` (`HERD_EGRESS_ALLOW_HOSTS`, `host` or `host:port`) passes
everything, without resolution. IPv4-mapped IPv6 addresses are judged as their IPv4 one.

A refusal names the field and the rule, never whether anything listens there: no
connection is made to a refused host, so there is no refused/timeout/404/TLS to tell.

Callers: `herd.helm.egress_guard`, `herd.operator.config` (parsing the settings).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# RKE2/k3s pod and service ranges (Rancher's own management clusters) and kubeadm's
# service range; set HERD_EGRESS_DENY_CIDRS to the management cluster's real ones.
DEFAULT_DENY_CIDRS = "10.42.0.0/16,10.43.0.0/16,10.96.0.0/12"
METADATA_NETWORKS = ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")
METADATA = "the cloud metadata address"
API_SERVER = "the management cluster's API server"
_FIXED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a link-local address", ("169.254.0.0/16", "fe80::/10")),
    ("a loopback address", ("127.0.0.0/8", "::1/128")),
    ("the unspecified address", ("0.0.0.0/8", "::/128")),
)
CONFIGURED = "in HERD_EGRESS_DENY_CIDRS (the cluster's service and pod ranges)"
_DEFAULT_PORTS = {"http": 80, "https": 443, "oci": 443}
# A host as helm's Go URL parser and Python's agree on it: a DNS name or an IP literal.
# Anything else (backslashes, percent-escapes, spaces) is refused rather than guessed at.
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})|\[[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True)
class Endpoint:
    """Where a repository URL connects: lowercased host (IPv6 without brackets), port."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class EgressPolicy:
    """The deny list and the admins' allow list for tenant repository hosts."""

    deny_networks: tuple[Network, ...] = ()
    allow_networks: tuple[Network, ...] = ()
    allow_hosts: frozenset[str] = frozenset()  # "host" or "host:port", lowercased
    # The management API server (address or name, and port); `herd.helm.egress_guard` resolves
    # a name before `decide`, which compares addresses only.
    api_servers: frozenset[Endpoint] = frozenset()

    def with_api_servers(self, endpoints: Iterable[Endpoint]) -> EgressPolicy:
        return EgressPolicy(
            self.deny_networks, self.allow_networks, self.allow_hosts, frozenset(endpoints)
        )


@dataclass(frozen=True)
class Verdict:
    """`rules` empty: allowed. Else what the addresses matched, for the message."""

    endpoint: Endpoint | None
    rules: tuple[str, ...] = field(default=())
    problem: str = ""  # the URL itself is unusable

    @property
    def allowed(self) -> bool:
        return not self.rules and not self.problem


def endpoint(url: str) -> Endpoint | None:
    """The host and port a repository URL connects to; None when it has no plain host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    netloc = parts.netloc.rpartition("@")[2]
    host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    if parts.scheme not in _DEFAULT_PORTS or not _HOST.fullmatch(host) or "\\" in url:
        return None
    return Endpoint(host.strip("[]").lower().rstrip("."), port or _DEFAULT_PORTS[parts.scheme])


def host_allowed(policy: EgressPolicy, where: Endpoint) -> bool:
    """An admin allowed this host (any port) or this host:port by name."""
    host = f"[{where.host}]" if ":" in where.host else where.host
    return bool({where.host, host, f"{host}:{where.port}"} & policy.allow_hosts)


def address_rules(policy: EgressPolicy, address: Address, port: int) -> list[str]:
    """The rules one resolved address breaks (empty: it may be contacted)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    found: list[str] = []
    if any(address in ipaddress.ip_network(n) for n in METADATA_NETWORKS):
        found.append(METADATA)
    if any(e.port == port and literal_address(e.host) == address for e in policy.api_servers):
        found.append(API_SERVER)
    if any(address in network for network in policy.allow_networks):
        return found
    for rule, networks in _FIXED:
        if any(address in ipaddress.ip_network(n) for n in networks):
            found.append(rule)
    if any(address in network for network in policy.deny_networks):
        found.append(CONFIGURED)
    return found


def decide(policy: EgressPolicy, url: str, addresses: Sequence[Address] | None) -> Verdict:
    """The verdict for `url` whose host resolved to `addresses` (None: not resolved yet,
    which is enough for a host allowed by name or an unusable URL)."""
    where = endpoint(url)
    if where is None:
        return Verdict(None, problem="is not an http(s):// or oci:// URL with a plain host")
    if host_allowed(policy, where):
        return Verdict(where)
    rules: list[str] = []
    for address in addresses or ():
        rules += [rule for rule in address_rules(policy, address, where.port) if rule not in rules]
    return Verdict(where, tuple(rules))


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def refusal_message(field_path: str, verdict: Verdict) -> str:
    """The row message of a refused repository: field and rule first (a row message is
    clipped at 200 characters), then the host."""
    if verdict.problem or verdict.endpoint is None:
        return f"{field_path} {verdict.problem or 'has no host'}"
    return (
        f"{field_path}: not allowed for a tenant Stack, nothing contacted: host "
        f"{verdict.endpoint.host[:63]!r} is {' and '.join(verdict.rules)} "
        "(admins may allow it: HERD_EGRESS_ALLOW_HOSTS)"
    )


def parse_networks(raw: str, setting: str) -> tuple[Network, ...]:
    """A comma-separated CIDR list; ValueError naming the setting and the bad entry."""
    networks = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{setting}: {entry!r} is not a CIDR (e.g. 10.43.0.0/16)") from None
    return tuple(networks)


def parse_hosts(raw: str) -> frozenset[str]:
    """`HERD_EGRESS_ALLOW_HOSTS`: comma-separated `host` or `host:port`, lowercased."""
    return frozenset(part.strip().lower().rstrip(".") for part in raw.split(",") if part.strip())
