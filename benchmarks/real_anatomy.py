"""The real-anatomy check: models trained on phantoms, scored on real T1 brain MRI they have never seen.

    python benchmarks/real_anatomy.py [--data data/real_anatomy] [--models RUN ...] [--pairs 40] [--search DIR]

Builds the check's folder when it is absent (``regexplain data real``: hippocampus crops in the MSD layout cut
from the T1 templates of Debian's ``mricron-data`` and of the ``realdata`` extra's wheels, labels from the AAL
atlas; nothing is downloaded), then prints, for each model, Dice before -> after registration, the
label-centroid translation baseline and the per-axis recovery of the label-centroid offset
(:func:`regexplain.registration.evaluation.real_anatomy_row`, the columns of ``regexplain evaluate``).
Models: run folders or checkpoints (default: the main job's quick runs, ``runs/quick/hippocampus_*skip``).
Without the sources (or without a model) it says what is missing and exits 0: the check is optional.
``make realcheck`` installs the sources first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import ROOT, parser, setup, write

DEFAULT_RUNS = [ROOT / "runs" / "quick" / n for n in ("hippocampus_noskip", "hippocampus_skip")]


def main() -> int:
    ap = parser("real_anatomy", __doc__)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "real_anatomy", help="the check's folder")
    ap.add_argument("--models", type=Path, nargs="+", default=None, help="run folders or checkpoints")
    ap.add_argument("--pairs", type=int, default=None, help="pairs scored (default 40)")
    ap.add_argument("--search", type=Path, action="append", default=[], help="more folders to look in")
    args = ap.parse_args()
    device = setup(args)

    from regexplain.data.real_anatomy import build_from_packages, find_sources
    from regexplain.registration.checkpoint import load_model
    from regexplain.registration.evaluation import REAL_PAIRS, real_anatomy_row
    from regexplain.results import table_markdown

    if not args.data.is_dir():
        found = find_sources(args.search)
        if not found.usable:
            print(f"real-anatomy check skipped: {found.why_not()}")
            return 0
        build_from_packages(args.data, search=args.search)
    meta = json.loads((args.data / "real_anatomy.json").read_text())
    print(f"{args.data}: {len(meta['sources'])} templates ({', '.join(meta['sources'])}), "
          f"{len(meta['independent_brains'])} independent brains, {len(meta['hemispheres'])} hemispheres, "
          f"{meta['crops_per_hemisphere']} crops each, offsets +-{meta['offset_mm']} mm, "
          f"rotations +-{meta['rotation_deg']} deg")
    models = args.models or [p for p in DEFAULT_RUNS if (p / "checkpoint.pt").is_file()]
    if not models:
        print("real-anatomy check skipped: no model (train one, or `make reproduce`, or pass --models)")
        return 0
    rows = []
    for path in models:
        model, cfg = load_model(path, device)
        rows.append(real_anatomy_row(model, cfg, args.data, str(path), pairs=args.pairs or REAL_PAIRS,
                                     device=device))
    print(table_markdown("baseline", rows))
    write(args.json, {"data": str(args.data), "meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
