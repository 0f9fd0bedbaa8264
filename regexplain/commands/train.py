"""``regexplain train | register | evaluate``: train a model, register two NIfTI files, score a model."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from regexplain.commands.options import add_data_options, data_overrides, int_at_least
from regexplain.config import FAMILIES, PRECISIONS, family_overrides, load_config
from regexplain.data.datasets import DATASETS


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a registration network into a run directory")
    p.add_argument("--profile", help="smoke | quick | fast | paper | a YAML file (default quick; with --resume: the "
                   "run's own)")
    p.add_argument("--dataset", choices=tuple(DATASETS), help="default hippocampus (with --resume: the run's own)")
    add_data_options(p, "data folder, MSD or lung layout, at least 4 subjects (default: the profile's "
                     "data.root); a missing or empty folder is an error")
    p.add_argument("--out", required=True, help="run directory (checkpoint.pt, config.yaml, log.jsonl...)")
    p.add_argument("--skip-connections", action="store_true", help="the ablation with skip connections")
    p.add_argument("--family", choices=FAMILIES[:3],
                   help="another network: MONAI's VoxelMorph or LocalNet, trained with regexplain's losses (and "
                   "VoxelMorph's diffusion smoothness); your own network: model.family factory in a --profile "
                   "YAML (docs/your_network.md)")
    p.add_argument("--resume", action="store_true", help="continue RUN/checkpoint.pt with its stored config")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--max-minutes", type=float, help="override train.max_minutes (0 = no limit)")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: CUDA when present)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    r = subparsers.add_parser("register", help="register a moving NIfTI onto a fixed one")
    r.add_argument("--model", required=True, help="checkpoint file or run directory")
    r.add_argument("--moving", required=True, type=Path)
    r.add_argument("--fixed", required=True, type=Path)
    r.add_argument("--moving-label", type=Path, help="label of the moving image, warped too")
    r.add_argument("--out", required=True, type=Path,
                   help="output directory, on the fixed grid: warped.nii.gz, warped_label.nii.gz, "
                        "displacement_voxels.nii.gz (regexplain's field, voxels) and displacement_itk.nii.gz "
                        "(the transform for ITK / ANTs / Slicer: mm, LPS, vector intent)")
    r.add_argument("--device")
    r.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="bfloat16: bf16 autocast for the network (faster on AVX-512/AMX CPUs and GPUs; "
                        "maps within ~0.01 voxel); default float32")
    r.set_defaults(func=_register)

    e = subparsers.add_parser("evaluate", help="Dice / HD95 / SDlogJ / folding before and after registration, "
                              "the label-centroid translation baseline and the per-axis recovery")
    e.add_argument("--model", required=True, help="checkpoint file or run directory")
    add_data_options(e, "data folder (default: the one the model was trained on)")
    e.add_argument("--out", type=Path,
                   help="summary JSON, per-pair CSV beside it (default: MODEL_DIR/evaluation.json)")
    e.add_argument("--pairs", type=int_at_least(1),
                   help="number of validation pairs (default: the config's n_val_pairs)")
    e.add_argument("--device")
    e.set_defaults(func=_evaluate)


def _overrides(args: argparse.Namespace) -> dict:
    over: dict = {"train": {}, "data": data_overrides(args), "model": {}}
    if getattr(args, "family", None):
        fam = family_overrides(args.family)
        over["model"].update(fam.pop("model"))
        over.update(fam)
    if getattr(args, "skip_connections", False):
        over["model"]["skip_connections"] = True
    if args.steps is not None:
        over["train"]["steps"] = args.steps
    if args.max_minutes is not None:
        over["train"]["max_minutes"] = args.max_minutes
    return over


def _train(args: argparse.Namespace) -> int:
    from regexplain.registration.train import train
    from regexplain.runtime import select_device

    select_device(args.device)  # a bad --device fails here, before anything is read or written
    if args.resume:
        cfg = _resume_config(args)
    else:
        cfg = load_config(args.profile or "quick", args.dataset or "hippocampus", _overrides(args))
    metrics = train(cfg, args.out, resume=args.resume, device=args.device, progress=not args.no_progress)
    if metrics:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return 0


def _resume_config(args: argparse.Namespace):
    """The run's stored config, with only --steps / --max-minutes / --data applied on top."""
    from regexplain.config import override
    from regexplain.registration.checkpoint import checkpoint_config, checkpoint_path, read_checkpoint

    path = checkpoint_path(args.out)
    cfg = checkpoint_config(read_checkpoint(path), path)
    _check_same_run(cfg, args, path)
    over = _overrides(argparse.Namespace(data=args.data, steps=args.steps, max_minutes=args.max_minutes,
                                         split=None, n_train=None, n_val=None))
    over["data"].pop("exact_counts", None)  # the run's own split rule goes on
    return override(cfg, over, source=f"{path} + command line")


def _check_same_run(cfg, args: argparse.Namespace, path: Path) -> None:
    """A resumed run keeps its stored config: an option asking for another one is refused, not ignored."""
    from regexplain.config import profile_path
    from regexplain.errors import UsageError

    asked = []
    if args.profile is not None and profile_path(args.profile).stem != cfg.profile:
        asked.append(f"--profile {args.profile} (the run's profile is {cfg.profile})")
    if args.dataset is not None and args.dataset != cfg.data.dataset:
        asked.append(f"--dataset {args.dataset} (the run's dataset is {cfg.data.dataset})")
    if args.split is not None or args.n_train is not None or args.n_val is not None:
        asked.append("the split (--split/--n-train/--n-val)")
    if args.skip_connections and not cfg.model.skip_connections:
        asked.append("--skip-connections (the run was trained without skip connections)")
    if args.family is not None and args.family != cfg.model.family:
        asked.append(f"--family {args.family} (the run's family is {cfg.model.family})")
    if asked:
        raise UsageError(f"{path}: --resume continues the run with its stored config; it cannot change "
                         f"{'; '.join(asked)}. Train into a new --out instead")


def _register(args: argparse.Namespace) -> int:
    from regexplain.io import check_writable
    from regexplain.registration.checkpoint import load_model
    from regexplain.registration.inference import register_files
    from regexplain.runtime import select_device

    device = select_device(args.device)
    check_writable(args.out)
    model, cfg = load_model(args.model, device)
    written = register_files(model, cfg, args.moving, args.fixed, args.out, moving_label=args.moving_label,
                             device=device, precision=args.precision)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from regexplain.data.pairs import load_splits, validation_pairs
    from regexplain.io import atomic_path, check_writable, deferred_signals, write_json
    from regexplain.registration.checkpoint import checkpoint_path, load_model
    from regexplain.registration.evaluation import baseline_and_axes, evaluate_pairs
    from regexplain.runs import with_data
    from regexplain.runtime import select_device

    device = select_device(args.device)
    model, cfg = load_model(args.model, device)
    out = args.out or checkpoint_path(args.model).parent / "evaluation.json"
    check_writable(out, kind="file")
    cfg = with_data(cfg, **data_overrides(args))
    _, val = load_splits(cfg.data)
    pairs = validation_pairs(val, args.pairs or cfg.train.n_val_pairs, cfg.data.seed)
    rows, summary = evaluate_pairs(model, val, pairs, cfg.data.num_labels, device=device)
    summary = {"checkpoint": str(checkpoint_path(args.model)), "data": cfg.data.root, **summary,
               **baseline_and_axes(rows)}
    table = Path(out).with_suffix(".csv")
    with deferred_signals():   # summary and table are written whole: a Ctrl-C waits for the table
        write_json(out, summary)
        with atomic_path(table) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    for key in ("dice_before", "dice_after", "folding_pct_after", "sdlogj_after"):
        if key in summary:
            print(f"{key}: {summary[key]['mean']:.4f} +- {summary[key]['sd']:.4f}")
    print(f"dice_centroid_baseline: {summary['dice_centroid_baseline']:.4f} (the moving label translated by "
          "the difference of label centroids)")
    rec = summary["axis_recovery"]
    print("axis_recovery (slope of the recovered vs the true label-centroid offset; 1 = all, 0 = none): "
          + ", ".join(f"{a} {rec[a]:.2f}" for a in "xyz"))
    print(f"summary: {out}\nper pair: {table}")
    return 0
