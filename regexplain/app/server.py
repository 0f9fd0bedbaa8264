"""Start and stop the Voilà server that serves the explorer, on 127.0.0.1 only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from regexplain.app import ENV_BASIS, ENV_CHECKPOINT, ENV_CWD, ENV_DATA, ENV_DECOMPOSITION, ENV_READY, ENV_SUBJECT
from regexplain.app.notebook import write_notebook
from regexplain.errors import AppError

HOST = "127.0.0.1"
READY_NAME = "pages-ready.txt"



def free_port() -> int:
    """A port that was free a moment ago (the OS picks it; Voilà binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


#: Front-end extensions the page needs. Allow-listed because any other installed JupyterLab extension
#: (jupytext's, seen here) can fail to load in Voilà and stall the page at "Executing 1 of 1".
FRONTEND_EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "@voila-dashboards/widgets-manager8")


#: A page's kernel is shut down this many seconds after its page went away (Voilà / jupyter_server's idle
#: culling; a kernel with an open page is connected and never culled), checked every CULL_INTERVAL_S.
CULL_IDLE_S = 15
CULL_INTERVAL_S = 3
#: Kernels kept executed ahead of the next page load (Voilà's preheated pool): first paint without waiting
#: for Python, torch, the model and the data.
POOL_SIZE = 1
POOL_REFILL_DELAY_S = 8
#: The most kernels at once (open pages + the pool): a ceiling on memory (~0.3 GB RSS each; measured with 6:
#: 2.2 GB RSS summed, with 5: 1.9 GB) under bursts of page loads, where idle culling alone lags
#: (regexplain.app.kernels). A page beyond it waits for one to go, then is refused with a sentence.
MAX_KERNELS = 5


def voila_command(notebook: Path, port: int, *, cull_idle: int = CULL_IDLE_S, pool_size: int = POOL_SIZE,
                  max_kernels: int = MAX_KERNELS) -> list[str]:
    # port_retries=0: fail loudly rather than silently serve on another port than the one printed.
    allow = [f"--VoilaConfiguration.extension_allowlist={name}" for name in FRONTEND_EXTENSIONS]
    preheat = [f"--VoilaConfiguration.preheat_kernel={pool_size > 0}",
               f"--VoilaConfiguration.default_pool_size={max(pool_size, 0)}",
               # refill the pool once the page just served has drawn: not competing with it for the CPUs
               f"--VoilaKernelManager.fill_delay={POOL_REFILL_DELAY_S}"]
    cull = [f"--MappingKernelManager.cull_idle_timeout={cull_idle}",
            f"--MappingKernelManager.cull_interval={min(CULL_INTERVAL_S, max(cull_idle, 1))}",
            "--MappingKernelManager.cull_connected=False", "--MappingKernelManager.cull_busy=False",
            "--VoilaConfiguration.multi_kernel_manager_class=regexplain.app.kernels.BoundedKernelManager",
            f"--BoundedKernelManager.max_kernels={max(max_kernels, pool_size + 1)}"]
    return [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}",
            f"--Voila.ip={HOST}", "--Voila.port_retries=0", *allow, *preheat, *cull]


def check_port(port: int) -> None:
    """Raise :class:`AppError` naming ``--port`` when ``port`` on 127.0.0.1 is taken (a connect would
    otherwise reach the other server and look like Voilà being ready)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Voilà binds: TIME_WAIT is no conflict
        try:
            s.bind((HOST, port))
        except OSError as e:
            raise AppError(f"--port {port}: {HOST}:{port} is not free ({e.strerror}); choose another port "
                           "or leave --port out to get a free one") from e


def _die_with_parent(parent: int) -> None:
    """In the Voilà child, before exec: SIGTERM it when the launcher dies, however it dies (SIGKILL
    included), so no Voilà outlives its launcher. Linux only (prctl); elsewhere the launcher's signal
    handlers are the only guard."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the launcher died before prctl took effect
        os._exit(1)


@dataclass
class AppServer:
    process: subprocess.Popen
    port: int
    workdir: Path
    log: Path
    _owns_workdir: bool = field(default=True, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def ready_file(self) -> Path:
        """Where preheated kernels say their page is built (:data:`regexplain.app.ENV_READY`)."""
        return self.workdir / READY_NAME

    def pages_ready(self) -> list[float]:
        """Seconds each preheated kernel spent building its page, in the order they finished."""
        try:
            lines = self.ready_file.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        return [float(line.split()[1]) for line in lines if len(line.split()) == 2]

    def wait_ready(self, timeout: float = 300.0, *, count: int = 1) -> bool:
        """Wait until ``count`` preheated kernels have built their page (imports, model, data, decoded
        fields and first picture done): a browser asking now gets its picture without waiting for Python.
        False when Voilà exited or ``timeout`` passed first (the page then still opens, only later)."""
        deadline = time.monotonic() + timeout
        while len(self.pages_ready()) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def app_environment(decomposition: Path, checkpoint: Path | None, data: Path | None,
                    subject: str | None = None, basis: str | None = None, ready: Path | None = None
                    ) -> dict[str, str]:
    env = dict(os.environ)
    if ready is None:
        env.pop(ENV_READY, None)
    else:
        env[ENV_READY] = str(Path(ready).absolute())
    for key, value in ((ENV_SUBJECT, subject), (ENV_BASIS, basis)):
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    env[ENV_DECOMPOSITION] = str(Path(decomposition).absolute())
    for key, value in ((ENV_CHECKPOINT, checkpoint), (ENV_DATA, data)):
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(Path(value).absolute())
    # The kernel runs in the notebook's temp directory: relative paths stored in decomposition.json
    # must resolve against the directory the app was launched from, as on the command line.
    env[ENV_CWD] = os.getcwd()
    # A forced backend (the Makefile exports MPLBACKEND=Agg) would stop the kernel's inline backend from
    # turning figures into images.
    env.pop("MPLBACKEND", None)
    # Fewer malloc arenas for the kernel's threads (redraw worker, torch): less heap held per kernel.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    return env


def start_app(decomposition: str | Path, *, port: int | None = None, checkpoint: str | Path | None = None,
              data: str | Path | None = None, subject: str | None = None, basis: str | None = None,
              timeout: float = 60.0, quiet: bool = True, cull_idle: int = CULL_IDLE_S,
              pool_size: int = POOL_SIZE, max_kernels: int = MAX_KERNELS) -> AppServer:
    """Serve the explorer for ``decomposition``; returns once the port accepts connections.

    The decomposition is *not* validated here: the page itself shows a readable message when it cannot be
    opened (the CLI validates first). Paths are made absolute because the kernel runs in a temp directory.
    Memory stays bounded: a page's kernel is culled ``cull_idle`` seconds after its page went away,
    ``pool_size`` kernels wait preheated for the next page, and at most ``max_kernels`` kernels live at once
    (an unused one is shut down early to make room; :mod:`regexplain.app.kernels`).
    """
    if port:
        check_port(port)
    workdir = Path(tempfile.mkdtemp(prefix="regexplain-explore-"))
    notebook = write_notebook(workdir, title=launch_title(decomposition, basis))
    port = port or free_port()
    log = workdir / "voila.log"
    env = app_environment(Path(decomposition), _opt(checkpoint), _opt(data), subject, basis, workdir / READY_NAME)
    out = open(log, "wb") if quiet else None
    try:
        # Own session: a terminal's Ctrl-C reaches only the launcher, which then stops Voilà with SIGTERM
        # (Voilà's clean shutdown, kernels included) instead of Voilà dying mid-way on SIGINT.
        # The parent-death signal covers the launcher being killed outright (SIGKILL from a test's cleanup).
        # Linux sends it when the *thread* that started Voilà ends: call start_app from a thread that lives
        # as long as the server should (the CLI's main thread does).
        parent = os.getpid()
        process = subprocess.Popen(voila_command(notebook, port, cull_idle=cull_idle, pool_size=pool_size,
                                                 max_kernels=max_kernels),
                                   env=env, stdout=out,
                                   stderr=subprocess.STDOUT if quiet else None, start_new_session=True,
                                   preexec_fn=lambda: _die_with_parent(parent))
    finally:
        if out is not None:
            out.close()  # the child holds its own descriptor
    server = AppServer(process, port, workdir, log)
    try:
        _wait_for_port(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def launch_title(decomposition: str | Path, basis: str | None) -> str:
    """The tab title before the page names itself: the run folder (from decomposition.json) and the basis."""
    import json

    from regexplain.app.page import page_title

    try:
        meta = json.loads((Path(decomposition) / "decomposition.json").read_text())
        meta = meta.get("meta", meta)
    except (OSError, ValueError):
        meta = {}
    ckpt = Path(str(meta.get("checkpoint", Path(decomposition).absolute().parent)))
    run = ckpt.parent.name if ckpt.suffix == ".pt" else ckpt.name
    return page_title(run or Path(decomposition).name, basis or str(meta.get("basis", "pca")))


def _opt(p: str | Path | None) -> Path | None:
    return None if p is None else Path(p)


def _wait_for_port(server: AppServer, timeout: float) -> None:
    # A GET of "/" would already execute the notebook; a bare TCP connect is the cheap readiness probe.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log.read_text(errors="replace")[-2000:] if server.log.exists() else ""
            raise AppError(f"voila exited with code {server.process.returncode} before serving "
                           f"port {server.port}:\n{tail}")
        try:
            with socket.create_connection((HOST, server.port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.2)
            continue
        time.sleep(0.2)  # a port answered: it is Voilà's only if Voilà is still running
        if server.process.poll() is None:
            return
    raise AppError(f"voila did not open port {server.port} within {timeout:.0f} s (log: {server.log})")
