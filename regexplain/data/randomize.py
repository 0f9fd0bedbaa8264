"""Domain randomisation of the network's inputs, SynthMorph-style (Hoffmann et al., IEEE TMI 2022).

Each training volume the network sees gets its own random appearance: a random intensity transfer
function (every intensity level, so every tissue, gets a random new intensity; contrasts may invert), a
Gaussian blur, a smooth multiplicative bias field, noise and a gamma, then the paper's normalisation; and
optionally a random crop box: the image outside a box of random MSD-like size centred in the window is set
to the normalised minimum, as the preprocessing pads a real crop smaller than the window
(:func:`regexplain.data.preprocess.crop_pair`). Only the network's input changes: the loss compares the
un-randomised images and the labels, so the model learns to register anatomy whatever it looks like.
Pose and crop offsets come from the per-volume geometric augmentation (:mod:`regexplain.data.augment`
with ``per_pair: false``), which moves labels too.

Random numbers come from the training step's CPU ``torch.Generator`` and are drawn for the whole batch,
so a data-parallel rank randomising only its share of the batch gets what a single process would.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from regexplain.config import RandomizeConfig
from regexplain.data.preprocess import CLIP


def _u(n: int, lo: float, hi: float, generator, k: int = 1) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand((n, k), generator=generator, dtype=torch.float32)


def transfer(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear intensity transfer through ``K`` equally spaced knots on [0, 1].

    Args:
        x: ``(B, 1, D, H, W)`` intensities in [0, 1].
        levels: ``(B, K)`` output value at each knot (``K >= 2``).
    Returns:
        ``(B, 1, D, H, W)``: ``levels`` interpolated linearly at ``x`` (clamped to [0, 1]).
    """
    b, k = levels.shape
    pos = x.clamp(0, 1) * (k - 1)
    i = pos.floor().clamp(max=k - 2)
    frac = pos - i
    flat = i.long().flatten(1)
    lo = torch.gather(levels, 1, flat).view_as(x)
    hi = torch.gather(levels, 1, flat + 1).view_as(x)
    return lo + frac * (hi - lo)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Separable Gaussian blur of each volume ``(B, 1, D, H, W)`` with its own ``sigma`` ``(B,)`` in voxels
    (0 leaves a volume unchanged); zero-flux borders (replicate padding)."""
    b = x.shape[0]
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x).clamp(min=1e-3).view(b, 1)
    k = torch.exp(-0.5 * (t / s) ** 2)
    k = torch.where(sigma.view(b, 1).to(x) > 0, k / k.sum(1, keepdim=True), (t == 0).to(x).expand(b, -1))
    out = x.reshape(1, b, *x.shape[2:])                        # volumes as channels: one grouped conv
    for axis in range(3):
        shape = [b, 1, 1, 1, 1]
        shape[2 + axis] = 2 * radius + 1
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        out = F.conv3d(F.pad(out, pad, mode="replicate"), k.view(shape), groups=b)
    return out.view_as(x)


def bias_field(n: int, shape: Sequence[int], sd: float, grid: int, generator, device=None) -> torch.Tensor:
    """``(n, 1, D, H, W)`` smooth multiplicative fields ``exp(sd * z)``, ``z`` white noise on a
    ``grid^3`` lattice resized trilinearly (corners on corners)."""
    z = torch.randn((n, 1, grid, grid, grid), generator=generator)
    field = F.interpolate(z.to(device), size=tuple(shape), mode="trilinear", align_corners=True)
    return torch.exp(sd * field)


def normalize(x: torch.Tensor, mask: torch.Tensor | None = None, clip: float = CLIP) -> torch.Tensor:
    """The paper's normalisation per volume (:func:`regexplain.data.preprocess.normalize`): standardise,
    clip to ``[-clip, clip]``, min-max to [0, 1]; statistics over ``mask`` (``(B, 1, D, H, W)`` bool)
    when given, and 0 outside it (the value a padded crop gets)."""
    m = torch.ones_like(x, dtype=torch.bool) if mask is None else mask
    w = m.to(x.dtype)
    cnt = w.flatten(1).sum(1).clamp(min=1).view(-1, 1, 1, 1, 1)
    mean = (x * w).flatten(1).sum(1).view(-1, 1, 1, 1, 1) / cnt
    sd = (((x - mean) ** 2 * w).flatten(1).sum(1).view(-1, 1, 1, 1, 1) / cnt).sqrt()
    z = ((x - mean) / sd.clamp(min=1e-8)).clamp(-clip, clip)
    big = torch.finfo(x.dtype).max
    lo = torch.where(m, z, big).flatten(1).min(1).values.view(-1, 1, 1, 1, 1)
    hi = torch.where(m, z, -big).flatten(1).max(1).values.view(-1, 1, 1, 1, 1)
    out = (z - lo) / (hi - lo).clamp(min=1e-8)
    return torch.where(m, out, torch.zeros_like(out))


def crop_boxes(n: int, shape: Sequence[int], lo: Sequence[float], hi: Sequence[float], prob: float,
               generator, device=None) -> torch.Tensor:
    """``(n, 1, D, H, W)`` bool masks: a box centred in the window, its side along each axis a fraction
    uniform in ``[lo, hi]`` of the window's, with probability ``prob`` (else the whole window)."""
    frac = torch.stack([_u(n, a, b, generator)[:, 0] for a, b in zip(lo, hi, strict=True)], 1)   # (n, 3)
    use = torch.rand(n, generator=generator) < prob
    frac = torch.where(use[:, None], frac, torch.ones_like(frac))
    masks = []
    for ax, size in enumerate(shape):
        idx = torch.arange(size, dtype=torch.float32, device=device)
        half = frac[:, ax].to(device) * size / 2
        view = [n, 1, 1, 1, 1]
        view[2 + ax] = size
        masks.append((idx - (size - 1) / 2).abs().view(1, -1).le(half.view(-1, 1)).view(view))
    return masks[0] & masks[1] & masks[2]


def ramp(cfg: RandomizeConfig, step: int) -> float:
    """The share of ``cfg.prob`` in force at training ``step`` (0-based): rising linearly from 0 to 1 over
    ``cfg.ramp_steps`` (1 throughout without a ramp), so the network learns to register before it must do so
    under random appearances."""
    return 1.0 if cfg.ramp_steps <= 0 else min(1.0, step / cfg.ramp_steps)


def randomize(images: torch.Tensor, cfg: RandomizeConfig, generator: torch.Generator | None = None,
              select: torch.Tensor | None = None, *, strength: float = 1.0) -> torch.Tensor:
    """Random appearance (and crop box) of each volume ``(N, 1, D, H, W)`` in [0, 1]: what the network sees.

    Draws are made for all ``N`` volumes; ``select`` (indices) returns only those volumes, randomised as
    they would be in the whole batch. With ``cfg.per_pair`` the volumes are ``N / 2`` moving then their
    ``N / 2`` fixed ones, and a pair shares its intensity transfer, blur and gamma (each volume keeps its own
    bias field, noise and crop box). With probability ``1 - strength * cfg.prob`` a volume (a pair) keeps its
    intensities (still cut by its crop box). Returns ``(len(select) or N, 1, D, H, W)`` float in [0, 1].
    """
    n, shape, dev = images.shape[0], images.shape[2:], images.device
    if cfg.per_pair and n % 2:
        raise ValueError(f"per-pair randomisation needs moving and fixed volumes (an even count), got {n}")
    m = n // 2 if cfg.per_pair else n

    def shared(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x]) if cfg.per_pair else x

    levels = shared(torch.rand((m, cfg.lut_knots), generator=generator))
    keep = shared(torch.rand(m, generator=generator) >= strength * cfg.prob)
    sigma = shared(_u(m, 0, cfg.blur_max, generator)[:, 0])
    noise_sd = _u(n, 0, cfg.noise_max, generator)[:, 0]
    gamma = shared(torch.exp(cfg.gamma_sd * torch.randn(m, generator=generator)))
    bias = bias_field(n, shape, cfg.bias_sd, cfg.bias_grid, generator, dev)
    noise = torch.randn(images.shape, generator=generator).to(dev)
    box = crop_boxes(n, shape, cfg.crop_min, cfg.crop_max, cfg.crop_prob, generator, dev)
    idx = torch.arange(n) if select is None else torch.as_tensor(select).cpu()
    x, keep = images[idx.to(dev)], keep[idx]
    y = transfer(x, levels[idx].to(dev))
    y = gaussian_blur(y, sigma[idx].to(dev)) * bias[idx.to(dev)]
    y = y + noise_sd[idx].to(dev).view(-1, 1, 1, 1, 1) * noise[idx.to(dev)]
    y = normalize(y) ** gamma[idx].to(dev).view(-1, 1, 1, 1, 1)
    y = torch.where(keep.to(dev).view(-1, 1, 1, 1, 1), x, y)
    return normalize(y, box[idx.to(dev)])

