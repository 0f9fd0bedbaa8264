"""Latency of registering one 64^3 pair: encode both, decode one direction, integrate, warp image + one-hot.

    python benchmarks/register.py [--quick] [--threads 2] [--device cpu|cuda] [--json PATH]

Models: the paper's hippocampus architecture (channels 32..512, 4 downsamplings) and the quick
profile's (8, 16, 32, 32), both at 64^3, untrained weights (latency does not depend on them), eval mode.
Variants, timed alternately in one process (median of ``--repeats``):

* ``forward``: ``model(moving, fixed)`` (both directions decoded, as training does) + two warps, no_grad;
* ``one_direction``: :meth:`RegistrationNet.register` (encode M and F in one batch, decode only
  ``E(M) - E(F)``) + two warps, inference_mode;
* ``one_direction, batch-1 native``: the same with every decoder convolution at batch 1, as before
  (PyTorch's native 3-D convolution: ATen takes oneDNN only for a batch > 1 or ``N C D H > 20480``); the
  decoder now runs such layers on a batch of two halves (``model._halves_below_onednn_threshold``); the
  script prints the ratio (goal >= 2x at the quick size);
* ``one_direction+cl3d``: the same with weights and inputs in ``channels_last_3d``;
* ``one_direction+bf16``: ``register(..., precision="bfloat16")`` (CUDA only by default; ``--cpu-bf16``
  adds it on CPU; the CLI's ``regexplain register --precision bfloat16``).

Goal: <= 0.25 s per pair on 2 CPU cores.

Roofline: the script also counts the floating-point operations of one ``register`` call
(``torch.utils.flop_counter``) and times the device's best case, the largest 3x3x3 convolution of the
network (32 -> 32 channels at 64^3) and a 4096^2 matmul, in float32 and bf16. ``GFLOP / best-case rate``
is the shortest time the architecture can take at that precision on this device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from common import alternate, device_info, parser, setup, summary, table, write

from regexplain.registration.model import RegistrationNet
from regexplain.registration.spatial import one_hot, warp, warp_labels

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


def register_batch1_native(model: RegistrationNet, moving: torch.Tensor, fixed: torch.Tensor,
                           onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``register`` before the batch-1 fix: every decoder layer at the batch given."""
    from unittest import mock

    with mock.patch("regexplain.registration.model._ONEDNN_MIN_NCDH", -1):
        return register_one_way(model, moving, fixed, onehot)


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

    def native():
        with torch.inference_mode():
            return register_batch1_native(model, moving, fixed, onehot)

    out = {"forward": fwd, "one_direction": one, "one_direction, batch-1 native": native,
           "one_direction+cl3d": lambda: one(cl_model, *cl_in)}
    if device.type == "cuda" or cpu_bf16:
        out["one_direction+bf16"] = bf16
    return out


def register_gflop(model: RegistrationNet, moving: torch.Tensor, fixed: torch.Tensor) -> float:
    """Floating-point operations (multiply + add = 2) the network needs per ``model.register`` call, in
    GFLOP: counted on the pair repeated into a batch of 2 and halved, so that the 2 extra planes of the
    batch-1 decoder layers split in halves on the CPU (``regexplain.registration.model``) do not count as
    needed work."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model.register(torch.cat([moving, moving]), torch.cat([fixed, fixed]))
    return counter.get_total_flops() / 2e9 * moving.shape[0]


def peak_rates(device: torch.device, repeats: int) -> list[dict]:
    """Best-case GFLOP/s of this device: the network's largest convolution and a square matmul."""
    conv = torch.nn.Conv3d(32, 32, 3, padding=1).to(device).eval()
    x = torch.randn(1, 32, 64, 64, 64, device=device)
    a = torch.randn(4096, 4096, device=device)
    work = {"conv3d 32->32 at 64^3": (lambda: conv(x), 2 * 64**3 * 27 * 32 * 32),
            "matmul 4096^2": (lambda: a @ a, 2 * 4096**3)}
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for name, (fn, flop) in work.items():
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                t = summary(alternate({name: fn}, device, repeats)[name])["min_s"]
            rows.append({"kernel": name, "dtype": str(dtype).removeprefix("torch."), "gflop_per_s": flop / t / 1e9})
    return rows


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
    rows, gflop = [], {}
    for arch, channels in ARCHS.items():
        torch.manual_seed(0)
        model = RegistrationNet(channels).to(device).eval()
        gflop[arch] = register_gflop(model, moving, fixed)
        times = alternate(_variants(model, moving, fixed, onehot, device, args.cpu_bf16), device, repeats)
        for name, ts in times.items():
            rate = gflop[arch] / summary(ts)["median_s"] if name.startswith("one_direction") else None
            rows.append({"model": arch, "variant": name, **summary(ts), "gflop_per_s": rate})
    print(table(rows, ["model", "variant", "median_s", "min_s", "max_s", "n", "gflop_per_s"]))
    med = {(r["model"], r["variant"]): r["median_s"] for r in rows}
    for arch in ARCHS:
        ratio = med[arch, "one_direction, batch-1 native"] / med[arch, "one_direction"]
        print(f"{arch}: register at batch 1 {ratio:.2f}x faster than with native batch-1 decoder layers (goal 2x)")
    peaks = peak_rates(device, 3 if args.quick else 5)
    print(table(peaks, ["kernel", "dtype", "gflop_per_s"]))
    for arch, g in gflop.items():
        bound = {p["dtype"]: g / p["gflop_per_s"] for p in peaks if p["kernel"].startswith("conv3d")}
        print(f"{arch}: {g:.1f} GFLOP per pair; at the best-case convolution rate >= "
              + ", ".join(f"{t:.3f} s in {d}" for d, t in bound.items()))
    write(args.json, {"benchmark": "register", "size": size, "goal_s": GOAL_S, **device_info(device),
                      "gflop_per_pair": gflop, "peak_rates": peaks, "results": rows})


if __name__ == "__main__":
    main()
