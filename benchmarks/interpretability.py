"""Quantitative interpretability of trained models on phantoms with known factors (trains nothing).

For every run directory: encode the data, fit the latent PCA (K from the config unless ``--k``), compute
:func:`regexplain.analysis.report.interpretability_report`, write it as JSON beside the run (or ``--out``) and
print one table with a column per run. Each score shows ``observed (null mean, p)`` where the null is a
random orthonormal basis of the PCA subspace with matched variances. Usage::

    python benchmarks/interpretability.py --run runs/noskip runs/skip --data data/hippocampus
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from regexplain.analysis.inputs import encode_splits, fit_decomposition
from regexplain.analysis.report import interpretability_report
from regexplain.data.synthetic import read_factors
from regexplain.io import write_json
from regexplain.registration.checkpoint import checkpoint_path
from regexplain.runs import open_run
from regexplain.runtime import select_device


def run_report(run: str, data: str | None, k: int | None, args) -> dict:
    opened = open_run(run, device=select_device(args.device), data={"root": str(data)} if data else None,
                      progress=False)
    model, cfg, train, val = opened.model, opened.cfg, opened.train, opened.val
    codes = encode_splits(model, train)
    dec = fit_decomposition(model, codes, k or cfg.latent.n_components)
    t0 = time.perf_counter()
    rep = interpretability_report(model, dec, train, val, read_factors(cfg.data.root), k_info=args.k_info,
                                  n_null=args.n_null, n_boot=args.n_boot, seed=args.seed,
                                  field_baseline=not args.no_fields)
    rep["meta"] = {"checkpoint": str(checkpoint_path(run)), "data": cfg.data.root,
                   "skip_connections": bool(cfg.model.skip_connections), "seconds": time.perf_counter() - t0}
    return rep


def _fmt(s) -> str:
    if isinstance(s, dict) and "observed" in s:
        return f"{s['observed']:.3f} ({s['null_mean']:.3f}, p={s['p_value']:.2f})"
    return f"{s:.3f}" if isinstance(s, float) else str(s)


def rows_for(rep: dict, part: str) -> dict[str, str]:
    r = rep[part]
    out = {"K explains": f"{r['variance']['total']:.3f}" if part == "fields" else
           f"{rep['variance']['total']:.3f}",
           "first 4 explain": f"{(r['variance'] if part == 'fields' else rep['variance'])['first4']:.3f}"}
    for name, score in r["scores"].items():
        out[name] = _fmt(score)
    out["DCI informativeness (held out)"] = _fmt(r["dci_informativeness"])
    for t, sel in r["selectivity"].items():
        out[f"selectivity {t} particip. ratio"] = _fmt(sel["participation_ratio"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", nargs="+", required=True, help="run directories (e.g. no-skip and skip)")
    ap.add_argument("--data", help="data directory (default: each run's)")
    ap.add_argument("--k", type=int, help="PCA components (default: config latent.n_components)")
    ap.add_argument("--k-info", type=int, default=8, help="leading components for the headline R^2")
    ap.add_argument("--n-null", type=int, default=20)
    ap.add_argument("--n-boot", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-fields", action="store_true", help="skip the PCA-of-deformations baseline")
    ap.add_argument("--device")
    ap.add_argument("--out", type=Path, help="JSON with every report (default: RUN/interpretability.json)")
    args = ap.parse_args()
    reports = {}
    for run in args.run:
        rep = run_report(run, args.data, args.k, args)
        reports[run] = rep
        if not args.out:
            write_json(Path(checkpoint_path(run)).parent / "interpretability.json", rep)
    if args.out:
        write_json(args.out, reports)
    parts = ["latent"] + ([] if args.no_fields else ["fields"])
    cols = [(run, part) for run in args.run for part in parts]
    tables = [rows_for(reports[run], part) for run, part in cols]
    width = max(len(k) for k in tables[0])
    print("score".ljust(width), *[f"{Path(r).name}:{p}"[:30].ljust(30) for r, p in cols], sep=" | ")
    for key in tables[0]:
        print(key.ljust(width), *[t.get(key, "").ljust(30) for t in tables], sep=" | ")
    for run in args.run:
        print(f"{run}: report computed in {reports[run]['meta']['seconds']:.1f} s")
    json.dumps(reports)


if __name__ == "__main__":
    main()
