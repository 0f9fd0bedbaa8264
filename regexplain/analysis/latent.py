"""Linear decomposition of the registration latent space (Estienne et al. 2021, section 3.2).

Every volume ``X`` is encoded independently, ``E(X)`` of shape ``(C, d, h, w)``, and flattened with its
channels and space together into one row of an ``N x F`` matrix (``F = C*d*h*w``; the paper: "the PCA is
not calculated channel-wise"). A PCA fitted on the training set gives principal vectors ``u_1..u_K``;
a volume's coefficients are ``a_j = (E(X) - mean) . u_j`` (scikit-learn's ``transform`` convention: the
training mean is removed, which changes no difference ``a(X) - a(X')``). Each vector decodes into an
*elementary transformation* ``phi_i = D(lambda * u_i)``. The mean is *not* added before decoding: the
network decodes fused codes ``E(M) - E(F)`` in which the mean cancels.

Any network is reached through its adapter (:mod:`regexplain.adapters`, whose docstring says how): a
late-fusion network (the paper's) encodes volumes alone; an early-fusion one (VoxelMorph, LocalNet...)
encodes each volume as the pair ``(X, R)`` with one reference volume ``R``, kept with the decomposition
(``reference_image``), and decodes directions about the identity pair ``(R, R)`` with its skip features.

Strength ``lambda`` is either absolute (the paper's Fig 3 uses -200..200) or in units of the component's
standard deviation ``sigma_i = sqrt(explained_variance_i)`` (``units="sigma"``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from regexplain.errors import DataError
from regexplain.io import atomic_path, deferred_signals, write_json
from regexplain.registration import spatial

NPZ_NAME = "decomposition.npz"
JSON_NAME = "decomposition.json"
REFERENCE_KEY = "reference_image"     # extra array: an early-fusion model's reference volume (D, H, W)
_CORE_KEYS = ("components", "mean", "explained_variance", "explained_variance_ratio", "latent_shape")


# --------------------------------------------------------------------------------------------- encoding

def model_device(model: torch.nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-free module)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def inference(model) -> Iterator[None]:
    """Eval mode and ``torch.inference_mode`` for the block; the model's train/eval state is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def reference_volume(model, volumes) -> torch.Tensor | None:
    """The reference volume ``R`` ``(1, 1, D, H, W)`` of an early-fusion model: the first volume of
    ``volumes`` (a :class:`~regexplain.data.pairs.VolumeSet` or an ``(N, 1, D, H, W)`` tensor, the training
    set); ``None`` for a late-fusion model, which needs none."""
    from regexplain.adapters import as_adapter

    if as_adapter(model).fusion == "late":
        return None
    images = getattr(volumes, "images", volumes)
    return torch.as_tensor(images[:1], dtype=torch.float32).clone()


def encode_volumes(model, images: torch.Tensor | np.ndarray, batch_size: int = 8,
                   device: torch.device | str | None = None, *, reference: torch.Tensor | None = None
                   ) -> np.ndarray:
    """Encode volumes and flatten each code, channels and space together: ``E(X)`` for a late-fusion model
    (the paper's), the code of the pair ``(X, reference)`` for an early-fusion one.

    Args:
        model: regexplain's ``RegistrationNet`` or any adapter (:func:`regexplain.adapters.as_adapter`).
        images: ``(N, 1, D, H, W)`` tensor or array.
        device: where to run; the model's device by default (the model is moved there).
        reference: ``(1, 1, D, H, W)``, early fusion only (:func:`reference_volume`, ``Decomposition.reference``).
    Returns:
        ``(N, C*d*h*w)`` float32 array, in the row-major order of ``(C, d, h, w)``.
    """
    from regexplain.adapters import as_adapter

    images = torch.as_tensor(images)
    if images.ndim != 5:
        raise ValueError(f"encode_volumes expects images (N, 1, D, H, W), got {tuple(images.shape)}")
    adapter = as_adapter(model)
    dev = torch.device(device) if device is not None else model_device(adapter)
    adapter.to(dev)
    if adapter.fusion == "early" and reference is None:
        raise ValueError(f"{type(adapter).__name__} fuses the pair early: encoding volumes needs a reference "
                         "volume (reference_volume(model, train_set), or the decomposition's reference)")
    out = []
    with inference(adapter):
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(dev, torch.float32)
            code = adapter.encode_volume(x) if adapter.fusion == "late" else \
                adapter.encode(x, reference.to(dev, torch.float32).expand(len(x), *reference.shape[1:]))
            out.append(code.flatten(1).float().cpu().numpy())
    if not out:
        raise ValueError("encode_volumes got an empty set of images")
    return np.concatenate(out, axis=0)


# ------------------------------------------------------------------------------------------------ PCA

def pca_gram(x: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """PCA through the ``N x N`` Gram matrix of the centred data (fast when ``N << F``).

    ``Xc Xc^T = V diag(s^2) V^T`` gives the right singular vectors ``u_j = Xc^T v_j / s_j``, the same
    principal axes as scikit-learn's SVD up to sign; signs follow scikit-learn's ``svd_flip`` for
    components (largest-magnitude entry positive), so results are deterministic.

    Args:
        x: ``(N, F)``.
    Returns:
        components ``(K, F)``, mean ``(F,)``, explained_variance ``(K,)`` (``s^2 / (N - 1)``), and the
        total variance (sum over all features, ``N - 1`` denominator).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    mean = x.mean(axis=0)
    xc = x - mean
    gram = xc @ xc.T
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1][:n_components]
    evals = np.clip(evals[order], 0.0, None)
    s = np.sqrt(evals)
    comps = (evecs[:, order].T @ xc) / np.where(s > 0, s, 1.0)[:, None]
    # svd_flip(u_based_decision=False): the largest |entry| of each component is positive
    idx = np.argmax(np.abs(comps), axis=1)
    signs = np.sign(comps[np.arange(comps.shape[0]), idx])
    comps *= np.where(signs == 0, 1.0, signs)[:, None]
    total = float(np.trace(gram)) / max(n - 1, 1)
    return comps, mean, evals / max(n - 1, 1), total


@dataclass
class Decomposition:
    """PCA of flattened latent codes.

    Attributes:
        components: ``(K, F)`` orthonormal principal vectors ``u_j`` (rows).
        mean: ``(F,)`` training mean code.
        explained_variance: ``(K,)`` variance of each coefficient over the training set.
        explained_variance_ratio: ``(K,)`` share of the total latent variance.
        latent_shape: ``(C, d, h, w)`` of one code.
        meta: free JSON-serialisable record (checkpoint, data, K, ...).
        extra: further arrays saved beside the decomposition (coefficients, ids, ...).
    """

    components: np.ndarray
    mean: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    latent_shape: tuple[int, int, int, int]
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fit(cls, latents: np.ndarray, n_components: int = 32,
            latent_shape: Sequence[int] | None = None, meta: Mapping[str, Any] | None = None
            ) -> Decomposition:
        """Fit on training latents ``(N, F)``; ``K <= min(N - 1, F)``.

        Uses :func:`pca_gram` (measured in ``benchmarks/pca.py`` to agree with scikit-learn's
        ``PCA(svd_solver="full")``, the paper's tool, to ``|cos| > 0.9999``).
        """
        latents = np.asarray(latents)
        if latents.ndim != 2:
            raise ValueError(f"latents must be (N, F), got shape {latents.shape}")
        n, f = latents.shape
        if not 1 <= n_components <= min(n - 1, f):
            raise ValueError(f"n_components={n_components} must lie in [1, min(N - 1, F)] = "
                             f"[1, {min(n - 1, f)}] for {n} latents of {f} features")
        if not np.all(np.isfinite(latents)):
            raise ValueError("latents contain NaN or inf")
        comps, mean, var, total = pca_gram(latents, n_components)
        shape = tuple(int(s) for s in latent_shape) if latent_shape is not None else (f, 1, 1, 1)
        if int(np.prod(shape)) != f:
            raise ValueError(f"latent_shape {shape} does not hold {f} features")
        info = {"K": n_components, "n_train": n}
        info.update(meta or {})
        return cls(comps.astype(np.float32), mean.astype(np.float32), var, var / total if total > 0 else
                   np.zeros_like(var), shape, info)  # type: ignore[arg-type]

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def reference(self) -> torch.Tensor | None:
        """The reference volume ``(1, 1, D, H, W)`` of an early-fusion model's codes (``extra["reference_image"]``),
        ``None`` for a late-fusion one."""
        ref = self.extra.get(REFERENCE_KEY)
        return None if ref is None else torch.as_tensor(np.asarray(ref, np.float32))[None, None]

    @property
    def sigma(self) -> np.ndarray:
        """``(K,)`` standard deviation of each coefficient over the training set."""
        return np.sqrt(self.explained_variance)

    @property
    def cumulative_ratio(self) -> np.ndarray:
        return np.cumsum(self.explained_variance_ratio)

    def project(self, latents: np.ndarray) -> np.ndarray:
        """``(N, F)`` latents -> ``(N, K)`` coefficients ``a = (z - mean) U^T`` (orthonormal rows, e.g. PCA),
        or the least-squares coefficients ``(z - mean) pinv(U)`` for another basis
        (:mod:`regexplain.analysis.bases`)."""
        latents = np.asarray(latents, dtype=np.float64)
        if latents.ndim != 2 or latents.shape[1] != self.components.shape[1]:
            raise ValueError(f"latents must be (N, {self.components.shape[1]}), got {latents.shape}")
        u = self.components.astype(np.float64)
        gram = u @ u.T
        if np.allclose(gram, np.eye(len(u)), atol=1e-4):
            return (latents - self.mean) @ u.T
        return (latents - self.mean) @ np.linalg.pinv(u)

    def reconstruct(self, coeffs: np.ndarray) -> np.ndarray:
        """``(N, K)`` coefficients -> ``(N, F)`` latents ``mean + a U``."""
        coeffs = np.atleast_2d(np.asarray(coeffs, dtype=np.float64))
        return coeffs @ self.components.astype(np.float64) + self.mean

    def code(self, i: int, lam: float, units: str = "absolute") -> np.ndarray:
        """``lambda * u_i`` as a code of shape ``latent_shape`` (0-based ``i``; no mean added)."""
        return (strength(self, i, lam, units) * self.components[i]).reshape(self.latent_shape)

    def summary(self) -> dict[str, Any]:
        """Explained variance ratios, cumulative, the first four (paper: 42 % / 62 %) and all K."""
        ratio = self.explained_variance_ratio
        return {"K": self.n_components, "explained_variance_ratio": ratio.tolist(),
                "cumulative": self.cumulative_ratio.tolist(), "first4": float(ratio[:4].sum()),
                "total": float(ratio.sum()), "latent_shape": list(self.latent_shape)}

    def save(self, directory: str | Path) -> None:
        """Write ``decomposition.npz`` (arrays) and ``decomposition.json`` (meta + summary), atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"components": self.components, "mean": self.mean,
                  "explained_variance": self.explained_variance,
                  "explained_variance_ratio": self.explained_variance_ratio,
                  "latent_shape": np.asarray(self.latent_shape, dtype=np.int64)}
        clash = set(arrays) & set(self.extra)
        if clash:
            raise ValueError(f"extra arrays may not reuse the names {sorted(clash)}")
        with deferred_signals():   # the pair is written whole: a Ctrl-C waits for the JSON
            with atomic_path(directory / NPZ_NAME) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **arrays, **{k: np.asarray(v) for k, v in self.extra.items()})
            write_json(directory / JSON_NAME, {"meta": self.meta, **self.summary(),
                                               "extra": sorted(self.extra)})

    @classmethod
    def load(cls, directory: str | Path) -> Decomposition:
        """Read a directory written by :meth:`save`; :class:`DataError` names the file and the problem."""
        directory = Path(directory)
        npz_path, json_path = directory / NPZ_NAME, directory / JSON_NAME
        for p in (npz_path, json_path):
            if not p.is_file():
                raise DataError(f"{p}: missing (expected a decomposition written by `regexplain decompose`)")
        try:
            info = json.loads(json_path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{json_path}: not valid JSON: {e}") from e
        try:
            with np.load(npz_path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # zipfile / format errors come in many types
            raise DataError(f"{npz_path}: cannot read the arrays: {e}") from e
        missing = [k for k in _CORE_KEYS if k not in arrays]
        if missing:
            raise DataError(f"{npz_path}: missing arrays {missing}")
        comps = arrays["components"]
        k, f = comps.shape if comps.ndim == 2 else (None, None)
        shape = tuple(int(s) for s in arrays["latent_shape"])
        if k is None or arrays["mean"].shape != (f,) or arrays["explained_variance"].shape != (k,) \
                or int(np.prod(shape)) != f:
            raise DataError(f"{npz_path}: inconsistent shapes (components {comps.shape}, mean "
                            f"{arrays['mean'].shape}, variance {arrays['explained_variance'].shape}, "
                            f"latent_shape {shape})")
        extra = {name: arrays[name] for name in arrays if name not in _CORE_KEYS}
        return cls(comps, arrays["mean"], arrays["explained_variance"], arrays["explained_variance_ratio"],
                   shape, dict(info.get("meta", {})), extra)  # type: ignore[arg-type]


def strength(dec: Decomposition, i: int, lam: float, units: str = "absolute") -> float:
    """Absolute strength for component ``i``: ``lam`` or ``lam * sigma_i`` (``units="sigma"``)."""
    if not 0 <= i < dec.n_components:
        raise IndexError(f"component index {i} out of range [0, {dec.n_components}) (indices are 0-based)")
    if units == "absolute":
        return float(lam)
    if units == "sigma":
        return float(lam) * float(dec.sigma[i])
    raise ValueError(f"units must be 'absolute' or 'sigma', got {units!r}")


# ------------------------------------------------------------------------------ elementary transformations

def decode_codes(model, codes: torch.Tensor | np.ndarray, batch_size: int = 8, *,
                 reference: torch.Tensor | None = None) -> torch.Tensor:
    """Decode directions ``v`` ``(B, C, d, h, w)`` of the latent space into voxel sampling maps
    ``(B, 3, D, H, W)`` (CPU, no grad): ``D(v)`` for a late-fusion model (the paper's fused codes); for an
    early-fusion one ``D(z_R + v)`` with the code ``z_R`` and the skip features of the identity pair of the
    ``reference`` volume (:meth:`~regexplain.adapters.base.RegistrationAdapter.origin`)."""
    from regexplain.adapters import as_adapter

    adapter = as_adapter(model)
    codes = torch.as_tensor(np.asarray(codes), dtype=torch.float32)
    dev = model_device(adapter)
    out = []
    with inference(adapter):
        origin, context = adapter.origin(reference)
        for start in range(0, codes.shape[0], batch_size):
            v = codes[start:start + batch_size].to(dev)
            out.append(adapter.decode_map(v if origin is None else origin + v, context).float().cpu())
    return torch.cat(out, dim=0)


def elementary_map(model, dec: Decomposition, i: int, lam: float, units: str = "absolute") -> torch.Tensor:
    """Sampling map of ``phi_i = D(lambda * u_i)``, ``(1, 3, D, H, W)`` voxels (paper, section 3.2)."""
    return decode_codes(model, dec.code(i, lam, units)[None], reference=dec.reference)


def elementary_displacement(model, dec: Decomposition, i: int, lam: float, units: str = "absolute", *,
                            relative_to_zero: bool = False) -> torch.Tensor:
    """Displacement in voxels of ``phi_i``, ``(1, 3, D, H, W)``.

    ``D(0)`` is the identity only for an untrained network (zero-initialised last layer); for a trained
    one it is the model's response to two identical inputs. ``relative_to_zero=True`` subtracts that
    response, ``u(lambda u_i) - u(0)``, to show what the component adds.
    """
    return component_displacements(model, dec, lam, units, [i], relative_to_zero=relative_to_zero)


def component_displacements(model, dec: Decomposition, lam: float = 1.0, units: str = "sigma",
                            components: Sequence[int] | None = None, *, relative_to_zero: bool = False
                            ) -> torch.Tensor:
    """Displacements of several components at one strength, ``(n, 3, D, H, W)`` voxels (batched)."""
    idx = list(range(dec.n_components)) if components is None else list(components)
    codes = np.stack([dec.code(i, lam, units) for i in idx])
    disp = spatial.map_to_displacement(decode_codes(model, codes, reference=dec.reference))
    if relative_to_zero:
        zero = decode_codes(model, np.zeros((1, *dec.latent_shape), dtype=np.float32), reference=dec.reference)
        disp = disp - spatial.map_to_displacement(zero)
    return disp


def displacement_stats(disp: torch.Tensor | np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
    """Norm field and summaries of a displacement ``(3, D, H, W)`` in voxels.

    Returns ``norm`` ``(D, H, W)``, ``mean_vector`` ``(3,)`` (D, H, W order), ``mean_norm`` and
    ``max_norm``, over ``mask`` (bool ``(D, H, W)``) when given, else over all voxels.
    """
    d = np.asarray(disp, dtype=np.float64)
    d = d[0] if d.ndim == 5 else d
    if d.ndim != 4 or d.shape[0] != 3:
        raise ValueError(f"displacement must be (3, D, H, W), got {d.shape}")
    norm = np.sqrt((d ** 2).sum(0))
    sel = np.ones(norm.shape, bool) if mask is None else np.asarray(mask, bool)
    if sel.shape != norm.shape or not sel.any():
        raise ValueError(f"mask must be a non-empty boolean (D, H, W) = {norm.shape}, got {sel.shape}")
    return {"norm": norm, "mean_vector": d[:, sel].mean(1), "mean_norm": float(norm[sel].mean()),
            "max_norm": float(norm[sel].max())}


def warp_subject(phi: torch.Tensor, image: torch.Tensor, label: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Warp an image (trilinear) and its labels (nearest) by a sampling map.

    Args:
        phi: ``(1, 3, D, H, W)`` voxel map, e.g. :func:`elementary_map`.
        image: ``(1, 1, D, H, W)``; label: ``(1, 1, D, H, W)`` integers or ``None``.
    """
    if image.shape[2:] != phi.shape[2:]:
        raise ValueError(f"image shape {tuple(image.shape[2:])} differs from the map's "
                         f"{tuple(phi.shape[2:])}")
    phi = phi.to(image.device)
    warped = spatial.warp(image.float(), phi)
    wl = None if label is None else spatial.warp(label.float(), phi, mode="nearest").round().to(label.dtype)
    return warped, wl


def warp_by_component(model, dec: Decomposition, i: int, lam: float, image: torch.Tensor,
                      label: torch.Tensor | None = None, units: str = "absolute"
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``W(D(lambda u_i), X)`` for an image and its labels (paper, section 4.1)."""
    return warp_subject(elementary_map(model, dec, i, lam, units), image, label)
