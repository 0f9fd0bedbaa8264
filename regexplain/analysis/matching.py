"""Do different trainings find the same elementary transformations? Matching decoded fields across runs.

Two networks' latent spaces are not comparable directly, but their elementary transformations are: the
first ``n`` components of each run are decoded as displacements ``D(σ_j u_j) - D(0)`` (voxels, the λ
convention of :mod:`regexplain.analysis.latent`), restricted to a foreground mask and flattened. Runs are matched
to a reference run by the Hungarian algorithm on the field-space ``|cos|`` (the sign of a component is
arbitrary); each reference component's matched ``|cos|`` stands beside a null: the same matching against
random orthonormal directions of the other run's subspace, decoded at matched strengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from regexplain.analysis import disentangle as dz
from regexplain.analysis.latent import Decomposition, component_displacements, decode_codes
from regexplain.config import MATCH_COMPONENTS
from regexplain.registration import spatial


def _flatten(disp, mask: np.ndarray | None) -> np.ndarray:
    d = np.asarray(disp, np.float64)                    # (n, 3, D, H, W)
    sel = np.ones(d.shape[2:], bool) if mask is None else np.asarray(mask, bool)
    return d[:, :, sel].reshape(len(d), -1)


def component_fields(model, dec: Decomposition, n: int = 8, mask: np.ndarray | None = None) -> np.ndarray:
    """``(n, 3 * mask voxels)``: the first ``n`` components' ``D(σ_j u_j) - D(0)`` over ``mask``
    (bool ``(D, H, W)``, every voxel when ``None``)."""
    n = min(n, dec.n_components)
    return _flatten(component_displacements(model, dec, 1.0, "sigma", range(n), relative_to_zero=True), mask)


def random_fields(model, dec: Decomposition, n: int, mask: np.ndarray | None, rng: np.random.Generator
                  ) -> np.ndarray:
    """Fields of ``n`` random orthonormal directions of ``dec``'s subspace, direction ``j`` at ``σ_j``."""
    n = min(n, dec.n_components)
    rot = dz.random_rotation(dec.n_components, rng)[:, :n]
    dirs = (rot.T @ dec.components.astype(np.float64)) * dec.sigma[:n, None]
    zero = spatial.map_to_displacement(decode_codes(model, np.zeros((1, *dec.latent_shape), np.float32),
                                                    reference=dec.reference))
    disp = spatial.map_to_displacement(decode_codes(model, dirs.reshape(n, *dec.latent_shape).astype(np.float32),
                                                    reference=dec.reference))
    return _flatten(disp - zero, mask)


def match_fields(reference: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of the rows of ``other`` ``(m, F)`` to those of ``reference`` ``(n, F)`` on
    ``|cos|``; returns, per reference row, the matched row of ``other`` and its ``|cos|``."""
    return dz.match_components(reference, other)


def cross_run_similarity(runs: Sequence[tuple[Any, Decomposition]], mask: np.ndarray | None = None, *,
                         n: int = 8, n_null: int = 20, seed: int = 0) -> dict[str, Any]:
    """Match every run's first ``n`` fields to the first run's.

    Args:
        runs: ``(model, decomposition)`` per run, the reference first; the models share the working shape.
        mask: bool ``(D, H, W)`` foreground over which fields are compared.
    Returns:
        ``components``: per reference component (1-based) the mean matched ``|cos|`` over the other runs,
        the null's mean and 95th percentile; ``pairs``: per other run the matched component (1-based) and
        ``|cos|`` of each reference component.
    Raises:
        ValueError: fewer than two runs.
    """
    if len(runs) < 2:
        raise ValueError("cross-run matching needs at least two runs")
    rng = np.random.default_rng(seed)
    ref = component_fields(*runs[0], n, mask)
    pairs, null = [], []
    for model, dec in runs[1:]:
        order, cos = match_fields(ref, component_fields(model, dec, n, mask))
        pairs.append({"match": (order + 1).tolist(), "cos": cos.tolist()})
        null += [match_fields(ref, random_fields(model, dec, n, mask, rng))[1] for _ in range(n_null)]
    sims, null = np.array([p["cos"] for p in pairs]), np.array(null)
    return {"components": [{"component": j + 1, "similarity": float(sims[:, j].mean()),
                            "null_mean": float(null[:, j].mean()), "null_p95": float(np.percentile(null[:, j], 95))}
                           for j in range(ref.shape[0])],
            "pairs": pairs}


def matched_displacements(runs: Sequence[tuple[Any, Decomposition]], result: dict[str, Any], component: int = 1):
    """``(n_runs, 3, D, H, W)``: reference component ``component`` (1-based) and, for each other run, the
    component matched to it in ``result`` (:func:`cross_run_similarity`), as ``D(σ u) - D(0)``; the sign
    of each is flipped to agree with the reference (a component's sign is arbitrary)."""
    picks = [component - 1] + [p["match"][component - 1] - 1 for p in result["pairs"]]
    disp = [component_displacements(m, d, 1.0, "sigma", [j], relative_to_zero=True)[0]
            for (m, d), j in zip(runs, picks, strict=True)]
    ref = disp[0].flatten()
    return np.stack([(d if float(d.flatten() @ ref) >= 0 else -d).numpy() for d in disp])


# ------------------------------------------------------------------------------------------ whole runs

#: components compared when the caller gives none (capped by what the runs have): config.MATCH_COMPONENTS
DEFAULT_COMPONENTS = MATCH_COMPONENTS


def architecture(run) -> dict[str, Any]:
    """What makes two runs' components comparable: architecture and latent shape (recorded in match.json)."""
    shape = tuple(int(s) for s in run.val.images.shape[2:])
    return {"run": str(run.run_dir), "family": run.cfg.model.family,
            "skip_connections": bool(run.cfg.model.skip_connections),
            "channels": [int(c) for c in run.cfg.model.channels], "working_shape": list(shape),
            "latent_shape": [int(s) for s in run.model.latent_shape(shape)], "profile": run.cfg.profile}


def differences(records: list[dict[str, Any]]) -> list[str]:
    """How the runs differ from the reference (the first) in what :func:`architecture` records."""
    ref, out = records[0], []
    for r in records[1:]:
        for key in ("family", "skip_connections", "channels", "latent_shape"):
            if r[key] != ref[key]:
                out.append(f"{r['run']} has {key} {r[key]}, the reference {ref['run']} {ref[key]}")
    return out


def match_runs(opened: Sequence[Any], *, n: int | None = None, n_null: int = 20, seed: int = 0,
               allow_mixed: bool = False) -> dict[str, Any]:
    """:func:`cross_run_similarity` of opened runs (:class:`regexplain.runs.Run`, the reference first), as
    ``regexplain match`` and notebook 08 run it: the runs must work at one shape and (unless
    ``allow_mixed``) share an architecture; each decomposition is the run's cached one or fitted in memory
    (nothing is written into the runs); ``n`` components (default :data:`DEFAULT_COMPONENTS`, capped by the
    runs). The result also records ``runs`` (:func:`architecture`) and ``mixed``.

    Raises:
        UsageError: fewer than two runs, runs at different shapes, of different architectures without
            ``allow_mixed``, or ``n`` above what a run has (naming the option and the run).
    """
    from regexplain.analysis.affine import foreground_mask
    from regexplain.errors import UsageError
    from regexplain.runs import ensure_decomposition

    if len(opened) < 2:
        raise UsageError("--runs: matching needs at least two runs")
    shapes = {tuple(r.val.images.shape[2:]) for r in opened}
    if len(shapes) > 1:
        raise UsageError(f"--runs: the runs work at different shapes {sorted(shapes)}; match runs of one profile")
    records = [architecture(r) for r in opened]
    mixed = differences(records)
    if mixed and not allow_mixed:
        raise UsageError(f"--runs: the runs are not comparable ({'; '.join(mixed)}); match runs of one "
                         "architecture, or pass --allow-mixed to match them anyway (match.json then says so)")
    for r, rec in zip(opened, records, strict=True):
        if r.decomposition is None:
            r.decomposition = ensure_decomposition(r.run_dir, data=(r.train, r.val), save=False)
        rec["n_components"] = int(r.decomposition.n_components)
    most = min(rec["n_components"] for rec in records)
    if n is not None and n > most:
        fewest = min(records, key=lambda rec: rec["n_components"])
        raise UsageError(f"--components {n}: the runs have at most {most} components ({fewest['run']} has {most})")
    pairs = [(r.model, r.decomposition) for r in opened]
    result = cross_run_similarity(pairs, foreground_mask(opened[0].train.labels), n=n or min(DEFAULT_COMPONENTS, most),
                                  n_null=n_null, seed=seed)
    result["runs"] = records
    result["mixed"] = {"allowed": bool(allow_mixed), "differences": mixed}
    return result


def match_figure(opened: Sequence[Any], result: dict[str, Any], component: int = 1, **kw: Any):
    """The reference's ``component`` and its match in every other run, as ``D(σ u) − D(0)`` on the
    reference's first validation subject (axial slices, one column per run)."""
    from regexplain.viz.figures import plot_slice_grid
    from regexplain.viz.slices import slice_view

    pairs = [(r.model, r.decomposition) for r in opened]
    image, label = opened[0].val.images[0, 0].numpy(), opened[0].val.labels[0, 0].numpy()
    grid = [[slice_view(image, label, d, "axial") for d in matched_displacements(pairs, result, component)]]
    return plot_slice_grid(grid, col_labels=[r.run_dir.name for r in opened],
                           row_labels=[f"component {component}" + (" (matched)" if len(opened) > 1 else "")], **kw)
