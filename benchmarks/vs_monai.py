"""Our training step vs the same step with the warp, LNCC and Dice taken from MONAI.

    python benchmarks/vs_monai.py [--quick] [--profile quick|paper] [--device cuda] [--repeats N]

Same RegistrationNet (MONAI has no spatial-gradient late-fusion network), same smoothness and Jacobian
terms (ours; MONAI's BendingEnergyLoss is another regulariser); replaced: the warp by
``monai.networks.blocks.Warp`` (displacement in voxels, channels (D, H, W), from
:func:`regexplain.registration.spatial.map_to_displacement`), LNCC by
``LocalNormalizedCrossCorrelationLoss(kernel_size=9, kernel_type="rectangular")`` and Dice by
``DiceLoss(include_background=False)``. Before timing, the script
checks that both losses agree on one augmented batch within 1e-5. Like with like: our LNCC runs with MONAI's
flat-window guard (``loss.lncc_flat: monai``, each variance floored at 1e-5); the default guard (the authors',
VoxelMorph's ``cross^2 / (var var + 1e-5)``) differs from MONAI's by ~1e-3 on augmented, zero-padded
volumes (``docs/deviations.md``), which the script prints beside the check. Both steps draw the same
batches (same seeds) and are timed alternately, step by step; it also times the loss alone (forward +
backward through the loss only).

Goal: our step >= 1.2x faster than the MONAI-built one on the CPU, >= 1.5x on a GPU. Needs the ``bench``
extra (``pip install -e .[bench]``).
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
import torch.nn.functional as F
from common import alternate, device_info, median, parser, setup, summary, table, write
from torch import Tensor
from train_step import StepRunner, profile_config

from regexplain.config import LossConfig, load_config
from regexplain.registration.losses import JAC_MARGIN, registration_loss, smoothness
from regexplain.registration.spatial import jacobian_determinant, map_to_displacement

GOALS = {"cpu": 1.2, "cuda": 1.5}


class MonaiLoss:
    """:func:`regexplain.registration.losses.registration_loss` with MONAI's Warp, LNCC and Dice (same weights)."""

    def __init__(self, window: int = 9):
        from monai.losses import DiceLoss, LocalNormalizedCrossCorrelationLoss
        from monai.networks.blocks import Warp

        with warnings.catch_warnings():      # "Using PyTorch native grid_sample" when MONAI is not compiled
            warnings.simplefilter("ignore")
            self.warp = Warp(mode="bilinear", padding_mode="border")
        self.lncc = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=window,
                                                        kernel_type="rectangular")
        self.dice = DiceLoss(include_background=False, smooth_nr=1e-5, smooth_dr=1e-5)

    def __call__(self, out, moving: Tensor, fixed: Tensor, moving_onehot: Tensor, fixed_onehot: Tensor,
                 cfg: LossConfig) -> tuple[Tensor, dict[str, float]]:
        phi = torch.cat([out.phi_mf, out.phi_fm])
        ddf = map_to_displacement(phi)
        self.lncc.to(phi.device)
        total = phi.new_zeros(())
        terms: dict[str, float] = {}
        if cfg.sim > 0:
            sim = 1.0 + self.lncc(self.warp(torch.cat([moving, fixed]), ddf), torch.cat([fixed, moving]))
            total, terms["sim"] = total + 2 * cfg.sim * sim, 2 * float(sim.detach())
        if cfg.seg > 0:
            warped = self.warp(torch.cat([moving_onehot, fixed_onehot]).to(phi.dtype), ddf)
            seg = self.dice(warped, torch.cat([fixed_onehot, moving_onehot]).to(phi.dtype))
            total, terms["seg"] = total + 2 * cfg.seg * seg, 2 * float(seg.detach())
        if cfg.smooth > 0:
            smooth = smoothness(out.grads_mf, cfg.smoothness) + smoothness(out.grads_fm, cfg.smoothness)
            total, terms["smooth"] = total + cfg.smooth * smooth, float(smooth.detach())
        if cfg.jac > 0:
            jac = 2 * F.relu(JAC_MARGIN - jacobian_determinant(phi)).mean()
            total, terms["jac"] = total + cfg.jac * jac, float(jac.detach())
        terms["total"] = float(total.detach())
        return total, terms


def check_agreement(ours: StepRunner, theirs: StepRunner, tol: float = 1e-5) -> tuple[dict[str, float], float]:
    """Both losses on one (augmented) batch of ours: absolute difference per term, and the similarity
    term's difference under our default flat-window guard (information: not like with like)."""
    batch = ours.draw()
    ours.step_no -= 1
    with torch.no_grad():
        out = ours.model(batch[0], batch[1])
        _, a = registration_loss(out, *batch, ours.cfg.loss)
        _, b = theirs.loss_fn(out, *batch, ours.cfg.loss)
        _, d = registration_loss(out, *batch, dataclasses.replace(ours.cfg.loss, lncc_flat="voxelmorph"))
    diffs = {k: abs(a[k] - b[k]) for k in b}
    if max(diffs.values()) > tol:
        raise SystemExit(f"MONAI-built loss disagrees with ours (lncc_flat={ours.cfg.loss.lncc_flat}) by "
                         f"{max(diffs.values()):.2e} > {tol:.0e}: ours {a}, MONAI {b}")
    return diffs, abs(d["sim"] - b["sim"]) if "sim" in b else 0.0


def loss_only(runner: StepRunner, batch, out):
    """Forward + backward through the loss only (network output fixed, requires grad)."""
    grads = [t.detach().requires_grad_(True) for t in (out.grads_mf, out.grads_fm, out.phi_mf, out.phi_fm)]
    o = type(out)(*grads)

    def run():
        loss, _ = runner.loss_fn(o, *batch, runner.cfg.loss)
        loss.backward()
    return run


def main() -> None:
    ap = parser("vs_monai", __doc__)
    ap.add_argument("--profile", default=None, help="quick on the CPU, paper on a GPU by default")
    ap.add_argument("--paper-batch", type=int, default=None)
    args = ap.parse_args()
    device = setup(args)
    profile = "smoke" if args.quick else args.profile or ("quick" if device.type == "cpu" else "paper")
    cfg = profile_config(profile, device, args.paper_batch)
    if profile == "smoke":
        cfg = load_config("smoke", overrides={"data": {"shape": [16, 16, 16]}})
    cfg.loss.lncc_flat = "monai"        # like with like (see the module docstring)
    repeats = args.repeats or (3 if args.quick else 15 if device.type == "cpu" else 30)
    amp = device.type == "cuda" and cfg.train.amp
    ours = StepRunner(cfg, device, amp=amp)
    theirs = StepRunner(cfg, device, amp=amp, loss_fn=MonaiLoss(cfg.loss.lncc_window))
    diffs, default_gap = check_agreement(ours, theirs)
    print(f"{profile} profile, {device_info(device)}; loss terms agree within {max(diffs.values()):.2e} "
          f"(LNCC with MONAI's flat-window guard; our default guard differs by {default_gap:.2e} on this batch)")
    steps = alternate({"ours": ours, "monai-built": theirs}, device, repeats)
    batch = ours.draw()
    with torch.no_grad():
        out = ours.model(batch[0], batch[1])
    losses = alternate({"ours": loss_only(ours, batch, out), "monai-built": loss_only(theirs, batch, out)},
                       device, repeats)
    rows = [{"what": f"{w} {k}", **summary(v)} for w, d in (("step", steps), ("loss", losses))
            for k, v in d.items()]
    ratio = median(steps["monai-built"]) / median(steps["ours"])
    loss_ratio = median(losses["monai-built"]) / median(losses["ours"])
    print(table(rows, ["what", "median_s", "min_s", "max_s", "n"]))
    goal = GOALS.get(device.type, 1.2)
    print(f"speed-up of ours over MONAI-built: step {ratio:.3f}x (goal {goal}x), "
          f"loss alone {loss_ratio:.3f}x")
    write(args.json, {"benchmark": "vs_monai", "profile": profile, "batch": cfg.train.batch_size,
                      "shape": list(cfg.data.shape), **device_info(device), "loss_term_diffs": diffs,
                      "default_lncc_flat_sim_gap": default_gap,
                      "step_ratio": ratio, "loss_ratio": loss_ratio, "goal": goal, "met": ratio >= goal,
                      "results": rows})


if __name__ == "__main__":
    main()
