"""``regexplain match``: do trainings of one architecture find the same elementary transformations?
(:mod:`regexplain.matching`).

``match`` only reads its input runs: each run's decomposition is read from the run when it is cached there,
else fitted in memory. ``match.json`` records each run's architecture and latent shape; runs of different
architectures (skip vs no skip, other channels, other latent sizes) are refused unless ``--allow-mixed``,
and then ``match.json`` says that they were mixed and how.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from regexplain.commands.options import int_at_least, seed_value

#: components compared when --components is not given (capped by what the runs have)
DEFAULT_COMPONENTS = 8


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


def architecture(run) -> dict[str, Any]:
    """What makes two runs' components comparable: architecture and latent shape (recorded in match.json)."""
    shape = tuple(int(s) for s in run.val.images.shape[2:])
    return {"run": str(run.run_dir), "skip_connections": bool(run.cfg.model.skip_connections),
            "channels": [int(c) for c in run.cfg.model.channels], "working_shape": list(shape),
            "latent_shape": [int(s) for s in run.model.latent_shape(shape)], "profile": run.cfg.profile}


def differences(records: list[dict[str, Any]]) -> list[str]:
    """How the runs differ from the reference (the first) in what :func:`architecture` records."""
    ref, out = records[0], []
    for r in records[1:]:
        for key in ("skip_connections", "channels", "latent_shape"):
            if r[key] != ref[key]:
                out.append(f"{r['run']} has {key} {r[key]}, the reference {ref['run']} {ref[key]}")
    return out


def _match(args: argparse.Namespace) -> int:
    from regexplain.affine import foreground_mask
    from regexplain.errors import UsageError
    from regexplain.io import check_writable, deferred_signals, write_json
    from regexplain.matching import cross_run_similarity, matched_displacements
    from regexplain.runs import ensure_decomposition, open_run
    from regexplain.viz.figures import plot_slice_grid, save_figure
    from regexplain.viz.slices import slice_view

    if len(args.runs) < 2:
        raise UsageError("--runs: matching needs at least two runs")
    check_writable(args.out)
    data = {"root": str(args.data)} if args.data else None
    opened = [open_run(r, device="cpu", data=data, source="--data", progress=False) for r in args.runs]
    shapes = {tuple(r.val.images.shape[2:]) for r in opened}
    if len(shapes) > 1:
        raise UsageError(f"--runs: the runs work at different shapes {sorted(shapes)}; match runs of one profile")
    records = [architecture(r) for r in opened]
    mixed = differences(records)
    if mixed and not args.allow_mixed:
        raise UsageError(f"--runs: the runs are not comparable ({'; '.join(mixed)}); match runs of one "
                         "architecture, or pass --allow-mixed to match them anyway (match.json then says so)")
    for r, rec in zip(opened, records, strict=True):
        r.decomposition = ensure_decomposition(r.run_dir, data=(r.train, r.val), save=False)
        rec["n_components"] = int(r.decomposition.n_components)
    most = min(rec["n_components"] for rec in records)
    if args.components is not None and args.components > most:
        fewest = min(records, key=lambda rec: rec["n_components"])
        raise UsageError(f"--components {args.components}: the runs have at most {most} components "
                         f"({fewest['run']} has {most})")
    n = args.components or min(DEFAULT_COMPONENTS, most)
    pairs = [(r.model, r.decomposition) for r in opened]
    result = cross_run_similarity(pairs, foreground_mask(opened[0].train.labels), n=n, n_null=args.null,
                                  seed=args.seed)
    result["runs"] = records
    result["mixed"] = {"allowed": bool(args.allow_mixed), "differences": mixed}
    image, label = opened[0].val.images[0, 0].numpy(), opened[0].val.labels[0, 0].numpy()
    grid = [[slice_view(image, label, d, "axial") for d in matched_displacements(pairs, result, 1)]]
    fig = plot_slice_grid(grid, col_labels=[r.run_dir.name for r in opened], row_labels=["component 1"])
    with deferred_signals():   # match.json and its figure are written whole: a Ctrl-C waits for both
        write_json(args.out / "match.json", result)
        save_figure(fig, args.out / "component1.png")
    if mixed:
        print(f"match: --allow-mixed: matched runs that differ ({'; '.join(mixed)})")
    for c in result["components"]:
        print(f"component {c['component']}: matched |cos| {c['similarity']:.3f}  (null 95 % {c['null_p95']:.3f})")
    print(f"match: {args.out}")
    return 0
