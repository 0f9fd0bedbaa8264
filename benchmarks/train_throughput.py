"""Quick-profile training throughput now vs commit d2855ba (before data-parallel ranks), in one run.

    python benchmarks/train_throughput.py [--quick] [--steps 30] [--rounds 3] [--base d2855ba]

Each variant is a real ``regexplain.registration.train.train`` of the quick hippocampus profile (32^3, batch 4, the
authors' augmentation forced on both sides with ``data.augment.prob: 1`` since the quick default dropped it,
every loss term) on the same random volumes, in its own Python process, for
``--steps`` steps without intermediate validation; a variant's step time is the median of the per-step
``seconds`` of its ``log.jsonl`` (the first 3 steps left out), so process start and the final validation
are not counted. Variants, run in alternated rounds (A B C A B C ...) and compared by the median of the
per-round ratios:

* ``d2855ba``: that commit's ``regexplain/`` (extracted with ``git archive`` into a temporary folder, run
  with ``PYTHONPATH`` on it), its defaults: one process, torch's default threads (2 on 2 cores), OpenMP's
  default wait policy;
* ``now, 2 processes``: this checkout, ``train.processes: 2`` (one thread each, OpenMP waits passively);
* ``now, 1 process``: this checkout, one process with torch's default threads and passive OpenMP waits (as
  ``regexplain train`` sets them), for reference.

Samples per second = batch / step time (equal steps and batch in every variant). Goal: >= 2x d2855ba on
2 cores. Needs git and the commit in this checkout's history; ``--base-dir`` takes an extracted copy.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from common import ROOT, parser, write

GOAL = 2.0

RUNNER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import importlib
    import numpy as np, torch
    import regexplain
    from regexplain.config import load_config
    from regexplain.data.pairs import VolumeSet
    # the layout of the tree on PYTHONPATH decides: asking for a module it lacks would fall through to this
    # checkout's editable install and silently time the new code under the old name
    layout = "registration." if (Path(regexplain.__file__).parent / "registration").is_dir() else ""
    train = importlib.import_module(f"regexplain.{layout}train").train

    run, steps, processes = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    over = {"train": {"steps": steps, "val_every": 10 ** 6, "checkpoint_every": 10 ** 6, "n_val_pairs": 2},
            "data": {"augment": {"prob": 1.0}}}   # both sides augment (d2855ba's quick default; main's is 0)
    if processes:
        over["train"]["processes"] = processes
    cfg = load_config(sys.argv[4], "hippocampus", over)

    def volumes(n, seed):
        g = torch.Generator().manual_seed(seed)
        images = torch.nn.functional.avg_pool3d(torch.rand(n, 1, *cfg.data.shape, generator=g), 3, 1, 1)
        labels = (images * 7).long() % cfg.data.num_labels
        return VolumeSet(images=images, labels=labels, ids=[f"s{i}" for i in range(n)],
                         groups=[f"g{i}" for i in range(n)], spacing=(1.0, 1.0, 1.0))

    train(cfg, run, device="cpu", data=(volumes(32, 0), volumes(4, 1)), progress=False)
    secs = [json.loads(ln)["seconds"] for ln in (run / "log.jsonl").read_text().splitlines()
            if json.loads(ln)["kind"] == "train"]
    print(json.dumps({"step_s": float(np.median(secs[3:] or secs)), "batch": cfg.train.batch_size,
                      "package": str(Path(regexplain.__file__).parent),
                      "processes": processes or 1}))
""")


def base_tree(commit: str, into: Path) -> Path:
    """``regexplain/`` of ``commit``, extracted from this checkout's git history into ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "regexplain"], capture_output=True)
    if archive.returncode:
        raise SystemExit(f"cannot extract {commit} with git archive: {archive.stderr.decode().strip()} "
                         "(pass --base-dir with a copy of that commit's tree)")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def run_variant(pythonpath: Path, run: Path, steps: int, processes: int, profile: str, passive: bool) -> dict:
    import os

    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "REGEXPLAIN_THREADS"):   # each variant's own defaults
        env.pop(k, None)
    if passive:                              # what `regexplain train` sets now (regexplain.cli.main)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(run), str(steps), str(processes), profile],
                          env=env, capture_output=True, text=True, cwd=run.parent)
    if proc.returncode:
        raise SystemExit(f"variant at {pythonpath} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = parser("train_throughput", __doc__)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base", default="d2855ba", help="commit to compare with (default d2855ba)")
    ap.add_argument("--base-dir", type=Path, default=None, help="a folder holding that commit's regexplain/")
    ap.add_argument("--no-single", action="store_true", help="leave out the 'now, 1 process' variant")
    args = ap.parse_args()
    profile = "smoke" if args.quick else "quick"
    steps, rounds = (8, 1) if args.quick else (args.steps, args.rounds)
    with tempfile.TemporaryDirectory(prefix="regexplain_throughput_") as tmp:
        tmp = Path(tmp)
        (tmp / "base").mkdir()
        (tmp / "runs").mkdir()              # the runs' working folder: never the one holding the base copy
        base = args.base_dir or base_tree(args.base, tmp / "base")
        variants = {args.base: (base, 0), "now, 2 processes": (ROOT, 2)}
        if not args.no_single:
            variants["now, 1 process"] = (ROOT, 1)
        times: dict[str, list[float]] = {k: [] for k in variants}
        batch = 0
        for r in range(rounds):
            for name, (path, procs) in variants.items():
                run = tmp / "runs" / f"run_{r}_{len(times[name])}_{procs}"
                out = run_variant(path, run, steps, procs, profile, passive=path == ROOT)
                times[name].append(out["step_s"])
                batch = out["batch"]
                print(f"round {r + 1}/{rounds} {name}: {out['step_s']:.3f} s/step ({out['package']})", flush=True)
    ratios = {k: statistics.median(b / t for b, t in zip(times[args.base], v, strict=True))
              for k, v in times.items()}
    print(f"\n{profile} profile, batch {batch}, {steps} steps per variant and round, {rounds} rounds")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"  {k:>18}: {med:.3f} s/step, {batch / med:6.2f} samples/s, {ratios[k]:.2f}x {args.base}")
    ratio = ratios["now, 2 processes"]
    print(f"throughput now (2 processes) vs {args.base}: {ratio:.2f}x (goal {GOAL}x)")
    write(args.json, {"benchmark": "train_throughput", "profile": profile, "base": args.base, "steps": steps,
                      "rounds": rounds, "batch": batch, "step_s": times, "ratio_vs_base": ratios,
                      "goal": GOAL, "met": ratio >= GOAL, "load_average_1min": __import__("os").getloadavg()[0]})


if __name__ == "__main__":
    main()
