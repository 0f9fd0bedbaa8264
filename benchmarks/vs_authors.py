"""Our training step vs the authors' (FrontiersNet + their loss), same widths, from a local copy of their code.

    python benchmarks/vs_authors.py --authors-dir PATH [--quick] [--size 64] [--batch 1] [--repeats N]
    REGEXPLAIN_AUTHORS_DIR=PATH python benchmarks/vs_authors.py

``PATH`` is a checkout of ``TheoEst/hippocampus_registration`` (the folder holding ``FrontiersNet.py``,
``blocks.py``, ``losses.py``); nothing is downloaded and nothing of theirs is copied here. Without it the
script says so and exits 0.

Their step, as ``main.py`` trains with the command of their README (``--channel-multiplication 8
--classic-vnet --instance-norm --deep-supervision --symmetric-training --zeros-init
--local-cross-correlation-loss --mse-loss-weight=0 --regu-deformable-loss-weight=1e-1
--deformed-mask-loss``, Adam 1e-4): ``FrontiersNet`` forward (both directions, every decoder level
predicting), their ``integral3DImage`` / ``diffeomorphic3D`` warps of the masks, ``calculate_loss``
(bbox-masked ``ncc_loss`` and the MSE they compute at weight 0 per deep-supervision level, L1 and MSE
regularisers, ``mean_dice_loss`` both ways), backward, Adam. Their ``ncc_loss`` puts its window on
``"cuda"``; on the CPU the same lines run with the window on the CPU (their ``compute_local_sums``). The bbox
mask is all ones here (same arithmetic).

Ours: :class:`train_step.StepRunner` on the paper profile (channels 32..512, 4 downsamplings: the same widths
as their ``channel_multiplication 8``), as the trainer runs it (``channels_last_3d`` on the CPU, bf16 autocast
on CUDA). Variants: their published model (skips, 1-2-3-2-2 convolutions per level, deep supervision) and a
lighter one (one convolution per level, no deep supervision), ours without skips (the paper's model), with
skips (like theirs), and with their architecture (skips, ``model.convs_per_level: [1, 2, 3, 2, 2, 2]``,
``model.deep_supervision``). Alternated step by step; the ratio is their median over ours. Goal: >= 2x at equal widths.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from common import alternate, device_info, median, parser, setup, summary, table, write
from train_step import StepRunner

from regexplain.config import load_config

GOAL = 2.0
ENV = "REGEXPLAIN_AUTHORS_DIR"


def import_authors(folder: Path):
    """Their modules ``FrontiersNet``, ``losses`` from ``folder`` (they import ``hippocampus_registration.blocks``)."""
    missing = [f for f in ("FrontiersNet.py", "blocks.py", "losses.py") if not (folder / f).is_file()]
    if missing:
        raise SystemExit(f"{folder}: not a copy of TheoEst/hippocampus_registration (missing {missing})")
    pkg = types.ModuleType("hippocampus_registration")
    pkg.__path__ = [str(folder)]
    sys.modules["hippocampus_registration"] = pkg
    try:
        from hippocampus_registration import FrontiersNet, losses
    except ModuleNotFoundError as e:
        sys.modules.pop("hippocampus_registration", None)
        raise SystemExit(f"{folder}: their code imports {e.name!r}, which this environment lacks: "
                         "pip install -e '.[bench]' (or `make bench`)") from e
    return FrontiersNet, losses


class AuthorsStep:
    """One optimiser step of their ``main.py`` training (see the module docstring)."""

    def __init__(self, fn, losses, device, size: int, batch: int, published: bool, seed: int = 0):
        torch.manual_seed(seed)
        self.fn, self.losses, self.device = fn, losses, device
        convs = [1, 2, 3, 2, 2, 2] if published else [1, 1, 1, 1, 1, 1, 1]
        self.model = fn.FrontiersNet(channel_multiplication=8, pool_blocks=4, last_activation="sigmoid",
                                     instance_norm=True, nb_Convs=convs, zeros_init=True,
                                     deep_supervision=published, symmetric_training=True).to(device)
        self.deep = published
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        g = torch.Generator().manual_seed(seed)
        shape = (batch, 1, size, size, size)
        self.moving, self.reference = (torch.rand(shape, generator=g).to(device) for _ in range(2))
        labels = [torch.randint(0, 3, shape, generator=g) for _ in range(2)]
        self.masks = [torch.cat([(lab == k) for k in range(3)], 1).float().to(device) for lab in labels]
        self.non_zeros = torch.ones(shape, device=device)
        self.identity = 0.5 * torch.ones(batch, 3, size, size, size, device=device)
        self.L1, self.MSE = nn.L1Loss(), nn.MSELoss(reduction="none")

    def ncc(self, a, b):
        if a.is_cuda:
            return self.losses.ncc_loss(a, b)
        filt = torch.ones([1, 1, 9, 9, 9], device=a.device)      # their ncc_loss, window on a's device
        i_var, j_var, cross = self.losses.compute_local_sums(a, b, filt, (1, 1, 1), (4, 4, 4), [9, 9, 9])
        return -torch.mean(cross * cross / (i_var * j_var + 1e-5))

    def __call__(self) -> float:
        pred = self.model(self.moving, self.reference)
        warped = [self.fn.diffeomorphic3D(m, pred[i][1]) for i, m in enumerate(self.masks)]
        mse = lcc = regu = regu_mse = 0
        for i, gt in enumerate((self.reference, self.moving)):
            imgs, grid = pred[i][2], pred[i][0]
            imgs = imgs if self.deep else [imgs]
            mse = mse + torch.mean(torch.stack([self.MSE(x * self.non_zeros, gt * self.non_zeros) for x in imgs]))
            lcc = lcc + torch.mean(torch.stack([self.ncc(x * self.non_zeros, gt * self.non_zeros) for x in imgs]))
            regu = regu + self.L1(grid, self.identity)
            regu_mse = regu_mse + self.MSE(grid, self.identity)
        loss = 0 * (mse / 2).mean() + lcc / 2 + 0.1 * regu / 2 + 0 * (regu_mse / 2).mean()
        dice = (self.losses.mean_dice_loss(warped[0], self.masks[1])
                + self.losses.mean_dice_loss(warped[1], self.masks[0])) / 2
        loss = loss + dice
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def params(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def main() -> None:
    ap = parser("vs_authors", __doc__)
    ap.add_argument("--authors-dir", type=Path, default=os.environ.get(ENV) or None,
                    help=f"a checkout of TheoEst/hippocampus_registration (or ${ENV})")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=None, help="pairs per step (CPU default 1, GPU 8)")
    args = ap.parse_args()
    if args.authors_dir is None or not Path(args.authors_dir).is_dir():
        print(f"vs_authors: skipped: no local copy of the authors' code (pass --authors-dir or set ${ENV} to a "
              "checkout of TheoEst/hippocampus_registration; nothing is downloaded)")
        return
    warnings.filterwarnings("ignore", message="Default grid_sample")   # their grid_sample, align_corners unset
    fn, losses = import_authors(Path(args.authors_dir))
    device = setup(args)
    size = 32 if args.quick else args.size
    batch = args.batch or (1 if device.type == "cpu" else 8)
    repeats = args.repeats or (2 if args.quick else 5 if device.type == "cpu" else 20)
    runners, sizes = {}, {}
    ours = {"ours (no skip)": {"skip_connections": False}, "ours (skip)": {"skip_connections": True},
            "ours (their architecture)": {"skip_connections": True, "convs_per_level": [1, 2, 3, 2, 2, 2],
                                          "deep_supervision": True}}
    for name, model in ours.items():
        cfg = load_config("paper", "hippocampus", {"data": {"shape": [size] * 3},
                                                   "train": {"batch_size": batch}, "model": model})
        runners[name] = StepRunner(cfg, device, amp=device.type == "cuda" and cfg.train.amp,
                                   channels_last=device.type == "cpu")
        sizes[name] = params(runners[name].model)
    for published in (True, False):
        name = "authors (published)" if published else "authors (1 conv/level, no deep sup.)"
        runners[name] = AuthorsStep(fn, losses, device, size, batch, published)
        sizes[name] = params(runners[name].model)
    print(f"one training step at {size}^3, batch {batch}, widths 32..512, {device_info(device)}; "
          f"median of {repeats}, alternating")
    times = alternate(runners, device, repeats)
    ref = median(times["ours (no skip)"])
    rows = [{"variant": k, "params_M": sizes[k], **summary(v), "vs_ours_no_skip": median(v) / ref}
            for k, v in times.items()]
    print(table(rows, ["variant", "params_M", "median_s", "min_s", "max_s", "n", "vs_ours_no_skip"]))
    ratio = median(times["authors (published)"]) / median(times["ours (skip)"])
    ratio_noskip = median(times["authors (published)"]) / ref
    ratio_params = median(times["authors (1 conv/level, no deep sup.)"]) / median(times["ours (skip)"])
    ratio_arch = median(times["authors (published)"]) / median(times["ours (their architecture)"])
    print(f"equal widths: ours {ratio:.2f}x faster than the authors' published step with skips like theirs, "
          f"{ratio_noskip:.2f}x without (the paper's model); goal {GOAL}x")
    print(f"the same architecture (skips, classic-vnet convolutions, deep supervision: model.convs_per_level, "
          f"model.deep_supervision): ours {ratio_arch:.2f}x faster")
    print(f"equal parameter count (their 1 conv per level without deep supervision vs ours with skips): "
          f"{ratio_params:.2f}x")
    write(args.json, {"benchmark": "vs_authors", "size": size, "batch": batch, **device_info(device),
                      "ratio_equal_widths_skip": ratio, "ratio_equal_widths_noskip": ratio_noskip,
                      "ratio_equal_params": ratio_params, "ratio_same_architecture": ratio_arch, "goal": GOAL,
                      "met": ratio >= GOAL, "results": rows})


if __name__ == "__main__":
    main()
