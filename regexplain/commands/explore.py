"""``regexplain explore``: serve the λ-slider explorer of a decomposition with Voilà on 127.0.0.1."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from regexplain.pretrained import PRETRAINED

#: The longest the launcher waits for the page to be prepared before it announces the URL anyway.
READY_TIMEOUT_S = 180.0


def register(subparsers) -> None:
    p = subparsers.add_parser("explore", help="serve the λ-slider explorer in a browser (Voilà, 127.0.0.1)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--decomposition", type=Path, help="directory written by `decompose`")
    src.add_argument("--pretrained", choices=tuple(PRETRAINED),
                     help="a trained quick model shipped with regexplain, on freshly synthesised phantoms (no "
                          "training first; `regexplain pretrained list`)")
    p.add_argument("--port", type=_port, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint or run dir (default: the decomposition's)")
    p.add_argument("--data", type=Path, help="data directory (default: the decomposition's)")
    p.add_argument("--subject", help="validation subject shown first: its id or a 0-based number (default: 0); "
                   "the page's subject menu switches between all of them")
    from regexplain.config import BASES

    p.add_argument("--basis", choices=BASES, help="show the components of another basis, fitted on the run's "
                   "training codes when the decomposition is in a different one (default: the decomposition's)")
    p.set_defaults(func=_explore)


def _explore(args: argparse.Namespace) -> int:
    from regexplain.app.inputs import check_model, check_sources
    from regexplain.app.server import start_app

    if args.pretrained:
        from regexplain.pretrained import materialize, origin_line

        run = materialize(args.pretrained, data=args.data, progress=False)
        print(f"regexplain explore: {origin_line(args.pretrained, run)}", flush=True)
        args.decomposition, args.data = run / "decomposition", None

    # Fail here, with exit code 2 and one line, rather than serve a page that can only show an error.
    dec, ckpt, _ = check_sources(args.decomposition, checkpoint=args.checkpoint, data=args.data)
    if args.subject is not None or args.basis:  # opening the data costs seconds: only when it can fail
        from regexplain.app.inputs import load_inputs

        load_inputs(args.decomposition, checkpoint=args.checkpoint, data=args.data, subject=args.subject,
                    basis=args.basis)
    else:  # the checkpoint opens and has the decomposition's latent shape (as casestudy checks)
        check_model(args.decomposition, dec, ckpt)
    server = None
    previous = _stop_on_signals()
    try:  # entered before the URL is printed, so a signal at any point still stops Voilà
        started = time.monotonic()
        server = start_app(args.decomposition, port=args.port, checkpoint=args.checkpoint, data=args.data,
                           subject=args.subject, basis=args.basis, quiet=False)
        print(f"regexplain explore: preparing the page (model, data, first picture) at {server.url} ...",
              flush=True)
        # the URL is announced once the preheated kernel has built the page: opening it then shows the picture
        # in about a second instead of waiting for Python, torch, the model and the data
        ready = server.wait_ready(READY_TIMEOUT_S)
        note = f"ready after {time.monotonic() - started:.0f} s" if ready else "still preparing; it opens when ready"
        print(f"regexplain explore: serving {args.decomposition} at {server.url} ({note}; Ctrl-C to stop)",
              flush=True)
        while server.process.poll() is None:
            time.sleep(0.5)
        print(f"regexplain explore: voila exited with code {server.process.returncode}", file=sys.stderr)
        return server.process.returncode or 1
    except (KeyboardInterrupt, _Stopped):
        return 0
    finally:
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Stopped(BaseException):
    """Raised by the signal handler so that ``finally`` stops Voilà."""


def _stop_on_signals() -> dict:
    """SIGINT, SIGTERM and SIGHUP all stop the server. SIGINT explicitly too: a launcher started with
    SIGINT ignored (``cmd &`` in a script, some CI runners) would otherwise ignore Ctrl-C / ``kill -INT``."""
    def handler(signum, frame):
        raise _Stopped(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (an embedding application): leave its handlers alone
            break
    return previous


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"must be in 1..65535, got {port}")
    return port
