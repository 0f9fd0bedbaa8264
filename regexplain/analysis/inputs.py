"""What every analysis of a trained model starts from, built in one place: the training and validation codes,
the phantoms' factors aligned to the volume ids, the number of components and the fitted decomposition with
its metadata.

The report, the basis comparison, the seed study, the bases, the main job (:mod:`regexplain.runs`),
``regexplain decompose`` and the explorer all call these functions, so the K rule, the factor alignment
(one error type, naming ``factors.csv``) and what a saved decomposition records cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from regexplain.errors import DataError

#: ``read_factors`` output: ``(volume ids, factor names, values (N, F))``
FactorTable = tuple[Sequence[str], Sequence[str], np.ndarray]


def n_components(requested: int, n_train: int) -> int:
    """The K rule: ``min(requested, n_train - 1)`` (a PCA of ``n_train`` centred codes has at most
    ``n_train - 1`` non-zero components), at least 1."""
    return max(1, min(int(requested), int(n_train) - 1))


def read_factor_table(root: str | Path) -> FactorTable | None:
    """``root/factors.csv`` as ``(ids, names, values)``, or ``None`` for data without one (real data)."""
    from regexplain.data.synthetic import read_factors

    return read_factors(root) if (Path(root) / "factors.csv").is_file() else None


def align_factors(ids: Sequence[str], factors: FactorTable, source: str | Path = "factors.csv") -> np.ndarray:
    """Rows of ``factors`` ``(ids, names, values)`` in the order of ``ids``: ``(len(ids), F)`` float64.

    Raises:
        DataError: a volume id has no row, naming ``source`` and a few of the missing ids.
    """
    f_ids, _, values = factors
    where = {str(i): n for n, i in enumerate(f_ids)}
    missing = [str(i) for i in ids if str(i) not in where]
    if missing:
        raise DataError(f"{source}: no factors for {len(missing)} of the {len(ids)} volume(s) "
                        f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    return np.asarray(values, np.float64)[[where[str(i)] for i in ids]]


def factors_by_name(ids: Sequence[str], factors: FactorTable, source: str | Path = "factors.csv"
                    ) -> dict[str, np.ndarray]:
    """``{factor name: (len(ids),) values}`` in the order of ``ids`` (:func:`align_factors`)."""
    rows = align_factors(ids, factors, source)
    return {str(n): rows[:, j] for j, n in enumerate(factors[1])}


@dataclass(frozen=True)
class Codes:
    """A model's flattened bottleneck codes of its data splits.

    Attributes:
        train: ``(N, F)`` codes of the training volumes; val: ``(M, F)`` of the validation volumes.
        train_ids, val_ids: the volume ids of their rows.
        latent_shape: ``(C, d, h, w)`` of one code before flattening.
        working_shape: ``(D, H, W)`` of the volumes encoded.
        reference: an early-fusion model's reference volume ``(1, 1, D, H, W)`` (the first training volume:
            every code is that of the pair (volume, reference)); ``None`` for late fusion.
    """
    train: np.ndarray
    val: np.ndarray
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    latent_shape: tuple[int, ...]
    working_shape: tuple[int, ...]
    reference: Any = None

    @property
    def reference_id(self) -> str | None:
        return None if self.reference is None else self.train_ids[0]


def encode_splits(model, train_set, val_set=None, batch_size: int = 8) -> Codes:
    """:class:`Codes` of two :class:`~regexplain.data.pairs.VolumeSet` (images ``(N, 1, D, H, W)``);
    ``val_set=None``: the training codes only (``val`` is ``(0, F)``, for fitting a basis)."""
    from regexplain.adapters import as_adapter
    from regexplain.analysis.latent import encode_volumes, reference_volume

    shape = tuple(int(n) for n in train_set.images.shape[2:])
    ref = reference_volume(model, train_set)
    train = encode_volumes(model, train_set.images, batch_size, reference=ref)
    val = np.zeros((0, train.shape[1]), train.dtype) if val_set is None else \
        encode_volumes(model, val_set.images, batch_size, reference=ref)
    return Codes(train, val, tuple(str(i) for i in train_set.ids),
                 tuple(() if val_set is None else (str(i) for i in val_set.ids)),
                 tuple(as_adapter(model).latent_shape(shape)), shape, ref)


def fit_decomposition(model, codes: Codes, k: int, *, basis: str = "pca", root: str | Path | None = None,
                      seed: int = 0):
    """The ``basis`` decomposition of ``codes.train`` with :func:`n_components` ``(k, N)`` components
    (the supervised basis reads ``root/factors.csv`` for ``codes.train_ids``). Returns a
    :class:`~regexplain.analysis.latent.Decomposition` with ``meta["basis"]``.

    Raises:
        ValueError: an unknown basis, or ``supervised`` without factors (naming the basis).
    """
    from regexplain.analysis.bases import fit_on_codes
    from regexplain.analysis.latent import REFERENCE_KEY, Decomposition

    k = n_components(k, len(codes.train))
    if basis == "pca":
        dec = Decomposition.fit(codes.train, k, latent_shape=codes.latent_shape)
        dec.meta["basis"] = "pca"
    else:
        dec = fit_on_codes(basis, model, codes.train, codes.train_ids, root, k, seed=seed,
                           latent_shape=codes.latent_shape)
    if codes.reference is not None:    # the codes are pairs (volume, reference): decoding needs it too
        dec.extra[REFERENCE_KEY] = codes.reference[0, 0].numpy().astype(np.float32)
        dec.meta["reference"] = codes.reference_id
    return dec


def decomposition_record(cfg, checkpoint: str | Path, codes: Codes, dec) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta, extra)`` that every saved decomposition carries, from ``regexplain decompose`` and the main
    job alike: absolute checkpoint and data paths (``explore`` and ``casestudy`` may run from another
    folder), K, dataset, working shape, architecture, basis; the training / validation coefficients and ids."""
    meta = {"checkpoint": str(Path(checkpoint).absolute()), "data": str(Path(cfg.data.root).absolute()),
            "K": dec.n_components, "dataset": cfg.data.dataset, "working_shape": list(codes.working_shape),
            "skip_connections": bool(cfg.model.skip_connections), "basis": dec.meta.get("basis", "pca"),
            "family": cfg.model.family, "fusion": "late" if codes.reference is None else "early"}
    extra = {"train_coefficients": dec.project(codes.train), "val_coefficients": dec.project(codes.val),
             "train_ids": np.asarray(codes.train_ids, dtype=str), "val_ids": np.asarray(codes.val_ids, dtype=str)}
    return meta, extra


def decompose_run(model, cfg, checkpoint: str | Path, train_set, val_set, *, k: int | None = None,
                  basis: str = "pca", seed: int = 0, batch_size: int = 8):
    """Encode both splits, fit the ``basis`` decomposition (``k`` defaults to ``cfg.latent.n_components``,
    then the K rule) and attach :func:`decomposition_record`. Returns ``(decomposition, codes)``."""
    codes = encode_splits(model, train_set, val_set, batch_size)
    dec = fit_decomposition(model, codes, cfg.latent.n_components if k is None else k, basis=basis,
                            root=cfg.data.root, seed=seed)
    meta, extra = decomposition_record(cfg, checkpoint, codes, dec)
    dec.meta.update(meta)
    dec.extra.update(extra)
    return dec, codes
