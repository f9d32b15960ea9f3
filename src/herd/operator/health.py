"""`/healthz` of the controller process, for leader and standby alike.

Callers: `herd.operator.handlers.run`, with the `LeaderElector`'s `leading` flag as role.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


async def serve_health(port: int, leading: Callable[[], bool]) -> web.AppRunner | None:
    """`/healthz` for leader and standby alike (kopf's own endpoint runs only when leading).

    A standby is alive and ready: the Deployment's rollout and liveness must not depend
    on which replica leads.
    """
    if not port:
        return None

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"role": "leader" if leading() else "standby"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 (probed by the kubelet)
    return runner
