"""Generated Stack bodies through a real management API server and a real controller.

Role: register a Rancher cluster that can never be reached (its kubeconfig points at a
closed loopback port), create many generated Stacks at once (the API server's own
validation decides which are accepted), wait until every accepted one has a status
(phase and message) and judge the controller: it must not crash, and it must make no
helm call for a Stack it found invalid. Each body's repository URLs carry its own
marker (`stack_fuzz.mark`), so a logged helm call names the body behind it.

Callers: `e2e/test_fuzz_operator.py` (~30 bodies) and `benchmarks/_faults_fuzz.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.testbed import faults, rancher, stack_fuzz
from e2e.testbed.herd_controller import Controller

DEAD_CLUSTER = "fuzz-dead"
DEAD_ID = "c-m-fuzzdead"
DEAD_LABELS = {"env": "dev", "team": "fuzz"}
_GROUP, _VERSION, _PLURAL = "herd.suse.com", "v1", "stacks"


def register_dead_cluster(management: Path, namespace: str, directory: Path) -> None:
    """A Rancher cluster whose kubeconfig leads to 127.0.0.1:1 (connection refused)."""
    config = yaml.safe_load(management.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    config["users"][0]["user"] = {"token": "fuzz-not-a-secret"}
    path = directory / "dead-cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    rancher.register_clusters(
        management,
        [rancher.RancherCluster(DEAD_CLUSTER, DEAD_ID, path, dict(DEAD_LABELS))],
        namespace=namespace,
    )


def bodies(count: int, namespace: str) -> list[dict[str, Any]]:
    """`count` generated bodies (plus the targeted ones), named fuzz-NNNN, marked by name."""
    specs = stack_fuzz.generate(
        count, stack_fuzz.spec_strategy(repo=stack_fuzz.loopback_repo(), labels=DEAD_LABELS)
    )
    specs += [
        stack_fuzz.mark(s, stack_fuzz.MARKER)
        for s in stack_fuzz.targeted_specs(f"http://127.0.0.1:1/{stack_fuzz.MARKER}/")
    ]
    out = []
    for index, spec in enumerate(specs):
        name = f"fuzz-{index:04d}"
        out.append(stack_fuzz.stack_body(name, namespace, stack_fuzz.mark(spec, name)))
    return out


@dataclass
class Outcome:
    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # name -> API server's reason
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def with_status(self) -> list[str]:
        return [n for n in self.accepted if _clear(self.statuses.get(n))]

    def invalid(self) -> list[str]:
        """Accepted by the API server, judged invalid by Herd (phase Failed, no rows)."""
        return [
            n
            for n in self.accepted
            if (s := self.statuses.get(n) or {}).get("phase") == "Failed"
            and not s.get("deployments")
        ]


def _clear(status: dict[str, Any] | None) -> bool:
    return bool(status and status.get("phase") and status.get("message"))


def run(management: Path, namespace: str, specs: list[dict[str, Any]], timeout: float) -> Outcome:
    """Create every body, then wait (bounded) until each accepted one has a clear status."""
    outcome = Outcome()
    with rancher.api_client(management) as api:
        custom = client.CustomObjectsApi(api)
        for body in specs:
            name = body["metadata"]["name"]
            try:
                custom.create_namespaced_custom_object(_GROUP, _VERSION, namespace, _PLURAL, body)
                outcome.accepted.append(name)
            except ApiException as error:
                if error.status not in (400, 422):
                    raise
                outcome.rejected[name] = str(error.reason)
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            listed = cast(
                "dict[str, Any]",
                custom.list_namespaced_custom_object(_GROUP, _VERSION, namespace, _PLURAL),
            )
            outcome.statuses = {
                item["metadata"]["name"]: item.get("status") or {} for item in listed["items"]
            }
            if len(outcome.with_status()) == len(outcome.accepted):
                break
            time.sleep(2)
        outcome.seconds = time.monotonic() - start
    return outcome


@dataclass(frozen=True)
class Verdict:
    crashed: bool
    crash_lines: list[str]
    helm_calls: int
    helm_calls_for_invalid: list[str]


def judge(controller: Controller, outcome: Outcome, since: float) -> Verdict:
    log = controller.log_text()
    calls = controller.helm_calls(since)
    invalid = set(outcome.invalid())
    for_invalid = [
        " ".join(c.args)[:200]
        for c in calls
        if any(f"/{name}/" in arg for arg in c.args for name in invalid)
    ]
    return Verdict(
        crashed=not controller.alive(),
        crash_lines=faults.matching_lines(log, faults.CRASH_PATTERNS),
        helm_calls=len(calls),
        helm_calls_for_invalid=for_invalid,
    )
