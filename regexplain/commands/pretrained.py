"""``regexplain pretrained list | check | make``: the trained quick models shipped in the package
(:mod:`regexplain.pretrained`); ``regexplain explore --pretrained NAME`` opens one."""

from __future__ import annotations

import argparse
from pathlib import Path

from regexplain.commands.options import seed_value
from regexplain.pretrained import PRETRAINED


def register(subparsers) -> None:
    p = subparsers.add_parser("pretrained", help="the trained quick models shipped with regexplain: list, check, "
                              "re-make")
    sub = p.add_subparsers(dest="pretrained_command", required=True, metavar="ACTION")
    sub.add_parser("list", help="each shipped model, how it was made and its Dice").set_defaults(func=_list)
    c = sub.add_parser("check", help="SHA-256 of every shipped file, and each model's Dice on freshly synthesised "
                       "check phantoms against the manifest (+- 0.02)")
    c.set_defaults(func=_check)
    m = sub.add_parser("make", help="train (or reuse) the main job's three models and ship them into "
                       "regexplain/weights (weights, decomposition, manifest)")
    m.add_argument("--profile", default="quick")
    m.add_argument("--seed", type=seed_value, default=0)
    m.add_argument("--runs", default="runs", help="runs folder (finished runs there are reused)")
    m.add_argument("--data", default="data", help="data folder (phantoms made when missing)")
    m.add_argument("--out", type=Path, help="where to ship (default: the package's regexplain/weights)")
    m.add_argument("--force", action="store_true", help="train again even where a finished run exists")
    m.add_argument("--only", action="append", choices=tuple(PRETRAINED), metavar="NAME",
                   help="make only this shipped model (repeatable; the others keep their manifest entries)")
    m.set_defaults(func=_make)


def _list(args: argparse.Namespace) -> int:
    from regexplain.pretrained import PRETRAINED, read_manifest

    manifest = read_manifest()
    for short, rn in PRETRAINED.items():
        e = manifest.get(rn)
        if e is None:
            print(f"{short:17s} (missing from the manifest)")
            continue
        m, c = e["metrics"], e.get("check", {})
        nan = float("nan")
        print(f"{short:17s} {rn}: {e['profile']} profile, seed {e['seed']}, {e['phantom_regime']} phantoms, "
              f"{e['parameters']:,} parameters, {m.get('steps')} steps; validation Dice {m['dice_before']:.3f} -> "
              f"{m['dice_after']:.3f}; check phantoms {c.get('dice_before', nan):.3f} -> "
              f"{c.get('dice_after', nan):.3f}; made by `{e['command']}` at {e['code_version']}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from regexplain.errors import CheckpointError
    from regexplain.pretrained import PRETRAINED, check_dice, read_manifest, run_name, verified

    manifest, bad = read_manifest(), []
    for short in PRETRAINED:
        verified(short)
        got = check_dice(short)
        want = manifest[run_name(short)]["check"]
        ok = all(abs(got[k] - want[k]) <= 0.02 for k in ("dice_before", "dice_after"))
        print(f"{short:17s} SHA-256 ok; check phantoms Dice {got['dice_before']:.3f} -> {got['dice_after']:.3f} "
              f"(manifest {want['dice_before']:.3f} -> {want['dice_after']:.3f}) {'ok' if ok else 'DIFFERS'}")
        bad += [] if ok else [short]
    if bad:
        raise CheckpointError(f"shipped model(s) {', '.join(bad)}: Dice on the check phantoms differs from the "
                              "manifest by more than 0.02")
    return 0


def _make(args: argparse.Namespace) -> int:
    from regexplain.pretrained import WEIGHTS_DIR, make

    make(args.profile, runs_dir=args.runs, data_dir=args.data, seed=args.seed, out=args.out or WEIGHTS_DIR,
         force=args.force, only=args.only)
    return 0
