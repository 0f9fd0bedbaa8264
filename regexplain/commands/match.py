"""``regexplain match``: do trainings of one architecture find the same elementary transformations?
(:mod:`regexplain.analysis.matching`).

``match`` only reads its input runs: each run's decomposition is read from the run when it is cached there,
else fitted in memory. ``match.json`` records each run's architecture and latent shape; runs of different
architectures (skip vs no skip, other channels, other latent sizes) are refused unless ``--allow-mixed``,
and then ``match.json`` says that they were mixed and how.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from regexplain.commands.options import int_at_least, seed_value
from regexplain.config import MATCH_COMPONENTS as DEFAULT_COMPONENTS


def register(subparsers) -> None:
    p = subparsers.add_parser("match", help="match the decoded components of runs trained with different seeds")
    p.add_argument("--runs", nargs="+", required=True, help="run directories (or checkpoints), the reference first")
    p.add_argument("--data", type=Path, help="dataset folder the runs read their splits from (default: the folder "
                   "each was trained on; e.g. a copy of the seed study's data on another machine)")
    p.add_argument("--out", required=True, type=Path, help="output directory (match.json, component1.png)")
    p.add_argument("--components", type=int_at_least(1),
                   help=f"components compared, at most what every run has (default {DEFAULT_COMPONENTS}, or fewer "
                        "when the runs have fewer)")
    p.add_argument("--null", type=int_at_least(1), default=20, help="random-direction draws per run (default 20)")
    p.add_argument("--seed", type=seed_value, default=0, help="0 .. 2^32 - 1 (default 0)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="match runs of different architectures or latent shapes anyway (recorded in match.json)")
    p.set_defaults(func=_match)


def _match(args: argparse.Namespace) -> int:
    from regexplain.analysis.matching import match_figure, match_runs
    from regexplain.errors import UsageError
    from regexplain.io import check_writable, deferred_signals, write_json
    from regexplain.runs import open_run
    from regexplain.viz.figures import save_figure

    if len(args.runs) < 2:
        raise UsageError("--runs: matching needs at least two runs")
    _distinct_runs(args.runs)
    check_writable(args.out)
    data = {"root": str(args.data)} if args.data else None
    opened = [open_run(r, device="cpu", data=data, source="--data", progress=False) for r in args.runs]
    result = match_runs(opened, n=args.components, n_null=args.null, seed=args.seed, allow_mixed=args.allow_mixed)
    fig = match_figure(opened, result)
    with deferred_signals():   # match.json and its figure are written whole: a Ctrl-C waits for both
        write_json(args.out / "match.json", result)
        save_figure(fig, args.out / "component1.png")
    if result["mixed"]["differences"]:
        print(f"match: --allow-mixed: matched runs that differ ({'; '.join(result['mixed']['differences'])})")
    for c in result["components"]:
        print(f"component {c['component']}: matched |cos| {c['similarity']:.3f}  (null 95 % {c['null_p95']:.3f})")
    print(f"match: {args.out}")
    return 0


def _distinct_runs(runs: list[str]) -> None:
    """Refuse one run given twice (``R R``, ``R R/``, a symlink to R, ``R/checkpoint.pt``): matched with
    itself every component scores |cos| 1, which reads as a perfect agreement of two trainings."""
    from regexplain.errors import UsageError
    from regexplain.registration.checkpoint import checkpoint_path

    seen: dict[tuple[int, int] | str, str] = {}
    for run in runs:
        path = checkpoint_path(run)
        try:
            st = path.stat()
            key: tuple[int, int] | str = (st.st_dev, st.st_ino)   # the same file, however it is spelt
        except OSError:
            key = str(path.resolve())    # missing: open_run names it below
        if key in seen:
            raise UsageError(f"--runs: {run} is the same run as {seen[key]} (both are {path.resolve()}); "
                             "matching a run with itself scores every component 1.0: give runs trained "
                             "apart (other seeds)")
        seen[key] = run
