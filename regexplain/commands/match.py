"""``regexplain match``: do trainings of one architecture find the same elementary transformations?
(:mod:`regexplain.matching`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from regexplain.commands.options import int_at_least


def register(subparsers) -> None:
    p = subparsers.add_parser("match", help="match the decoded components of runs trained with different seeds")
    p.add_argument("--runs", nargs="+", required=True, help="run directories (or checkpoints), the reference first")
    p.add_argument("--data", type=Path, help="dataset folder the runs read their splits from (default: the folder "
                   "each was trained on; e.g. a copy of the seed study's data on another machine)")
    p.add_argument("--out", required=True, type=Path, help="output directory (match.json, component1.png)")
    p.add_argument("--components", type=int_at_least(1), default=8, help="components compared (default 8)")
    p.add_argument("--null", type=int_at_least(1), default=20, help="random-direction draws per run (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_match)


def _match(args: argparse.Namespace) -> int:
    from regexplain.affine import foreground_mask
    from regexplain.errors import UsageError
    from regexplain.io import check_writable, write_json
    from regexplain.matching import cross_run_similarity, matched_displacements
    from regexplain.runs import open_run
    from regexplain.viz.figures import plot_slice_grid, save_figure
    from regexplain.viz.slices import slice_view

    if len(args.runs) < 2:
        raise UsageError("--runs: matching needs at least two runs")
    check_writable(args.out)
    data = {"root": str(args.data)} if args.data else None
    opened = [open_run(r, device="cpu", data=data, source="--data", decomposition=True, progress=False)
              for r in args.runs]
    shapes = {tuple(r.val.images.shape[2:]) for r in opened}
    if len(shapes) > 1:
        raise UsageError(f"--runs: the runs work at different shapes {sorted(shapes)}; match runs of one profile")
    pairs = [(r.model, r.decomposition) for r in opened]
    result = cross_run_similarity(pairs, foreground_mask(opened[0].train.labels), n=args.components,
                                  n_null=args.null, seed=args.seed)
    result["runs"] = [str(r.run_dir) for r in opened]
    write_json(args.out / "match.json", result)
    image, label = opened[0].val.images[0, 0].numpy(), opened[0].val.labels[0, 0].numpy()
    grid = [[slice_view(image, label, d, "axial") for d in matched_displacements(pairs, result, 1)]]
    save_figure(plot_slice_grid(grid, col_labels=[r.run_dir.name for r in opened], row_labels=["component 1"]),
                args.out / "component1.png")
    for c in result["components"]:
        print(f"component {c['component']}: matched |cos| {c['similarity']:.3f}  (null 95 % {c['null_p95']:.3f})")
    print(f"match: {args.out}")
    return 0
