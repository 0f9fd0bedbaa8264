"""Seconds per symmetric training step for the smoke, quick and paper profiles (hippocampus) on this device.

    python benchmarks/train_step.py [--quick] [--profiles smoke quick paper] [--device cuda] [--compile]

One step is what :class:`regexplain.registration.train.Trainer` does: draw pairs of different subjects from
data resident on the device, augment them (same transform for image and label), forward both directions, the four
losses both ways, backward, Adam. Reported per profile and variant: median seconds per step, volumes per
second (``2 * batch`` volumes are registered per step), the share of the step spent drawing + augmenting,
and peak memory (``torch.cuda.max_memory_allocated`` on a GPU; the process's peak RSS on the CPU).

Variants (timed alternately, step by step, each with its own identically initialised model):
``fp32``; ``fp32+cl3d`` (channels_last_3d weights and inputs); on CUDA also ``bf16`` (autocast, as the
trainer does), ``bf16+cl3d``, ``bf16+cudnn_bench`` (``torch.backends.cudnn.benchmark``) and, with
``--compile``, ``bf16+compile`` (``torch.compile`` of the network).

On the CPU the paper profile (64^3, channels 32..512) takes minutes per batch-8 step, so its default batch
there is 1 (``--paper-batch`` to change it); volumes per second are reported at that batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from common import (
    alternate,
    device_info,
    parser,
    peak_memory_mib,
    reset_peak,
    setup,
    summary,
    table,
    time_call,
    write,
)

from regexplain.config import Config, load_config
from regexplain.registration.losses import registration_loss
from regexplain.registration.model import RegistrationNet
from regexplain.registration.train import _draw_batch, _to_float, step_seed

CL3D = torch.channels_last_3d


@dataclasses.dataclass
class StepRunner:
    """One training set-up (model, Adam, device-resident data) and its step, as the Trainer runs it."""
    cfg: Config
    device: torch.device
    amp: bool = False
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False
    loss_fn: Callable = registration_loss

    def __post_init__(self) -> None:
        torch.manual_seed(self.cfg.train.seed)
        self.model = RegistrationNet.from_config(self.cfg).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=CL3D)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.train.lr)
        self.net: Callable = torch.compile(self.model) if self.compile else self.model
        self.images, self.labels, self.groups = synthetic_data(self.cfg, self.device)
        self.gen = torch.Generator()
        self.step_no = 0

    def draw(self):
        self.gen.manual_seed(step_seed(self.cfg.train.seed, 0, self.step_no))
        self.step_no += 1
        return _draw_batch(self.images, self.labels, self.groups, self.cfg, self.gen)

    def __call__(self) -> float:
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        moving, fixed, m_oh, f_oh, m_img, f_img = self.draw()   # as seen by the network; as the loss compares
        if self.channels_last:
            moving, fixed = moving.contiguous(memory_format=CL3D), fixed.contiguous(memory_format=CL3D)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.net(moving, fixed)
        loss, _ = self.loss_fn(_to_float(out), m_img, f_img, m_oh, f_oh, self.cfg.loss)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())        # the trainer reads the loss every step too (a sync point)


def synthetic_data(cfg: Config, device: torch.device, max_subjects: int = 32):
    """Random images in [0, 1] and labels on ``device`` (timing does not depend on content)."""
    n = min(cfg.data.n_train, max_subjects)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, *cfg.data.shape, generator=g).to(device)
    labels = torch.randint(0, cfg.data.num_labels, (n, 1, *cfg.data.shape), generator=g).to(device)
    return images, labels, [f"s{i}" for i in range(n)]


VARIANTS = {
    "fp32": {}, "fp32+cl3d": {"channels_last": True}, "bf16": {"amp": True},
    "bf16+cl3d": {"amp": True, "channels_last": True},
    "bf16+cudnn_bench": {"amp": True, "cudnn_benchmark": True},
    "bf16+compile": {"amp": True, "compile": True}, "fp32+compile": {"compile": True},
}


def default_variants(device: torch.device, compile_: bool) -> list[str]:
    cuda = ["fp32", "bf16", "bf16+cl3d", "bf16+cudnn_bench"]
    names = ["fp32", "fp32+cl3d"] if device.type == "cpu" else cuda
    if compile_:
        names.append("fp32+compile" if device.type == "cpu" else "bf16+compile")
    return names


def profile_config(profile: str, device: torch.device, paper_batch: int | None) -> Config:
    cfg = load_config(profile, "hippocampus")
    if profile == "paper":
        batch = paper_batch or (1 if device.type == "cpu" else cfg.train.batch_size)
        cfg.train.batch_size = batch
    return cfg


def bench_profile(cfg: Config, device: torch.device, variants: list[str], repeats: int) -> list[dict]:
    runners = {v: StepRunner(cfg, device, **VARIANTS[v]) for v in variants}
    reset_peak(device)
    times = alternate(runners, device, repeats)
    peak = peak_memory_mib(device)
    base = runners[variants[0]]
    draw = [time_call(base.draw, device) for _ in range(max(3, repeats))]
    rows = []
    b = cfg.train.batch_size
    for v, ts in times.items():
        s = summary(ts)
        rows.append({"profile": cfg.profile, "shape": "x".join(map(str, cfg.data.shape)), "batch": b,
                     "channels": list(cfg.model.channels), "variant": v, **s,
                     "volumes_per_s": 2 * b / s["median_s"], "draw_augment_s": sorted(draw)[len(draw) // 2],
                     "speedup_vs_first": times[variants[0]] and summary(times[variants[0]])["median_s"]
                     / s["median_s"], "peak_mib_all_variants": peak})
    return rows


def main() -> None:
    ap = parser("train_step", __doc__)
    ap.add_argument("--profiles", nargs="+", default=["smoke", "quick", "paper"])
    ap.add_argument("--variants", nargs="+", default=None, choices=sorted(VARIANTS))
    ap.add_argument("--compile", action="store_true", help="add a torch.compile variant")
    ap.add_argument("--paper-batch", type=int, default=None, help="paper profile batch (CPU default 1)")
    args = ap.parse_args()
    device = setup(args)
    variants = args.variants or default_variants(device, args.compile)
    profiles = ["smoke"] if args.quick else args.profiles
    rows = []
    print(f"training step, hippocampus profiles, {device_info(device)}")
    for p in profiles:
        repeats = args.repeats or ({"smoke": 10, "quick": 5}.get(p, 2) if device.type == "cpu" else 20)
        cfg = profile_config(p, device, args.paper_batch)
        rows += bench_profile(cfg, device, variants, repeats)
        print(table(rows[-len(variants):], ["profile", "shape", "batch", "variant", "median_s", "min_s",
                                            "volumes_per_s", "draw_augment_s", "speedup_vs_first",
                                            "peak_mib_all_variants"]), flush=True)
    write(args.json, {"benchmark": "train_step", **device_info(device), "results": rows})


if __name__ == "__main__":
    main()
