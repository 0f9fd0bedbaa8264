"""``regexplain study``: several seeds per architecture, scores with intervals and baselines, a verdict
on each claim of the paper (see :mod:`regexplain.analysis.study`)."""

from __future__ import annotations

import argparse

from regexplain.commands.options import int_at_least
from regexplain.config import PHANTOM_REGIMES, STUDY_REGIMES
from regexplain.config import STUDY_SEEDS as DEFAULT_SEEDS


def register(subparsers) -> None:
    p = subparsers.add_parser("study", help="train N seeds per architecture, score them beside their "
                              "baselines and write a verdict on each claim of the paper")
    p.add_argument("--profile", default="quick", help="smoke | quick | fast | paper, or a YAML path (default quick)")
    p.add_argument("--out", default="study", help="folder of the study's data, runs and scores (default study/)")
    p.add_argument("--seeds", type=int_at_least(3), default=DEFAULT_SEEDS,
                   help=f"seeds 0..N-1 per architecture (>= 3, default {DEFAULT_SEEDS}; every verdict is also "
                        "recomputed with each seed left out)")
    p.add_argument("--regime", choices=(*PHANTOM_REGIMES, "both"), default="both",
                   help="phantom regime(s) to study (default both: " + " and ".join(STUDY_REGIMES) + ")")
    p.add_argument("--figures", default="figures", help="where STUDY_<regime>.md and study_<regime>.json go "
                   "for RESULTS.md (default figures/)")
    x = p.add_argument_group("where the trainings run (regexplain.executors; same folders, resumable)")
    x.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local: on this machine (default); slurm: one job array through submitit")
    x.add_argument("--jobs", type=int_at_least(1), default=1,
                   help="local: trainings side by side (default 1: one after another, as the profile says)")
    x.add_argument("--threads", type=int_at_least(1), default=1,
                   help="local with --jobs > 1: threads per training (default 1)")
    x.add_argument("--partition", default=None, help="slurm: partition")
    x.add_argument("--gpus", type=int_at_least(0), default=0, help="slurm: GPUs per training (default 0)")
    x.add_argument("--time", type=int_at_least(1), default=240, help="slurm: minutes per training (default 240)")
    x.add_argument("--cpus", type=int_at_least(1), default=2, help="slurm: CPUs per training (default 2)")
    p.set_defaults(func=_run)


def make_executor(args: argparse.Namespace, regime_dir):
    """The runner of ``--executor`` (None: one training after another in the scoring loop, as before)."""
    from regexplain import executors

    if args.executor == "slurm":
        return executors.submitit_jobs(regime_dir / "slurm", partition=args.partition, gpus=args.gpus,
                                       time_min=args.time, cpus=args.cpus)
    return executors.local_processes(args.jobs, args.threads) if args.jobs > 1 else None


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from regexplain.analysis import study_record
    from regexplain.analysis.study import ARCHS, run_study
    from regexplain.io import check_writable, write_bytes

    for d in (args.out, args.figures):
        check_writable(d)
    regimes = STUDY_REGIMES if args.regime == "both" else (args.regime,)
    for regime in regimes:   # every regime's folder is checked before the first one runs
        request = study_record.study_request(args.profile, regime, range(args.seeds), ARCHS)
        study_record.check_study_folder(Path(args.out) / regime, request, record=False)
    for regime in regimes:
        run_study(args.profile, args.out, seeds=range(args.seeds), regime=regime,
                  executor=make_executor(args, Path(args.out) / regime))
        figures = Path(args.figures)
        figures.mkdir(parents=True, exist_ok=True)
        for src, dst in (("study.json", f"study_{regime}.json"), ("STUDY.md", f"STUDY_{regime}.md")):
            write_bytes(figures / dst, (Path(args.out) / regime / src).read_bytes())
        print((Path(args.out) / regime / "STUDY.md").read_text())
    return 0
