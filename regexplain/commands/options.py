"""Argument types shared by the sub-commands: a bad number is refused by argparse (exit 2, the option named)
instead of being silently replaced by a default (``--pairs 0``) or failing deep inside (``-k -2``)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_at_least(low: int) -> Callable[[str], int]:
    """An ``int`` type that refuses values below ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


#: numpy's and scikit-learn's seeds are unsigned 32-bit integers; a bad one is named as the option here,
#: not as ``random_state`` from deep inside a library
SEED_MAX = 2**32 - 1


def seed_value(text: str) -> int:
    """A seed: an integer in ``0 .. 2^32 - 1``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must lie in 0 .. {SEED_MAX}, got {value}")
    return value


seed_value.__name__ = "seed"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def finite_float(text: str) -> float:
    """A finite ``float`` (``inf`` and ``nan`` parse as floats, and would only fail much later)."""
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite ``float`` > 0."""
    value = _number(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative(text: str) -> float:
    """A finite ``float`` >= 0."""
    value = _number(text)
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A ``float`` strictly between 0 and 1."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def add_data_options(p: argparse.ArgumentParser, data_help: str) -> None:
    """``--data`` and the split options (``--split`` or ``--n-train/--n-val``) of train / evaluate /
    decompose / casestudy; :func:`data_overrides` turns them into config overrides."""
    p.add_argument("--data", help=data_help)
    p.add_argument("--split", nargs=2, type=fraction, metavar=("TRAIN", "VAL"),
                   help="fractions of the subjects for training and validation, e.g. 0.8 0.2 (default: the "
                        "profile's n_train / n_val when the folder holds that many subjects, else their ratio)")
    p.add_argument("--n-train", type=int_at_least(2), help="training subjects (must fit the folder)")
    p.add_argument("--n-val", type=int_at_least(2), help="validation subjects (must fit the folder)")


def data_overrides(args: argparse.Namespace) -> dict:
    """``{"root"?, "split"?, "n_train"?, "n_val"?, "exact_counts"?}`` for ``cfg.data`` from the options of
    :func:`add_data_options` (absent options change nothing). UsageError for --split with counts."""
    from regexplain.errors import UsageError

    over: dict = {}
    if getattr(args, "data", None):
        over.update(root=str(args.data), exact_counts=False)   # another folder: counts that don't fit adapt
    if args.split is not None:
        if args.n_train is not None or args.n_val is not None:
            raise UsageError("--split gives fractions, --n-train/--n-val counts: use one or the other")
        if sum(args.split) > 1:
            raise UsageError(f"--split {args.split[0]} {args.split[1]}: the fractions sum to more than 1")
        over.update(split=list(args.split), exact_counts=False)
    for key in ("n_train", "n_val"):
        if getattr(args, key) is not None:
            over.update({key: getattr(args, key), "split": [], "exact_counts": True})
    return over
