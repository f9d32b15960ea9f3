"""The peer benchmark's report: which no-op pass is shown, and the targets' verdicts."""

from __future__ import annotations

from benchmarks._peers_measure import Figures
from benchmarks._peers_report import Result, _targets


def _figures(wall: float, cpu: float) -> Figures:
    return Figures(wall=wall, tool_cpu=cpu)


def test_the_median_no_op_pass_by_cpu_is_shown_and_every_pass_is_counted() -> None:
    noops = (_figures(0.3, 0.9), _figures(0.2, 0.1), _figures(0.4, 0.2))
    result = Result("diamond", 3, 5, "herd operator", _figures(9.0, 5.0), noops)

    assert result.noop is noops[2]
    assert result.passes == (result.deploy, *noops)
    single = Result("diamond", 3, 5, "helmfile", _figures(9.0, 5.0), (noops[0],))
    assert single.noop is noops[0]


def test_targets_compare_with_the_fastest_and_cheapest_peer_and_fluxs_no_op() -> None:
    flux = Result("rag", 3, 3, "flux", _figures(30.0, 6.0), (_figures(1.5, 1.0),))
    herd = Result("rag", 3, 3, "herd operator", _figures(9.0, 7.0), (_figures(0.3, 0.05),))

    [line] = _targets({"flux": flux, "herd operator": herd}, fastest=12.0, cheapest=6.0)

    assert line == "- herd operator: wall 0.75x met; CPU 1.17x NOT met; no-op 5% of Flux's met"
