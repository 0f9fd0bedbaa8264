"""The main job's kernels are shut down without a SIGINT: jupyter_client's shutdown interrupts first, and a
SIGINT landing while ipykernel still finishes its last handler printed ``[IPKernelApp] ERROR |
KeyboardInterrupt caught in kernel.`` on the console (seen during notebook 05)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from regexplain import pipeline

pytestmark = pytest.mark.slow

# In the kernel: count every SIGINT in a file, and keep ipykernel from swapping the handler around each
# request (it installs its own for the duration of a handler and restores the previous one after).
RECORD_SIGINT = """
import signal
def _count(signum, frame, path={path!r}):
    with open(path, "a") as f:
        f.write("SIGINT\\n")
signal.signal(signal.SIGINT, _count)
k = get_ipython().kernel
k.pre_handler_hook = lambda: None
k.post_handler_hook = lambda: None
"""


async def _run_and_shut_down(manager_class, path: Path) -> None:
    km = manager_class(kernel_name="python3")
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        reply = await kc.execute_interactive(RECORD_SIGINT.format(path=str(path)), timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
        await km.shutdown_kernel()
    finally:
        kc.stop_channels()
        if await km.is_alive():
            await km.shutdown_kernel(now=True)


def test_the_main_jobs_kernel_manager_sends_no_sigint_on_shutdown(tmp_path):
    from jupyter_client.manager import AsyncKernelManager

    plain, quiet = tmp_path / "plain.txt", tmp_path / "quiet.txt"
    asyncio.run(_run_and_shut_down(AsyncKernelManager, plain))
    # the check can fail: jupyter_client's own manager does interrupt the kernel it shuts down
    assert plain.is_file() and "SIGINT" in plain.read_text()
    asyncio.run(_run_and_shut_down(pipeline._quiet_shutdown_kernel_manager(), quiet))
    assert not quiet.exists()
