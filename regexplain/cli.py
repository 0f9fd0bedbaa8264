"""Command-line interface: ``regexplain <command> ...``.

Each area of the package registers its own sub-commands in ``regexplain/commands/<area>.py`` through a
``register(subparsers)`` function; this module only assembles them and turns package errors, and the
operating system's errors about files (permission denied, not a folder...), into one readable line
(exit code 2) that starts on a line of its own, below any interrupted progress bar.

Ctrl-C (SIGINT) and SIGTERM stop every command the same way: the work unwinds (atomic writes discard their
temp files, a new run folder without a checkpoint is removed), then one line says what was interrupted and
how to go on, and the exit code is 128 + the signal number (130, 143), without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

from regexplain import __version__, interrupts
from regexplain.config import ConfigError
from regexplain.errors import Interrupted, RegexplainError

COMMAND_MODULES = ("data", "train", "latent", "network", "match", "reproduce", "study", "explore", "pretrained")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="regexplain", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"regexplain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"regexplain.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"regexplain.commands.{name}":
                continue  # area not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # before torch loads OpenMP: threads that sleep while they wait. Spin-waiting threads made a 2-thread
    # quick step 4.6x slower than a 1-thread one whenever other jobs shared the cores (issue 21); idle,
    # the two policies are within 7 %. An OMP_WAIT_POLICY already set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    previous = interrupts.install()
    try:
        return int(args.func(args) or 0)
    except (RegexplainError, ConfigError, OSError) as e:
        _close_progress_bars()
        print(f"regexplain {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted) as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        interrupts.handled(previous)   # a second signal while the line is printed makes no traceback
        _close_progress_bars()
        print(f"regexplain {_command(args)}: interrupted by {signal.Signals(signum).name}; "
              f"{resume_hint(args)}", file=sys.stderr, flush=True)
        return 128 + int(signum)
    finally:
        interrupts.restore(previous)


def _command(args: argparse.Namespace) -> str:
    sub = getattr(args, "data_command", None) if args.command == "data" else None
    return f"{args.command} {sub}" if sub else args.command


def resume_hint(args: argparse.Namespace) -> str:
    """How to go on after an interruption of ``args``' command (what was kept is named)."""
    if args.command == "train":
        out = Path(args.out)
        if (out / "checkpoint.pt").is_file():
            return f"its last checkpoint is kept; continue with: regexplain train --out {out} --resume"
        return f"no checkpoint was written yet, so nothing was kept in {out}; run the same command again"
    if args.command in ("reproduce", "study"):
        return ("finished steps are kept; run the same command again to resume (finished runs are reused, an "
                "unfinished training continues from its last checkpoint)")
    return "nothing half-written was left (outputs are written whole or not at all); run the same command again"


def _message(e: Exception) -> str:
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        # "[Errno 13] Permission denied: 'x'" -> "x: permission denied" (the file first, like the rest)
        names = [str(n) for n in (e.filename, e.filename2) if n is not None]
        return f"{' -> '.join(names)}: {e.strerror[:1].lower()}{e.strerror[1:]}"
    return str(e)


def _close_progress_bars() -> None:
    """Close the bars an error interrupted: each ends its line, so the message starts on a new one."""
    from tqdm import std

    for bar in list(getattr(std.tqdm, "_instances", ())):
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
