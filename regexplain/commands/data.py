"""``regexplain data synth|download|info``: make, fetch and describe datasets."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from regexplain.commands.options import int_at_least, non_negative, seed_value
from regexplain.config import PHANTOM_REGIMES


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="synthesise, download or describe datasets")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    from regexplain.data.datasets import DATASETS

    s = sub.add_parser("synth", help="write phantoms with ground-truth factors")
    s.add_argument("kind", choices=tuple(DATASETS))
    s.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    s.add_argument("--n", type=int_at_least(2), default=None, help="subjects, at least 2 (default: " +
                   ", ".join(f"{k} {d.synth_count}" for k, d in DATASETS.items()) + ")")
    s.add_argument("--shape", type=int_at_least(4), nargs=3, metavar=("D", "H", "W"), default=None,
                   help="volume shape, sides >= 4 (default: the dataset's base shape)")
    s.add_argument("--seed", type=seed_value, default=0, help="0 .. 2^32 - 1 (default 0)")
    s.add_argument("--regime", choices=PHANTOM_REGIMES, default=PHANTOM_REGIMES[0],
                   help="hippocampus phantoms: calibrated (default: the paper's Dice before registration, a "
                        "T1-like structure as bright as its surroundings, every subject a warp of one anatomy), pose "
                        "(pose dominates), msd_like (shape dominates; both draw a bright structure) or population "
                        "(calibrated, each subject an anatomy of its own)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    s.set_defaults(func=_synth)

    d = sub.add_parser("download", help="download a public dataset (MSD Task04 Hippocampus)")
    d.add_argument("kind", choices=("hippocampus",))
    d.add_argument("--root", required=True, type=Path, help="folder that will hold dataset.json")
    d.set_defaults(func=_download)

    r = sub.add_parser("real", help="real-anatomy check data: hippocampus crops (MSD layout) cut from the T1 "
                       "templates installed packages ship (Debian mricron-data; nilearn, nimare)")
    r.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    r.add_argument("--crops", type=int_at_least(1), default=4,
                   help="crops per hemisphere of each template (default 4)")
    r.add_argument("--offset-mm", type=non_negative, default=4.0,
                   help="crop offset from the hippocampus' centre, uniform in [-o, o] mm per axis (default 4)")
    r.add_argument("--rotation-deg", type=non_negative, default=5.0,
                   help="crop rotation, uniform in [-r, r] degrees about each axis (default 5)")
    r.add_argument("--search", type=Path, action="append", default=[], metavar="DIR",
                   help="also look for the files under DIR (e.g. a `dpkg -x` of mricron-data or an unzipped "
                        "wheel); repeatable")
    r.add_argument("--seed", type=seed_value, default=0, help="0 .. 2^32 - 1 (default 0)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    r.set_defaults(func=_real)

    i = sub.add_parser("info", help="summarise a dataset folder")
    i.add_argument("root", type=Path)
    i.add_argument("--shape", type=int_at_least(4), nargs=3, metavar=("D", "H", "W"), default=None,
                   help="working shape of the registration statistics (default: the quick profile's)")
    i.add_argument("--pairs", type=int_at_least(1), default=200,
                   help="random pairs of different subjects for the Dice before registration (default 200)")
    i.add_argument("--no-stats", action="store_true",
                   help="skip the registration statistics (they preprocess every volume, cached)")
    i.set_defaults(func=_info)


def _synth(args: argparse.Namespace) -> int:
    from regexplain.data.datasets import get

    spec = get(args.kind)
    out = spec.synthesize(args.out, args.n or spec.synth_count, tuple(args.shape or spec.base_shape), args.seed,
                          args.regime, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def _real(args: argparse.Namespace) -> int:
    from regexplain.data.real_anatomy import build_from_packages

    out, found = build_from_packages(args.out, search=args.search, crops=args.crops, offset_mm=args.offset_mm,
                                     rotation_deg=args.rotation_deg, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {out} from " + ", ".join(s.name for s, _ in found.templates)
          + f" ({len({s.anatomy for s, _ in found.templates})} independent brains)")
    for line in found.missing:
        print(f"  not found: {line}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from regexplain.data import msd

    print(f"wrote {msd.download(args.root)}")
    return 0


def _counts(values) -> str:
    return ", ".join(f"{k} (x{n})" for k, n in Counter(values).most_common())


def describe(root: Path) -> str:
    """A readable summary: layout, volume count, shapes, spacings, label values, split, factors."""
    from regexplain.data import msd
    from regexplain.data.datasets import detect

    spec = detect(root)
    root = spec.dataset_dir(root)
    volumes = spec.read(root, None, True)   # as stored: spacings are part of the summary
    labels = sorted(set(np.unique(np.concatenate([np.unique(v.label) for v in volumes])).tolist()))
    lines = [
        f"dataset   {root}",
        f"layout    {spec.layout}",
        f"volumes   {len(volumes)} from {len({v.group for v in volumes})} subjects",
        f"shapes    {_counts(tuple(v.image.shape) for v in volumes)}",
        f"spacings  {_counts(tuple(round(s, 3) for s in v.spacing) for v in volumes)} mm",
        f"labels    {labels}",
        f"intensity {min(float(v.image.min()) for v in volumes):.4g} .. "
        f"{max(float(v.image.max()) for v in volumes):.4g}",
    ]
    split = root / "split.json"
    s = msd.read_split(split)
    if s is not None:
        lines.append(f"split     {len(s.get('train', []))} train / {len(s.get('val', []))} val "
                     f"(seed {s.get('seed')}, {s.get('rule', 'counts')}, {split})")
    else:
        lines.append(f"split     none yet; {_default_split(spec.name, len({v.group for v in volumes}))}")
    if (root / "synthetic.json").is_file():
        from regexplain.data.synthetic import read_meta

        meta = read_meta(root)
        lines.append(f"phantoms  {meta.get('kind')}, seed {meta.get('seed')}"
                     + (f", regime {meta['regime']}" if "regime" in meta else ""))
    if (root / "factors.csv").is_file():
        from regexplain.data.synthetic import read_factors

        _, names, values = read_factors(root)
        lines.append(f"factors   {len(names)}: " + ", ".join(
            f"{n} sd {sd:.3g}" for n, sd in zip(names, values.std(axis=0), strict=True)))
    return "\n".join(lines)


def _default_split(dataset: str, n_subjects: int) -> str:
    """What `train` would do with the default (quick) profile, e.g. for a folder smaller than its counts."""
    from regexplain.config import load_config
    from regexplain.data.split import split_sizes
    from regexplain.errors import DataError

    d = load_config("quick", dataset).data
    try:
        n_train, n_val, rule = split_sizes(n_subjects, d.n_train, d.n_val)
    except DataError as e:
        return str(e).split(": ", 1)[1]
    how = "its counts" if rule == "counts" else f"fractions, its {d.n_train} / {d.n_val} need more subjects"
    return (f"the quick profile takes {n_train} train / {n_val} val ({how}); choose with --split TRAIN VAL "
            "or --n-train/--n-val")


def registration_stats(root: Path, shape=None, n_pairs: int = 200) -> str:
    """:func:`regexplain.data.stats.folder_stats` of a folder, as printed by ``data info``."""
    from regexplain.data.datasets import detect
    from regexplain.data.stats import folder_stats, format_stats

    s, shape = folder_stats(root, shape, n_pairs)
    head = f"at {'x'.join(map(str, shape))} (after the training preprocessing):"
    return "\n".join([head, *("  " + line for line in format_stats(s, detect(root).name).splitlines())])


def _info(args: argparse.Namespace) -> int:
    print(describe(args.root))
    if not args.no_stats:
        print(registration_stats(args.root, args.shape, args.pairs))
    return 0
