"""Registration quality and speed of training on CPU (prints figures; not a test).

1. Synthesises the quick-profile hippocampus phantoms (260 subjects, 64^3, MSD layout) unless present.
2. Trains the quick profile without and with skip connections, each for at most ``--minutes`` of wall
   time, and prints validation Dice before / after, folding %, SDlogJ and seconds per step.
3. Times a few optimisation steps of the quick and paper profiles (paper: 64^3, batch 8, channels
   32..512) on random volumes.

Targets (issue 3): Dice after >= Dice before + 0.3, folding <= 0.5 %, skip Dice > no-skip Dice,
each model trained in <= 12 minutes on 2 CPU cores.

    python benchmarks/train_quality.py                      # full: 2 x the profile's 11 min
    python benchmarks/train_quality.py --minutes 3          # shortened check
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from regexplain.config import load_config
from regexplain.registration.losses import registration_loss
from regexplain.registration.model import RegistrationNet
from regexplain.registration.spatial import one_hot
from regexplain.registration.train import train
from regexplain.runtime import set_threads


def quality(data: Path, out: Path, minutes: float, models: list[str], threads: int) -> list[dict]:
    rows = []
    for name in models:
        over = {"data": {"root": str(data)}, "model": {"skip_connections": name == "skip"},
                "train": {"threads": threads, **({"max_minutes": minutes} if minutes is not None else {})}}
        cfg = load_config("quick", "hippocampus", over)
        run = out / name
        t0 = time.perf_counter()
        m = train(cfg, run, resume=(run / "checkpoint.pt").exists())
        m["total_wall_seconds"] = time.perf_counter() - t0
        m["model"] = name
        rows.append(m)
        print(json.dumps({k: m[k] for k in ("model", "steps", "dice_before", "dice_after", "folding_pct",
                                            "sdlogj", "seconds_per_step", "wall_seconds")}), flush=True)
    return rows


def step_seconds(profile: str, steps: int, threads: int) -> tuple[float, str]:
    """Mean seconds of a full optimisation step (forward, symmetric loss, backward, Adam) after one
    warm-up step, on random volumes of the profile's shape and batch size."""
    cfg = load_config(profile, "hippocampus", {"train": {"threads": threads}})
    set_threads(threads)
    torch.manual_seed(0)
    model = RegistrationNet.from_config(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    b, shape = cfg.train.batch_size, tuple(cfg.data.shape)
    m, f = torch.rand(b, 1, *shape), torch.rand(b, 1, *shape)
    lm = one_hot(torch.randint(cfg.data.num_labels, (b, 1, *shape)), cfg.data.num_labels)
    lf = one_hot(torch.randint(cfg.data.num_labels, (b, 1, *shape)), cfg.data.num_labels)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        loss, _ = registration_loss(model(m, f), m, f, lm, lf, cfg.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    what = f"{'x'.join(map(str, shape))}, batch {b}, channels {list(cfg.model.channels)}"
    return sum(times[1:]) / steps, what


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/tmp/regexplain_bench/hippocampus"))
    p.add_argument("--out", type=Path, default=Path("/tmp/regexplain_bench/runs"))
    p.add_argument("--minutes", type=float, help="wall-time budget per model (default: the profile's)")
    p.add_argument("--models", default="noskip,skip")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--paper-steps", type=int, default=2, help="timed steps of the paper profile (0: skip)")
    p.add_argument("--skip-quality", action="store_true", help="only time steps")
    args = p.parse_args()
    if not args.skip_quality:
        rows = quality(args.data, args.out, args.minutes, args.models.split(","), args.threads)
        by = {r["model"]: r for r in rows}
        for r in rows:
            gain = r["dice_after"] - r["dice_before"]
            print(f"{r['model']:>6}: Dice {r['dice_before']:.3f} -> {r['dice_after']:.3f} (+{gain:.3f}, "
                  f"target +0.30 {'ok' if gain >= 0.3 else 'MISSED'}), folding {r['folding_pct']:.3f} % "
                  f"(target <= 0.5 {'ok' if r['folding_pct'] <= 0.5 else 'MISSED'}), {r['steps']} steps, "
                  f"{r['seconds_per_step']:.3f} s/step")
        if {"skip", "noskip"} <= set(by):
            better = by["skip"]["dice_after"] > by["noskip"]["dice_after"]
            print(f"skip Dice > no-skip Dice: {'ok' if better else 'MISSED'}")
    s, what = step_seconds("quick", 5, args.threads)
    print(f"quick profile: {s:.3f} s/step ({what}) on CPU", flush=True)
    if args.paper_steps:
        s, what = step_seconds("paper", args.paper_steps, args.threads)
        print(f"paper profile: {s:.2f} s/step ({what}) on CPU")


if __name__ == "__main__":
    main()
