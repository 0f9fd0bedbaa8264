"""The GPU check (``make gpu-check``): CUDA tests, then 200 paper-profile steps in float32 and in bf16 AMP.

    python benchmarks/gpu_check.py [--steps 200] [--data DIR] [--skip-tests] [--json PATH]

On a machine without CUDA it says why and exits 0 (this project's CPU wheel of torch has no CUDA: on a GPU
machine install a CUDA build of the same torch first, e.g. ``.venv/bin/pip install torch==2.13.0
--index-url https://download.pytorch.org/whl/cu128``). With CUDA:

1. ``pytest -m cuda`` (the tests marked ``cuda``: model, augmentation and trainer on the GPU, float32 vs CPU);
2. trains the paper profile's hippocampus model (64^3, channels 32..512, batch 8, the authors' recipe) on
   64^3 phantoms (``--data``, made there when absent: 260 subjects, about a minute) for ``--steps`` steps,
   twice: float32 (``train.amp: false``) and bf16 autocast (``train.amp: true``), both with
   ``channels_last_3d`` (``train.memory_format: channels_last``), validating only at the end;
3. prints, per run: median seconds per step (from ``log.jsonl``, the first 5 steps left out), the projected
   time of the paper's 15 000 steps at that rate, peak GPU memory (``torch.cuda.max_memory_allocated``) and
   the validation Dice before -> after those steps, and writes them to ``--json``.

The figures go into ``benchmarks/README.md`` ("GPU").
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import ROOT, parser, table, write

PAPER_STEPS = 15_000


def no_cuda_message() -> str:
    build = torch.version.cuda
    why = (f"torch {torch.__version__} is built with CUDA {build}, but no CUDA device is visible" if build else
           f"torch {torch.__version__} is a CPU-only build (install a CUDA build of torch==2.13.0 on a GPU "
           "machine)")
    return f"gpu-check: skipped: {why}. Nothing was run."


def run_tests() -> int:
    """``pytest -m cuda``; returns its exit status (5, no test collected, counts as a failure)."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-rs", str(ROOT / "tests")],
                          cwd=ROOT).returncode


def timed_training(data: Path, out: Path, steps: int, amp: bool) -> dict:
    from regexplain import runs
    from regexplain.config import load_config
    from regexplain.registration.train import train

    cfg = load_config("paper", "hippocampus", {
        "data": {"root": str(data)},
        "train": {"steps": steps, "amp": amp, "memory_format": "channels_last", "val_every": 10 ** 6,
                  "checkpoint_every": 10 ** 6}})
    runs.ensure_data(cfg)
    torch.cuda.reset_peak_memory_stats()
    metrics = train(cfg, out, device="cuda", progress=False)
    secs = [r["seconds"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
            if r["kind"] == "train"]
    step = statistics.median(secs[5:] or secs)
    return {"precision": "bf16 AMP" if amp else "float32", "batch": cfg.train.batch_size, "steps": steps,
            "s_per_step": step, "projected_15000_steps_h": step * PAPER_STEPS / 3600,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "dice_before": metrics.get("dice_before"), "dice_after": metrics.get("dice_after")}


def main() -> int:
    ap = parser("gpu_check", __doc__)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "gpu_check" / "hippocampus")
    ap.add_argument("--skip-tests", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(no_cuda_message())
        return 0
    torch.backends.cudnn.benchmark = False           # the trainer's setting: timings of what it runs
    print(f"gpu-check on {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})")
    status = 0 if args.skip_tests else run_tests()
    print(f"CUDA tests: {'passed' if status == 0 else f'FAILED (pytest exit {status})'}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="regexplain_gpu_check_") as tmp:
        for amp in (False, True):
            rows.append(timed_training(args.data, Path(tmp) / f"amp{int(amp)}", args.steps, amp))
            print(table(rows[-1:], list(rows[-1])), flush=True)
    print("\n" + table(rows, list(rows[0])))
    print(f"Dice after {args.steps} steps: float32 {rows[0]['dice_after']:.3f}, "
          f"bf16 AMP {rows[1]['dice_after']:.3f}; "
          f"the paper's {PAPER_STEPS} steps projected: {rows[0]['projected_15000_steps_h']:.2f} h float32, "
          f"{rows[1]['projected_15000_steps_h']:.2f} h AMP")
    write(args.json, {"benchmark": "gpu_check", "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "cuda": torch.version.cuda, "tests_exit_status": status, "results": rows})
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
