"""Command-line interface: ``regexplain <command> ...``.

Each area of the package registers its own sub-commands in ``regexplain/commands/<area>.py`` through a
``register(subparsers)`` function; this module only assembles them and turns package errors, and the
operating system's errors about files (permission denied, not a folder...), into one readable line
(exit code 2) that starts on a line of its own, below any interrupted progress bar.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from regexplain import __version__
from regexplain.config import ConfigError
from regexplain.errors import RegexplainError

COMMAND_MODULES = ("data", "train", "latent", "match", "reproduce", "study", "explore")


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
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (RegexplainError, ConfigError, OSError) as e:
        _close_progress_bars()
        print(f"regexplain {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2


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
