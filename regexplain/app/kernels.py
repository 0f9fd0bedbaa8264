"""A ceiling on the explorer's kernels: jupyter_server's kernel manager with ``max_kernels``.

Idle culling (``MappingKernelManager.cull_idle_timeout``, set by :mod:`regexplain.app.server`) frees a
page's kernel some seconds after the page went away; under a burst of page loads the kernels of pages just
closed are still waiting for it (measured: 10 kernels, 2.0 GB PSS, after 30 loads five at a time). Before
starting a kernel beyond ``max_kernels``, this manager shuts down early one that the culler would cull
anyway: no open page (no connection), not executing, not in Voilà's preheated pool, idle for
``evict_after`` seconds (the oldest first). When every kernel has an open page it waits for one to go,
then refuses the page with a sentence instead of exhausting the machine's memory.
"""

from __future__ import annotations

import asyncio
import time

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.utils import ensure_async
from tornado import web
from traitlets import Float, Integer


class BoundedKernelManager(AsyncMappingKernelManager):
    """``AsyncMappingKernelManager`` that never holds more than ``max_kernels`` kernels."""

    max_kernels = Integer(5, config=True, help="the most kernels (open pages + preheated pool) at once")
    evict_after = Float(5.0, config=True, help="a kernel without a page, idle this many seconds, may be shut "
                                               "down early to make room (a new page connects within seconds)")
    wait_for_room = Float(120.0, config=True, help="seconds a new page waits for a kernel to go before it is refused")

    _room: asyncio.Lock | None = None
    _starting = 0

    async def start_kernel(self, *args, **kwargs):
        if kwargs.get("kernel_id") is not None and kwargs["kernel_id"] in self:
            return await super().start_kernel(*args, **kwargs)
        if self._room is None:
            self._room = asyncio.Lock()
        async with self._room:  # check and reserve together: concurrent page loads never overshoot
            deadline = time.monotonic() + self.wait_for_room
            while len(self.list_kernel_ids()) + self._starting >= self.max_kernels:
                unused = self.unused_kernel()
                if unused is not None:
                    self.log.info("Shutting down kernel %s (no page, idle): at most %d kernels", unused,
                                  self.max_kernels)
                    await ensure_async(self.shutdown_kernel(unused))
                elif time.monotonic() > deadline:
                    raise web.HTTPError(503, f"the explorer already holds {self.max_kernels} open pages: close "
                                             "one and reload this one")
                else:
                    await asyncio.sleep(0.5)
            self._starting += 1
        try:
            return await super().start_kernel(*args, **kwargs)
        finally:
            self._starting -= 1

    def _pooled(self) -> set[str]:
        """Kernels waiting in Voilà's preheated pool (``_pools`` of its kernel manager, when preheating)."""
        ids = set()
        for pool in getattr(self, "_pools", {}).values():
            for future in pool:
                if future.done() and not future.cancelled() and future.exception() is None:
                    ids.add(future.result().get("kernel_id"))
        return ids

    def unused_kernel(self) -> str | None:
        """The longest-idle kernel without a page, or None."""
        from jupyter_server._tz import utcnow

        pooled, now, found = self._pooled(), utcnow(), []
        for kid in self.list_kernel_ids():
            kernel = self._kernels.get(kid)
            last = getattr(kernel, "last_activity", None)
            if (kid in pooled or self._kernel_connections.get(kid, 0) or last is None
                    or getattr(kernel, "execution_state", "") in ("busy", "starting")
                    or (now - last).total_seconds() < self.evict_after):
                continue
            found.append((last, kid))
        return min(found)[1] if found else None
