"""NeuVector scan results → a verdict per release and a summary per Stack. Pure.

`herd.addons.probe` fills one `ClusterScan` per target cluster: the images of each of
the Stack's releases there (from their manifests) and NeuVector's `ScanReport` (from its
REST API), or why there is none. The functions here decide, from those alone:

- `release_verdict`: a row's `securityScan`: Failed (an image has a vulnerability at or
  above the `failOn` severity), Pending (an image not scanned yet, or no report), Passed.
- `cluster_state`: Completed (every image scanned), Scanning (NeuVector is scanning),
  Pending (waiting for a scan or for NeuVector), Unavailable (NeuVector cannot be asked).
- `security_summary`: `status.security` and the `SecurityScanned` condition's
  status, reason and message. The Stack's state is its worst cluster's; vulnerabilities
  are counted once per image (the same image in ten clusters is one image).

Callers: `herd.status.addons`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from herd.api.status import SecurityStatus
from herd.status.facts import ClusterScan, FailOn, ImageScan, ScanState


class Verdict(enum.StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    PENDING = "Pending"


# Worst first: the Stack's scan state is its worst cluster's.
_SEVERITY = (ScanState.UNAVAILABLE, ScanState.SCANNING, ScanState.PENDING, ScanState.COMPLETED)


def release_verdict(images: frozenset[str] | None, scan: ClusterScan, fail_on: FailOn) -> Verdict:
    """A release's `securityScan`; `images` None means its images are not known."""
    if scan.report is None or images is None:
        return Verdict.PENDING
    found = [scan.report.images.get(image) for image in images]
    if any(result is not None and result.fails(fail_on) for result in found):
        return Verdict.FAILED
    if any(result is None for result in found):
        return Verdict.PENDING
    return Verdict.PASSED


def cluster_state(scan: ClusterScan) -> ScanState:
    if scan.report is None:
        return scan.state or ScanState.PENDING
    wanted = {image for images in scan.releases.values() for image in images}
    if wanted <= set(scan.report.images):
        return ScanState.COMPLETED
    return ScanState.SCANNING if scan.report.in_progress else ScanState.PENDING


@dataclass(frozen=True)
class SecuritySummary:
    status: SecurityStatus
    condition: Literal["True", "False"]
    reason: str
    message: str


def security_summary(scans: Sequence[ClusterScan]) -> SecuritySummary:
    """`status.security` and the SecurityScanned condition for the target clusters' scans."""
    if not scans:
        return SecuritySummary(
            SecurityStatus(neu_vector_enabled=True, scan_status=ScanState.PENDING.value),
            "False",
            "NoTargets",
            "No target cluster to scan",
        )
    states = {scan.cluster: cluster_state(scan) for scan in scans}
    worst = min(states.values(), key=_SEVERITY.index)
    worst_per_image: dict[str, ImageScan] = {}
    for scan in scans:
        if scan.report is None:
            continue
        for image in {i for images in scan.releases.values() for i in images}:
            result = scan.report.images.get(image)
            seen = worst_per_image.get(image)
            if result is not None and (seen is None or result.total > seen.total):
                worst_per_image[image] = result
    vulnerabilities = sum(r.total for r in worst_per_image.values())
    critical = sum(r.critical for r in worst_per_image.values())
    status = SecurityStatus(
        neu_vector_enabled=True,
        scan_status=worst.value,
        vulnerabilities=vulnerabilities,
        critical_issues=critical,
    )
    completed = sum(state is ScanState.COMPLETED for state in states.values())
    counts = f"{vulnerabilities} vulnerabilities, {critical} critical"
    if worst is ScanState.COMPLETED:
        reason = "CriticalVulnerabilitiesFound" if critical else "ScanCompleted"
        images = len(worst_per_image)
        message = f"{images} images scanned on {len(scans)} clusters: {counts}"
        return SecuritySummary(status, "True", reason, message)
    lagging = [s for s in scans if states[s.cluster] is worst]
    first = lagging[0]
    detail = {
        ScanState.UNAVAILABLE: f"NeuVector unavailable: {first.problem or 'no answer'}",
        ScanState.SCANNING: "NeuVector is scanning",
        ScanState.PENDING: first.problem or "images not scanned yet",
    }[worst]
    reason = {
        ScanState.UNAVAILABLE: "NeuVectorUnavailable",
        ScanState.SCANNING: "Scanning",
        ScanState.PENDING: "ScanPending",
    }[worst]
    message = (
        f"{completed} of {len(scans)} clusters scanned ({counts} so far); "
        f"{worst.value.lower()} on {len(lagging)}, first {first.cluster}: {detail}"
    )
    return SecuritySummary(status, "False", reason, message)
