"""``regexplain reproduce``: the main job (see :mod:`regexplain.pipeline`)."""

from __future__ import annotations

import argparse

from regexplain.commands.options import seed_value


def register(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="synthesise data if missing, train or reuse the three models, "
                              "run the notebooks, write figures/ and RESULTS.md")
    p.add_argument("--profile", default="quick", help="smoke | quick | fast | paper, or a YAML path (default quick)")
    p.add_argument("--figures", default="figures", help="output directory for figures and results")
    p.add_argument("--data", default="data", help="data directory (phantoms are synthesised here if empty)")
    p.add_argument("--runs", default="runs", help="directory of training runs (checkpoints are reused)")
    p.add_argument("--seed", type=seed_value, default=0, help="0 .. 2^32 - 1 (default 0)")
    p.add_argument("--force", action="store_true", help="retrain even when finished checkpoints exist")
    p.add_argument("--notebooks", nargs="*", default=None, metavar="NN",
                   help="only run these notebooks (number prefixes, e.g. 01 04)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from regexplain.pipeline import reproduce

    reproduce(args.profile, args.figures, args.data, args.runs, args.force, seed=args.seed,
              notebooks=args.notebooks)
    return 0
