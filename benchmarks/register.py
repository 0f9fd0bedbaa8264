"""Latency of registering one 64^3 pair: encode both, decode one direction, integrate, warp image + one-hot.

    python benchmarks/register.py [--quick] [--threads 2] [--device cpu|cuda] [--json PATH]

Models: the paper's hippocampus architecture (channels 32..512, 4 downsamplings) and the quick
profile's (8, 16, 32, 32), both at 64^3, untrained weights (latency does not depend on them), eval mode.
Variants, timed alternately in one process (median of ``--repeats``):

* ``forward``: ``model(moving, fixed)`` (both directions decoded, as training does) + two warps, no_grad;
* ``one_direction``: :meth:`RegistrationNet.register` (encode M and F in one batch, decode only
  ``E(M) - E(F)``) + two warps, inference_mode;
* ``one_direction+cl3d``: the same with weights and inputs in ``channels_last_3d``;
* ``one_direction+bf16``: ``register(..., precision="bfloat16")`` (CUDA only by default; ``--cpu-bf16``
  adds it on CPU; the CLI's ``regexplain register --precision bfloat16``).

Goal: <= 0.25 s per pair on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from common import alternate, device_info, parser, setup, summary, table, write

from regexplain.model import RegistrationNet
from regexplain.spatial import one_hot, warp, warp_labels

ARCHS = {"paper (32..512)": (32, 64, 128, 256, 512), "quick (8,16,32,32)": (8, 16, 32, 32)}
GOAL_S = 0.25


def register_forward(model: RegistrationNet, moving: torch.Tensor, fixed: torch.Tensor,
                     onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference path: the training forward (both directions), then warp image and labels."""
    phi = model(moving, fixed).phi_mf
    return warp(moving, phi), warp_labels(onehot, phi)


def register_one_way(model: RegistrationNet, moving: torch.Tensor, fixed: torch.Tensor,
                     onehot: torch.Tensor, precision: str = "float32") -> tuple[torch.Tensor, torch.Tensor]:
    """Fast path: :meth:`RegistrationNet.register` (one encoder pass for both images, decodes M -> F
    only), then warp image and labels."""
    phi = model.register(moving, fixed, precision=precision)
    return warp(moving.float(), phi), warp_labels(onehot, phi)


def _variants(model: RegistrationNet, moving, fixed, onehot, device, cpu_bf16: bool
              ) -> dict[str, Callable[[], object]]:
    cl_model = RegistrationNet(model.channels).to(device).eval()
    cl_model.load_state_dict(model.state_dict())
    cl_model = cl_model.to(memory_format=torch.channels_last_3d)
    cl_in = [t.contiguous(memory_format=torch.channels_last_3d) for t in (moving, fixed)]

    def fwd():
        with torch.no_grad():
            return register_forward(model, moving, fixed, onehot)

    def one(m=model, mv=moving, fx=fixed):
        with torch.inference_mode():
            return register_one_way(m, mv, fx, onehot)

    def bf16():
        with torch.inference_mode():
            return register_one_way(model, moving, fixed, onehot, "bfloat16")

    out = {"forward": fwd, "one_direction": one,
           "one_direction+cl3d": lambda: one(cl_model, *cl_in)}
    if device.type == "cuda" or cpu_bf16:
        out["one_direction+bf16"] = bf16
    return out


def main() -> None:
    ap = parser("register", __doc__)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--cpu-bf16", action="store_true", help="also time bf16 autocast on the CPU")
    args = ap.parse_args()
    device = setup(args)
    size = 32 if args.quick else args.size
    repeats = args.repeats or (2 if args.quick else 7 if device.type == "cpu" else 50)
    g = torch.Generator().manual_seed(0)
    moving, fixed = (torch.rand(1, 1, size, size, size, generator=g).to(device) for _ in range(2))
    onehot = one_hot(torch.randint(0, 3, (1, 1, size, size, size), generator=g), 3).to(device)
    print(f"register one {size}^3 pair on {device_info(device)}; median of {repeats}, alternating")
    rows = []
    for arch, channels in ARCHS.items():
        torch.manual_seed(0)
        model = RegistrationNet(channels).to(device).eval()
        times = alternate(_variants(model, moving, fixed, onehot, device, args.cpu_bf16), device, repeats)
        for name, ts in times.items():
            rows.append({"model": arch, "variant": name, **summary(ts)})
    print(table(rows, ["model", "variant", "median_s", "min_s", "max_s", "n"]))
    write(args.json, {"benchmark": "register", "size": size, "goal_s": GOAL_S, **device_info(device),
                      "results": rows})


if __name__ == "__main__":
    main()
