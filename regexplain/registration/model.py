"""Registration network of Estienne et al. (2021): one shared encoder, latent fusion by subtraction, a
decoder that predicts positive per-axis spatial gradients, integrated into voxel sampling maps.

Architecture (paper section 3.1):

* Encoder level 0: a block ``[3x3x3 conv stride 1 pad 1, InstanceNorm, LeakyReLU]`` at full resolution.
  Each further level: a ``2x2x2`` convolution of stride 2 (the paper's "stride and padding of 2"; kernel 2
  halves every even size exactly, with no overlap) followed by InstanceNorm + LeakyReLU and one block.
  ``channels`` has one entry per level, so ``len(channels) - 1`` downsamplings.
* Fusion: ``z_MF = E(M) - E(F)`` and ``z_FM = E(F) - E(M)`` (symmetric formulation).
* Decoder: mirrors the encoder with ``2x2x2`` transposed convolutions of stride 2, then a ``3x3x3``
  convolution to 3 channels, zero-initialised (weights and bias), and a positive activation with
  ``g(0) = 1``, so an untrained network gives the identity map and ``g > 0`` keeps the integrated map
  monotone. ``activation="sigmoid"`` (default) is the authors' ``g = 2 sigmoid(x)`` (their decoder ends in a
  sigmoid ``s`` and their integration takes ``2 s`` voxels per step: ``FrontiersNet.integral3DImage``), so
  ``g`` stays in ``(0, 2)``; ``activation="softplus"`` is this project's earlier unbounded
  ``softplus(x) / ln 2`` (a listed deviation, ``docs/deviations.md``).
* No instance normalisation in the decoder. An instance norm acting on (a linear function of) the code
  cancels its scale, so ``D(lam * u)`` would hardly depend on ``lam > 0`` and the paper's lambda sweeps
  would show nothing (measured on a prototype; ``tests/test_model.py`` checks that ``D(lam * u)`` moves
  with ``lam``). The decoder keeps biases, so ``D(0)`` is the identity only for the untrained network;
  the latent analysis compares ``D(lam * u)`` with ``D(0)``.
* ``skip_connections=True`` (the authors' earlier base network, for the ablation) concatenates the
  encoder feature differences ``E_l(M) - E_l(F)`` at every level ``l`` below the bottleneck.
* ``convs_per_level`` (the authors' ``nb_Convs``; their ``--classic-vnet`` is ``(1, 2, 3, 2, 2, 2)``): the
  encoder block that makes level ``l >= 1`` has ``convs_per_level[l - 1]`` convolutions after its
  downsampling, the decoder block that makes level ``l`` has ``convs_per_level[l]`` (``blocks.py``:
  ``ConvBlock`` / ``DeconvBlock``). Default: one each.
* ``deep_supervision=True`` (the authors' ``--deep-supervision``, ``blocks.DeepSupervisionBlock``): the
  bottleneck and every decoder level above the last also predict gradients (a 3x3x3 convolution to 3
  channels, nearest upsampling to full resolution, the same activation), integrated into coarse maps that
  the loss scores beside the final one (:attr:`RegistrationOutput.coarse_phi`). Their side convolutions
  are zero-initialised here, so the untrained network is the identity at every level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regexplain.config import PRECISIONS
from regexplain.registration.spatial import integrate_gradients

_LN2 = math.log(2.0)


def gradient_activation(x: Tensor, kind: str = "sigmoid") -> Tensor:
    """Positive per-axis spatial gradients from the decoder's last convolution; ``0 -> 1`` (identity).

    ``"sigmoid"``: ``2 sigmoid(x)`` in ``(0, 2)`` (the authors'); ``"softplus"``: ``softplus(x) / ln 2`` in
    ``(0, inf)``. Raises ``ValueError`` for another ``kind``.
    """
    if kind == "sigmoid":
        return 2.0 * torch.sigmoid(x)
    if kind == "softplus":
        return F.softplus(x) / _LN2
    raise ValueError(f"unknown gradient activation {kind!r}; choose 'sigmoid' or 'softplus'")


@dataclass
class RegistrationOutput:
    """Both directions of a symmetric registration. All ``(B, 3, D, H, W)`` float32, voxel units.

    ``warp(moving, phi_mf) ~ fixed`` and ``warp(fixed, phi_fm) ~ moving``.
    """
    grads_mf: Tensor
    grads_fm: Tensor
    phi_mf: Tensor
    phi_fm: Tensor
    #: deep supervision only: ``(S, 2B, 3, D, H, W)`` maps of the coarse levels (coarsest first), M->F
    #: for the first B, F->M for the last B
    coarse_phi: Tensor | None = None


def _block(cin: int, cout: int, slope: float, *, norm: bool = True, n: int = 1) -> nn.Sequential:
    """``n`` x [3x3x3 conv stride 1 pad 1 [+ InstanceNorm] + LeakyReLU]; keeps the spatial shape."""
    layers: list[nn.Module] = []
    for k in range(n):
        layers.append(nn.Conv3d(cin if k == 0 else cout, cout, 3, padding=1))
        if norm:
            layers.append(nn.InstanceNorm3d(cout, affine=True))
        layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers)


def _convs(convs_per_level: Sequence[int], depth: int) -> tuple[int, ...]:
    """Convolutions per level block (the authors' ``nb_Convs``), one each when empty."""
    n = tuple(int(c) for c in convs_per_level) or (1,) * depth
    if len(n) < depth or any(c < 1 for c in n):
        raise ValueError(f"convs_per_level needs at least {depth} entries >= 1 (one per downsampling), got "
                         f"{list(convs_per_level)}")
    return n[:depth]


class Encoder(nn.Module):
    """``(B, in, D, H, W)`` -> list of level features, level ``l`` of shape ``(B, c_l, D/2^l, ...)``."""

    def __init__(self, channels: Sequence[int], in_channels: int, slope: float,
                 convs_per_level: Sequence[int] = ()):
        super().__init__()
        convs = _convs(convs_per_level, len(channels) - 1)
        self.levels = nn.ModuleList([_block(in_channels, channels[0], slope)])
        for cin, cout, n in zip(channels[:-1], channels[1:], convs, strict=True):
            self.levels.append(nn.Sequential(
                nn.Conv3d(cin, cout, 2, stride=2), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(slope),
                _block(cout, cout, slope, n=n)))

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for level in self.levels:
            x = level(x)
            feats.append(x)
        return feats


class Decoder(nn.Module):
    """Bottleneck code ``(B, c_L, d, h, w)`` (+ optional skip differences) -> positive gradients
    ``(B, 3, D, H, W)``. Norm-free (see the module docstring)."""

    def __init__(self, channels: Sequence[int], slope: float, skip_connections: bool,
                 activation: str = "sigmoid", *, convs_per_level: Sequence[int] = (),
                 deep_supervision: bool = False):
        super().__init__()
        gradient_activation(torch.zeros(()), activation)   # reject an unknown kind at construction
        depth = len(channels) - 1
        convs = _convs(convs_per_level, depth)
        self.skip_connections = skip_connections
        self.activation = activation
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip(channels[:0:-1], channels[-2::-1], strict=True)):
            self.ups.append(nn.Sequential(nn.ConvTranspose3d(cin, cout, 2, stride=2), nn.LeakyReLU(slope)))
            self.blocks.append(_block(cout * (2 if skip_connections else 1), cout, slope, norm=False,
                                      n=convs[depth - 1 - i]))
        self.head = nn.Conv3d(channels[0], 3, 3, padding=1)
        # deep supervision: one side head per coarse level, bottleneck first (channels[-1], ..., channels[1])
        self.side = nn.ModuleList([nn.Conv3d(c, 3, 3, padding=1) for c in channels[:0:-1]]
                                  if deep_supervision else [])
        for conv in (self.head, *self.side):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, z: Tensor, skips: Sequence[Tensor] | None = None) -> Tensor:
        return self.levels(z, skips)[0]

    def levels(self, z: Tensor, skips: Sequence[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        """Final gradients ``(B, 3, D, H, W)`` and, with deep supervision, the coarse levels' gradients
        at full resolution (nearest upsampling), coarsest first; an empty list without."""
        x = z
        n = len(self.ups)
        coarse = []
        for i, (up, block) in enumerate(zip(self.ups, self.blocks, strict=True)):
            if self.side:
                g = F.interpolate(self.side[i](x).float(), scale_factor=2 ** (n - i), mode="nearest")
                coarse.append(gradient_activation(g, self.activation))
            x = up(x)
            if self.skip_connections:
                # skips are ordered by encoder level (0 = full resolution); this is level n - 1 - i
                s = torch.zeros_like(x) if skips is None else skips[n - 1 - i]
                x = torch.cat([x, s.to(x.dtype)], dim=1)
            x = _halves_below_onednn_threshold(block, x)
        # float32 before the activation and the cumulative sums: bf16 sums of 64+ terms drift by voxels
        return gradient_activation(_halves_below_onednn_threshold(self.head, x).float(), self.activation), coarse


#: ATen's ``use_mkldnn``: a float32 CPU 3x3x3 convolution at batch 1 takes oneDNN only when N C D H is above.
_ONEDNN_MIN_NCDH = 20480


def _halves_below_onednn_threshold(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)`` for a decoder ``layer``: 3x3x3 convolutions (padding 1) and pointwise ops between them;
    ``x`` ``(B, C, D, H, W)``.

    A float32 CPU batch of 1 with ``C D H <= 20480`` goes to PyTorch's native 3-D convolution, 1.6-7x
    slower than oneDNN on these layers at one thread (8-32 channels at 8^3-32^3, measured against a batch
    of 2). Such a volume runs here as a batch of its two halves along D, each with the planes of the other
    half that its windows reach (one per convolution), and the outputs of those borrowed planes are
    dropped: the same arithmetic on oneDNN's kernels plus 2 planes per convolution, equal to float rounding
    (``tests/test_speedups.py``).
    It makes ``register`` and single-code decodes (the explorer) faster for the quick model; batches of 2
    and more (training) and autocast are unchanged.
    """
    b, c, d, h, _ = x.shape
    halo = sum(isinstance(m, nn.Conv3d) for m in layer.modules())     # planes a window chain reaches across
    small = b == 1 and d % 2 == 0 and d // 2 > halo and c * d * h <= _ONEDNN_MIN_NCDH
    if not (small and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")):
        return layer(x)
    half = d // 2
    y = layer(torch.cat([x[:, :, :half + halo], x[:, :, half - halo:]]))    # (2, C', half + halo, H, W)
    return torch.cat([y[:1, :, :half], y[1:, :, halo:]], dim=2)


class RegistrationNet(nn.Module):
    """Symmetric registration network predicting spatial gradients (see the module docstring).

    Args:
        channels: one entry per level, e.g. ``(8, 16, 32, 32)``: 3 downsamplings, bottleneck 32 channels.
        skip_connections: concatenate encoder feature differences in the decoder (ablation only).
        negative_slope: LeakyReLU slope.
        in_channels: image channels.
        activation: decoder gradient activation, ``"sigmoid"`` (authors') or ``"softplus"``.
        convs_per_level: convolutions per level block (authors' ``nb_Convs``); empty: one each.
        deep_supervision: coarse levels predict gradients too (see the module docstring).
    """

    def __init__(self, channels: Sequence[int], *, skip_connections: bool = False,
                 negative_slope: float = 0.2, in_channels: int = 1, activation: str = "sigmoid",
                 convs_per_level: Sequence[int] = (), deep_supervision: bool = False):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2 or any(c <= 0 for c in channels):
            raise ValueError(f"channels needs at least two positive entries (one per level), got {channels}")
        if in_channels <= 0:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        self.channels = channels
        self.skip_connections = bool(skip_connections)
        self.negative_slope = float(negative_slope)
        self.in_channels = int(in_channels)
        self.convs_per_level = tuple(int(c) for c in convs_per_level)
        self.deep_supervision = bool(deep_supervision)
        self.encoder = Encoder(channels, in_channels, negative_slope, self.convs_per_level)
        self.activation = activation
        self.decoder = Decoder(channels, negative_slope, self.skip_connections, activation,
                               convs_per_level=self.convs_per_level, deep_supervision=self.deep_supervision)

    @classmethod
    def from_config(cls, cfg) -> RegistrationNet:
        """Build from a :class:`regexplain.config.Config` (``cfg.model``)."""
        m = cfg.model
        return cls(m.channels, skip_connections=m.skip_connections, negative_slope=m.negative_slope,
                   activation=m.activation, convs_per_level=m.convs_per_level,
                   deep_supervision=m.deep_supervision)

    @property
    def depth(self) -> int:
        """Number of stride-2 downsamplings."""
        return len(self.channels) - 1

    def check_shape(self, shape: Sequence[int]) -> None:
        """Raise ``ValueError`` unless ``shape`` ``(D, H, W)`` is divisible by ``2^depth``."""
        f = 2 ** self.depth
        if len(shape) != 3 or any(s <= 0 or s % f for s in shape):
            raise ValueError(f"volume shape {tuple(shape)} must be three sizes divisible by "
                             f"2^{self.depth} = {f} ({self.depth} downsamplings, channels {self.channels})")

    def latent_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        """Bottleneck shape ``(C, D/2^L, H/2^L, W/2^L)`` for volumes of shape ``(D, H, W)``."""
        self.check_shape(shape)
        f = 2 ** self.depth
        return (self.channels[-1], *(int(s) // f for s in shape))

    def _check_input(self, x: Tensor, name: str) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"{name} must have shape (B, {self.in_channels}, D, H, W), got {tuple(x.shape)}")
        self.check_shape(x.shape[2:])

    def encode(self, x: Tensor) -> Tensor:
        """``(B, in, D, H, W)`` -> bottleneck code ``(B, C_last, D/2^L, H/2^L, W/2^L)``."""
        self._check_input(x, "input")
        return self.encoder(x)[-1]

    def decode(self, z: Tensor, skips: Sequence[Tensor] | None = None) -> Tensor:
        """Code ``(B, C_last, d, h, w)`` -> positive spatial gradients ``(B, 3, d*2^L, h*2^L, w*2^L)``.

        An untrained network maps any code (zero included) to ones, the identity. ``skips`` (skip model
        only): encoder feature differences per level, full resolution first; ``None`` uses zeros.
        """
        if z.ndim != 5 or z.shape[1] != self.channels[-1]:
            raise ValueError(f"code must have shape (B, {self.channels[-1]}, d, h, w), got {tuple(z.shape)}")
        return self.decoder(z, skips)

    def forward(self, moving: Tensor, fixed: Tensor) -> RegistrationOutput:
        """Register both ways. ``moving``, ``fixed``: ``(B, in, D, H, W)`` of the same shape."""
        if moving.shape != fixed.shape:
            raise ValueError(f"moving and fixed must have the same shape, got {tuple(moving.shape)} "
                             f"and {tuple(fixed.shape)}")
        self._check_input(moving, "moving")
        b = moving.shape[0]
        # one encoder pass for both images, one decoder pass for both directions
        feats = self.encoder(torch.cat([moving, fixed]))
        diffs = [f[:b] - f[b:] for f in feats]                  # E_l(M) - E_l(F)
        both = [torch.cat([d, -d]) for d in diffs]              # M->F first, then F->M
        skips = both[:-1] if self.skip_connections else None
        grads, coarse = self.decoder.levels(both[-1], skips)
        phi = integrate_gradients(grads)
        coarse_phi = torch.stack([integrate_gradients(g) for g in coarse]) if coarse else None
        return RegistrationOutput(grads[:b], grads[b:], phi[:b], phi[b:], coarse_phi)

    @torch.no_grad()
    def register(self, moving: Tensor, fixed: Tensor, *, precision: str = "float32") -> Tensor:
        """Voxel sampling map ``phi_mf`` ``(B, 3, D, H, W)`` float32: ``warp(moving, phi_mf) ~ fixed``.

        Equals ``self(moving, fixed).phi_mf`` but decodes only the M -> F direction (half the decoder
        work; ``benchmarks/register.py``). ``precision="bfloat16"`` runs the convolutions under bf16
        autocast on the input's device (the activation and the cumulative sums stay float32): about 1.85x
        faster for the paper architecture on an AVX-512 CPU, maps within a few thousandths of a voxel.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if moving.shape != fixed.shape:
            raise ValueError(f"moving and fixed must have the same shape, got {tuple(moving.shape)} "
                             f"and {tuple(fixed.shape)}")
        self._check_input(moving, "moving")
        b = moving.shape[0]
        with torch.autocast(moving.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            diffs = [f[:b] - f[b:] for f in self.encoder(torch.cat([moving, fixed]))]
            grads = self.decoder(diffs[-1], diffs[:-1] if self.skip_connections else None)
        return integrate_gradients(grads)  # the decoder returns float32 under autocast too
