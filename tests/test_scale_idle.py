"""The scale benchmarks' idle accounting (`benchmarks._scale_idle`): pure arithmetic."""

from __future__ import annotations

import itertools

from benchmarks import _scale_idle as idle


def test_rates_are_per_second_and_skip_herd_and_helm() -> None:
    samples = itertools.chain(
        [{"kube-apiserver": 10.0, "etcd": 1.0, "herd controller": 5.0, "helm": 2.0}],
        itertools.repeat(
            {"kube-apiserver": 10.2, "etcd": 1.1, "herd controller": 9.0, "helm": 7.0}
        ),
    )
    rates = idle.idle_rates(lambda: next(samples), 0.05)
    assert set(rates) == {"kube-apiserver", "etcd"}
    assert 0 < rates["etcd"] < rates["kube-apiserver"] <= 0.2 / 0.05
    assert idle.idle_rates(lambda: next(samples), 0) == {}


def test_net_takes_the_idle_off_the_bed_only_and_never_below_zero() -> None:
    used = {"kube-apiserver": 10.0, "etcd": 0.5, "herd controller": 1.0, "helm": 4.0}
    rates = {"kube-apiserver": 0.1, "etcd": 0.05}
    assert idle.net(used, rates, 20) == {
        "kube-apiserver": 8.0,
        "etcd": 0.0,
        "herd controller": 1.0,
        "helm": 4.0,
    }


def test_per_release_line_names_the_total_and_herds_share() -> None:
    text = idle.per_release({"helm": 3.0, "herd controller": 1.0}, 2)
    assert text.startswith("helm 1.500 s, herd controller 0.500 s")
    assert text.endswith("total 2.000 CPU-s; Herd's share 25.0%")
