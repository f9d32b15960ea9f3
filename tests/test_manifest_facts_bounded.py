"""A stored manifest's facts come from the worker pool, bounded (`bounded_manifest_facts`).

The GPU probe and the fit warning read `helm get manifest` output: data whoever writes the
release's namespace controls. Parsed in a worker, a hostile one costs a bounded child, and
the event loop keeps running."""

from __future__ import annotations

import asyncio

from herd.addons.images import bounded_manifest_facts, manifest_facts
from loop_watch import late_while

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      containers:
        - {name: web, image: nginx:1.25, resources: {limits: {nvidia.com/gpu: 2}}}
"""
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(20)
)


async def test_facts_from_the_worker_are_the_parsers() -> None:
    found = await bounded_manifest_facts(MANIFEST, "apps")
    assert found == manifest_facts(MANIFEST, "apps")
    assert found.images == {"docker.io/library/nginx:1.25"} and found.gpus.total == 2


async def test_a_hostile_manifest_gives_no_facts() -> None:
    found = await bounded_manifest_facts(BOMB, "apps")
    assert not found.images and not found.workloads and not found.gpus.total


async def test_the_event_loop_runs_while_a_big_manifest_is_parsed() -> None:
    """On the loop, a timer would be late by about the whole parse; off it, by a fraction
    of it (not a timed test: the bound is relative to the parse's own time)."""
    big = "".join(
        "---\n" + MANIFEST.replace("{name: web}", f"{{name: web-{i}}}") for i in range(3000)
    )
    found, late, took = await late_while(bounded_manifest_facts(big, "apps"))
    assert len(found.workloads) == 3000
    # The machine's own scheduling noise, measured the same way over an idle wait as long
    # as the parse: on a loaded machine (CI beside other work) the timer is late even when
    # nothing blocks the loop, but a parse on the loop is late by about all of `took`.
    _, noise, _ = await late_while(asyncio.sleep(took))
    assert late < max(0.25, took / 4) + 2 * noise, (late, took, noise)
