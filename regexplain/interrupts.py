"""Ctrl-C and SIGTERM that no library can lose.

The CLI installs :func:`handle` for SIGINT and SIGTERM: it raises ``KeyboardInterrupt`` (SIGINT) or
:class:`~regexplain.errors.Interrupted` (SIGTERM) as usual, and also notes the signal. Some libraries swallow
``KeyboardInterrupt`` with a bare ``except:``: mpmath does while torch imports sympy for the first optimiser
of a process, and a Ctrl-C landing there let a whole study run on (1 run in ~100 of the interrupted study
test). Long loops (training steps, the study's runs, the main job's stages) call
:func:`raise_if_interrupted` at each step, so a swallowed signal still stops the command there; the CLI
forgets the signal once it has handled it.

Outside the CLI (a notebook, a script) nothing is installed and :func:`raise_if_interrupted` does nothing.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_noted: int | None = None


def _exception(signum: int) -> BaseException:
    from regexplain.errors import Interrupted

    return KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signum)


def handle(signum: int, frame: Any) -> None:
    """Signal handler: note ``signum`` and raise its exception."""
    global _noted
    _noted = signum
    raise _exception(signum)


def install() -> dict[int, Callable | int | None] | None:
    """Install :func:`handle` for SIGINT and SIGTERM; return the handlers it replaced (give them to
    :func:`restore`), or ``None`` outside the main thread (an embedding application keeps its own)."""
    forget()
    try:
        previous = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, handle)
    except ValueError:
        return None
    return previous


def restore(previous: dict[int, Callable | int | None] | None) -> None:
    """Put back the handlers :func:`install` replaced, and forget any noted signal."""
    for s, h in (previous or {}).items():
        signal.signal(s, h if h is not None else signal.SIG_DFL)
    forget()


def raise_if_interrupted() -> None:
    """Raise the exception of a signal that arrived since :func:`install` and was swallowed on its way."""
    if _noted is not None:
        raise _exception(_noted)


def handled(previous: dict[int, Callable | int | None] | None) -> None:
    """The CLI caught the interruption and ends with 128 + the signal: further signals are ignored until
    :func:`restore` (its one line is printed whole), and the signal is forgotten, here and by CPython.

    CPython (3.10-3.13) notes "an unhandled KeyboardInterrupt" whenever one leaves an ``exec`` / ``eval`` of
    source text, even if an outer ``except`` handles it, and ``python -m`` then ends the process by SIGINT
    (exit -2, not 130) after the interpreter shuts down. A Ctrl-C during an import lands in such an ``exec``
    often (dataclasses and namedtuples build their methods from source): 1 run in 6 of the interrupted
    study test. The note is cleared at the start of every ``exec`` of source text, so one that finishes
    clears it."""
    if previous is not None:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
    forget()
    exec("pass")  # noqa: S102 - a constant: clears CPython's note (above), runs nothing


def forget() -> None:
    """The noted signal was handled (the CLI printed its line)."""
    global _noted
    _noted = None
