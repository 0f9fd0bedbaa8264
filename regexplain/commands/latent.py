"""``regexplain decompose | casestudy``: PCA of the latent space, and the paper's Fig 5 case study."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from regexplain.commands.options import add_data_options, finite_float, int_at_least, positive_float, seed_value
from regexplain.config import BASES


def register(subparsers) -> None:
    p = subparsers.add_parser("decompose", help="encode a dataset and fit the latent PCA (paper section 3.2)")
    p.add_argument("--model", required=True, help="checkpoint file or run directory")
    add_data_options(p, "data folder (default: the one the model was trained on)")
    p.add_argument("--out", required=True, type=Path, help="output directory (decomposition.npz/.json)")
    p.add_argument("--components", "-k", type=int_at_least(1),
                   help="K (default: the config's latent.n_components)")
    p.add_argument("--batch-size", type=int_at_least(1), default=8)
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: CUDA when present)")
    p.add_argument("--basis", choices=BASES,
                   default="pca", help="pca (the paper's, default), ica, sparse_pca, sefa (decoder weights, no data), "
                   "supervised (phantoms' factors.csv), random_orthonormal (null); see regexplain.analysis.bases")
    p.add_argument("--seed", type=seed_value, default=0,
                   help="seed of ica / sparse_pca / random_orthonormal (0 .. 2^32 - 1)")
    p.set_defaults(func=_decompose)

    c = subparsers.add_parser("casestudy", help="|a_j(X) - a_j(X')| under rotation / translation / scaling "
                              "(paper Fig 5)")
    c.add_argument("--model", required=True, help="checkpoint file or run directory")
    c.add_argument("--decomposition", required=True, type=Path, help="directory written by `decompose`")
    add_data_options(c, "data folder (default: the decomposition's)")
    c.add_argument("--out", required=True, type=Path, help="output directory (casestudy.npz/.json)")
    c.add_argument("--rotation", type=finite_float, default=20.0, help="degrees about z (default 20, the paper)")
    c.add_argument("--translation", type=finite_float,
                   help="voxels along z (default 10 * W / 64: the paper's 10 voxels at 64^3, scaled)")
    c.add_argument("--zoom", type=positive_float, default=1.2,
                   help="zoom factor > 0 (default 1.2: 'scaling of 0.2')")
    c.add_argument("--batch-size", type=int_at_least(1), default=8)
    c.add_argument("--device")
    c.set_defaults(func=_casestudy)


def _load(model_path: str, args: argparse.Namespace):
    from regexplain.commands.options import data_overrides
    from regexplain.runs import open_run
    from regexplain.runtime import select_device

    run = open_run(model_path, device=select_device(args.device), data=data_overrides(args))
    return run.model, run.cfg, run.train, run.val


def _decompose(args: argparse.Namespace) -> int:
    from regexplain.analysis.inputs import decompose_run
    from regexplain.errors import DataError, UsageError
    from regexplain.io import check_writable
    from regexplain.registration.checkpoint import checkpoint_path

    check_writable(args.out)
    model, cfg, train, val = _load(args.model, args)
    most = len(train.ids) - 1
    if args.components is not None and args.components > most:
        raise UsageError(f"--components/-k {args.components}: a PCA of {len(train.ids)} training volumes has "
                         f"at most {most} components")
    try:   # K: --components, else the profile's, capped for small datasets (analysis.inputs.n_components)
        dec, codes = decompose_run(model, cfg, checkpoint_path(args.model), train, val, k=args.components,
                                   basis=args.basis, seed=args.seed, batch_size=args.batch_size)
    except DataError:
        raise   # names its file already
    except ValueError as e:
        raise UsageError(f"--{e}") from e
    dec.save(args.out)
    s = dec.summary()
    print(f"K={dec.n_components} latent {tuple(codes.latent_shape)} ({codes.train.shape[1]} features), "
          f"{len(train.ids)} train / {len(val.ids)} val: explained {s['total']:.1%}, first four {s['first4']:.1%}")
    print(f"decomposition: {args.out}")
    return 0


def _casestudy(args: argparse.Namespace) -> int:
    from regexplain.analysis.casestudy import case_study_deltas, case_study_transforms, summarize_case_study
    from regexplain.analysis.latent import Decomposition
    from regexplain.errors import DataError
    from regexplain.io import atomic_path, check_writable, deferred_signals, write_json
    from regexplain.registration.checkpoint import checkpoint_path

    check_writable(args.out)
    dec = Decomposition.load(args.decomposition)
    if not args.data:
        args.data = dec.meta.get("data")
    model, cfg, _, val = _load(args.model, args)
    shape = tuple(val.images.shape[2:])
    if tuple(model.latent_shape(shape)) != tuple(dec.latent_shape):
        raise DataError(f"{args.decomposition}: latent shape {dec.latent_shape} does not match the model's "
                        f"{model.latent_shape(shape)} at {shape}")
    translation = 10.0 * shape[2] / 64 if args.translation is None else args.translation
    maps = case_study_transforms(shape, rotation_deg=args.rotation, translation_vox=translation,
                                 zoom=args.zoom)
    deltas = case_study_deltas(model, dec, val.images, maps, args.batch_size)
    arrays = {name: np.abs(d) for name, d in deltas.items()}
    arrays.update({f"{name}_signed": d for name, d in deltas.items()})
    arrays["ids"] = np.asarray(val.ids, dtype=str)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = summarize_case_study(deltas, dec.sigma)
    with deferred_signals():   # the pair is written whole: a Ctrl-C waits for the JSON
        with atomic_path(args.out / "casestudy.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        write_json(args.out / "casestudy.json", {
            "checkpoint": str(checkpoint_path(args.model)), "decomposition": str(args.decomposition),
            "data": cfg.data.root, "n_subjects": len(val.ids), "working_shape": list(shape),
            "transforms": {"rotation_deg_about_z": args.rotation, "translation_vox_along_z": translation,
                           "zoom_factor": args.zoom,
                           "note": "scaling of 0.2 read as a zoom factor 1 + 0.2 about the centre; translation "
                                   "in working-shape voxels (paper: 10 voxels at 64^3)"},
            "summary": summary})
    for name, s in summary.items():
        print(f"{name:12s} top component {s['top_by_median'] + 1:2d} (1-based)  top share "
              f"{s['top_share']:.2f}  participation ratio {s['participation_ratio']:.2f}")
    print(f"case study: {args.out}")
    return 0
