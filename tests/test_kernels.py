"""The explorer's ceiling on kernels (regexplain/app/kernels.py), with real python3 kernels: a page beyond
``max_kernels`` waits for a kernel to go and gets its room when one does; when none goes it is refused with
a sentence (HTTP 503) after ``wait_for_room`` seconds; a kernel nobody uses is shut down early to make room."""

from __future__ import annotations

import asyncio
import time

import pytest
from deps import need

need("jupyter_server")

from regexplain.app.kernels import BoundedKernelManager  # noqa: E402  (after the dependency check)

pytestmark = pytest.mark.slow   # starts real kernels: about a second each


def manager(**kw) -> BoundedKernelManager:
    return BoundedKernelManager(**kw)


async def started(km: BoundedKernelManager, n: int) -> list[str]:
    return [await km.start_kernel(kernel_name="python3") for _ in range(n)]


async def used(km: BoundedKernelManager, kid: str) -> None:
    """A request answered, as a page's execution is: the kernel goes busy, then idle."""
    kc = km.get_kernel(kid).client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
    finally:
        kc.stop_channels()


def test_the_page_beyond_the_ceiling_waits_then_is_refused_with_a_sentence():
    from tornado import web

    async def scenario():
        km = manager(max_kernels=2, wait_for_room=2.0, evict_after=1e9)   # no kernel may be evicted
        try:
            ids = await started(km, 2)
            t0 = time.monotonic()
            with pytest.raises(web.HTTPError) as e:
                await km.start_kernel(kernel_name="python3")
            waited = time.monotonic() - t0
            assert sorted(km.list_kernel_ids()) == sorted(ids)     # none was started, none shut down
            return e.value, waited
        finally:
            await km.shutdown_all(now=True)

    error, waited = asyncio.run(scenario())
    assert error.status_code == 503
    assert error.log_message == "the explorer already holds 2 open pages: close one and reload this one"
    assert waited >= 2.0            # it waited for room before refusing


def test_a_waiting_page_gets_the_room_a_closed_one_leaves():
    async def scenario():
        km = manager(max_kernels=2, wait_for_room=120.0, evict_after=1e9)
        try:
            first, second = await started(km, 2)
            third = asyncio.ensure_future(km.start_kernel(kernel_name="python3"))
            await asyncio.sleep(1.0)
            assert not third.done() and len(km.list_kernel_ids()) == 2    # waiting, not over the ceiling
            await km.shutdown_kernel(first)                               # a page closed
            new = await asyncio.wait_for(third, 60)
            assert sorted(km.list_kernel_ids()) == sorted([second, new])
        finally:
            await km.shutdown_all(now=True)

    asyncio.run(scenario())


def test_an_unused_idle_kernel_is_shut_down_early_to_make_room():
    from datetime import timedelta

    from jupyter_server._tz import utcnow

    SECOND = timedelta(seconds=1)

    async def scenario():
        km = manager(max_kernels=2, wait_for_room=60.0, evict_after=0.0)
        try:
            first, second = await started(km, 2)
            assert km.unused_kernel() is None          # never used yet ("starting"): not evicted
            for kid in (first, second):
                await used(km, kid)
            deadline = time.monotonic() + 120
            while km.unused_kernel() is None:          # idle, without a page: may go
                assert time.monotonic() < deadline, "no kernel became idle"
                await asyncio.sleep(0.2)
            now = utcnow()   # the longest idle goes first (no await in between: nothing updates them meanwhile)
            km._kernels[first].last_activity, km._kernels[second].last_activity = now - 10 * SECOND, now - 5 * SECOND
            assert km.unused_kernel() == first
            km._kernels[first].last_activity = now - SECOND
            assert km.unused_kernel() == second
            new = await km.start_kernel(kernel_name="python3")   # no wait: one of the two made room
            ids = set(km.list_kernel_ids())
            assert len(ids) == 2 and new in ids and len(ids & {first, second}) == 1
            for kid in ids:
                km._kernel_connections[kid] = 1        # pages connected: never evicted
            assert km.unused_kernel() is None
        finally:
            await km.shutdown_all(now=True)

    asyncio.run(scenario())
