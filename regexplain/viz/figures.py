"""The paper's static figures as pure functions: arrays in, a matplotlib ``Figure`` out.

Nothing here touches a model or a file except :func:`save_figure`; notebooks compute the arrays (through
``regexplain.analysis.latent`` / ``regexplain.analysis``) and call these, so the batch run and the interactive
explorer draw the same pictures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from regexplain.io import atomic_path
from regexplain.viz.slices import (
    ARROW_CMAP,
    SliceView,
    auto_arrow_scale,
    jacobian_limit,
    jacobian_rgb,
    orientation_caption,
    picture_caption,
    plot_slice_view,
)

#: Fig 8 colours: without skip connections blue, with skip connections pink (paper's caption).
NOSKIP_COLOR = "#3b6fd4"
SKIP_COLOR = "#e377c2"
DARK_BG = "#111111"


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Write ``fig`` atomically (format from the suffix); the figure stays open.

    The package never chooses a matplotlib backend: in Jupyter the inline backend displays (and then
    closes) the figure at the end of the cell; a script under Agg closes it with ``plt.close(fig)``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, facecolor=fig.get_facecolor(),
                    bbox_inches="tight")
    return path


def _panel_size(sv: SliceView, height: float) -> tuple[float, float]:
    h, w = sv.image.shape
    return height * w / h, height


def plot_slice_grid(grid: Sequence[Sequence[SliceView | None]], *, row_labels: Sequence[str] | None = None,
                    col_labels: Sequence[str] | None = None, suptitle: str | None = None,
                    arrow_step: int = 3, show_arrows: bool = True, shared_norm: bool = True,
                    panel_height: float = 2.2, colorbar: bool = True, vmax_norm: float | None = None,
                    arrow_scale: float | None = None, pictures: str | Sequence[str] = "arrows",
                    jac_limit: float | None = None) -> Figure:
    """A grid of :class:`SliceView` panels on a dark background (Fig 2, 3, 4, 6, 7), each row drawing the
    field as arrows, a warped grid or a Jacobian map; the caption names what each draws, in which direction,
    and the views' orientation.

    Args:
        grid: rows of panels; ``None`` leaves a panel empty.
        shared_norm: one arrow colour scale and one arrow length scale for the whole figure, so colours and
            lengths compare across panels.
        colorbar: add a displacement-norm colour bar (voxels) naming the arrow length scale (and the
            Jacobian's, when a row draws one).
        vmax_norm: the norm drawn white (default: the largest in the figure); a fixed value keeps colours
            comparable across figures, e.g. the frames of a λ sweep.
        arrow_scale: arrow length multiplier (default: one for the figure, from its longest arrow).
        pictures: ``"arrows"``, ``"grid"`` or ``"jacobian"`` (:data:`regexplain.viz.slices.PICTURES`) for every
            row, or one per row; a Jacobian row needs SliceViews built with ``jacobian=True``.
        jac_limit: Jacobian colours from 1/jac_limit to jac_limit (default: from the figure's maps).
    """
    panels = [sv for row in grid for sv in row if sv is not None]
    if not panels:
        raise ValueError("plot_slice_grid needs at least one panel")
    nrows, ncols = len(grid), max(len(r) for r in grid)
    kinds = [pictures] * nrows if isinstance(pictures, str) else list(pictures)
    if len(kinds) != nrows:
        raise ValueError(f"pictures: {len(kinds)} given for {nrows} rows")
    has_arrows = show_arrows and "arrows" in kinds
    jac_panels = [sv for row, kind in zip(grid, kinds, strict=True) if kind == "jacobian" for sv in row
                  if sv is not None]
    if jac_panels and jac_limit is None:
        jac_limit = jacobian_limit([sv.jacobian for sv in jac_panels if sv.jacobian is not None])
    # each column as wide as its panels' aspect asks (the three orthogonal views differ in shape)
    widths = [max((_panel_size(r[c], panel_height)[0] for r in grid if c < len(r) and r[c] is not None),
                  default=_panel_size(panels[0], panel_height)[0]) for c in range(ncols)]
    ph = panel_height
    width = sum(widths) + (0.8 if colorbar else 0.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, ph * nrows + 0.6), squeeze=False, facecolor=DARK_BG,
                             gridspec_kw={"width_ratios": widths})
    vmax = vmax_norm if vmax_norm is not None else \
        (max(float(sv.norm.max()) for sv in panels) if shared_norm else None)
    if arrow_scale is None and shared_norm:
        arrow_scale = auto_arrow_scale(max(float(np.hypot(*sv.arrows).max()) for sv in panels), arrow_step)
    for r in range(nrows):
        for c in range(ncols):
            ax = axes[r, c]
            sv = grid[r][c] if c < len(grid[r]) else None
            if sv is None:
                ax.axis("off")
                continue
            plot_slice_view(ax, sv, arrow_step=arrow_step, show_arrows=show_arrows, vmax_norm=vmax,
                            arrow_scale=arrow_scale, picture=kinds[r], jac_limit=jac_limit)
            if r == 0 and col_labels is not None:
                ax.set_title(col_labels[c], color="white", fontsize=11)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], color="white", fontsize=11)
    both = has_arrows and bool(jac_panels)
    if colorbar and both:  # one colour bar beside the rows it belongs to
        fig.subplots_adjust(right=0.86)
    if colorbar and has_arrows:
        top = vmax if vmax is not None else max(float(sv.norm.max()) for sv in panels)
        mappable = plt.cm.ScalarMappable(cmap=ARROW_CMAP, norm=matplotlib.colors.Normalize(0, max(top, 1e-6)))
        where = {"cax": _bar_axes(fig, axes, [r for r, k in enumerate(kinds) if k == "arrows"])} if both else \
            {"ax": axes.ravel().tolist(), "fraction": 0.02, "pad": 0.01}
        cb = fig.colorbar(mappable, **where)
        scale = f"; arrows ×{arrow_scale:.2g}" if arrow_scale is not None and arrow_scale != 1 else ""
        cb.set_label(f"|arrow| (voxels){scale}", color="white", fontsize=10)
        cb.ax.tick_params(colors="white", labelsize=9)
    if colorbar and jac_panels:
        _jacobian_colourbar(fig, axes, jac_limit,
                            _bar_axes(fig, axes, [r for r, k in enumerate(kinds) if k == "jacobian"]) if both else None)
    if suptitle:
        fig.suptitle(suptitle, color="white", fontsize=12)
    # the caption says what each picture draws, in which direction (motion of the structure by default), and
    # how the views are oriented
    mode = panels[0].arrow_mode
    lines = ["red: moving contour, gold: warped"]
    lines += [picture_caption(kind, mode) for kind in dict.fromkeys(kinds) if kind != "arrows" or show_arrows]
    lines.append(orientation_caption(panels))
    fig.text(0.01, 0.0, "\n".join(lines), color="white", fontsize=10, ha="left", va="top")
    return fig


def _bar_axes(fig: Figure, axes, rows: Sequence[int]):
    """A thin colour-bar axes right of the panels, as tall as ``rows`` (figure coordinates)."""
    boxes = [axes[r, c].get_position() for r in rows for c in range(axes.shape[1]) if axes[r, c].axison]
    y0, y1 = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
    return fig.add_axes((0.875, y0, 0.014, y1 - y0))


def _jacobian_colourbar(fig: Figure, axes, limit: float, cax=None) -> None:
    """A log-scale colour bar of :func:`~regexplain.viz.slices.jacobian_rgb` from 1/limit to limit, folding
    (det <= 0, :data:`~regexplain.viz.slices.FOLD_COLOR`) named beside it."""
    ramp = np.exp(np.linspace(-np.log(limit), np.log(limit), 256))
    colours = jacobian_rgb(ramp[:, None], limit)[:, 0] / 255.0
    cmap = matplotlib.colors.ListedColormap(colours)
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.LogNorm(1 / limit, limit))
    cb = fig.colorbar(mappable, cax=cax) if cax is not None else \
        fig.colorbar(mappable, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01)
    cb.set_ticks([1 / limit, 1.0, limit], labels=[f"{1 / limit:.2g}", "1", f"{limit:.2g}"])
    cb.ax.minorticks_off()
    cb.set_label("det J (log); green: ≤ 0, folds", color="white", fontsize=10)
    cb.ax.tick_params(colors="white", labelsize=9)


def plot_components_on_subjects(subjects: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[str] | None]],
                                disp: np.ndarray, *, view: str = "sagittal", col_labels: Sequence[str] | None = None,
                                suptitle: str | None = None, arrows: str = "motion") -> Figure:
    """The same decoded components on several subjects, one row each (e.g. a phantom beside a real crop).

    Args:
        subjects: row label -> ``(image (D, H, W), label (D, H, W), axcodes or None)``, each at the shape of
            ``disp``; each is cut through its own structure's centre.
        disp: ``(n, 3, D, H, W)`` displacements of ``n`` components (voxels, sampling offsets).
        col_labels: one per component (default ``component 1 .. n``).
    A component's displacement field does not depend on the subject (it is decoded from the latent
    direction alone), so the rows differ only in the anatomy it moves; arrow scales are shared.
    """
    from regexplain.viz.slices import slice_view

    disp = np.asarray(disp)
    grid = [[slice_view(img, lab, d, view, axcodes=ax, arrows=arrows) for d in disp]
            for img, lab, ax in subjects.values()]
    labels = list(col_labels) if col_labels is not None else [f"component {i + 1}" for i in range(len(disp))]
    return plot_slice_grid(grid, row_labels=list(subjects), col_labels=labels, suptitle=suptitle)


def _boxes(ax, data: np.ndarray, positions: np.ndarray, color: str, width: float):
    bp = ax.boxplot([data[:, j] for j in range(data.shape[1])], positions=positions, widths=width,
                    patch_artist=True, showfliers=True, flierprops={"markersize": 2, "alpha": 0.5})
    for patch in bp["boxes"]:
        patch.set_facecolor(color)
        patch.set_alpha(0.8)
    for med in bp["medians"]:
        med.set_color("black")
    return bp


def plot_delta_boxplots(deltas: Mapping[str, np.ndarray], n_components: int = 10, *,
                        color: str = NOSKIP_COLOR, title: str | None = None) -> Figure:
    """Fig 5: one panel per transform, box plots of ``|a_j(X) - a_j(X')|`` for ``j = 1..n_components``.

    Args:
        deltas: transform name -> ``(N, K)`` absolute coefficient differences.
    """
    names = list(deltas)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        d = np.asarray(deltas[name])[:, :n_components]
        _boxes(ax, d, np.arange(1, d.shape[1] + 1), color, 0.6)
        ax.set_title(name)
        ax.set_xlabel("principal component j")
        ax.set_xticks(np.arange(1, d.shape[1] + 1))
    axes[0, 0].set_ylabel(r"$|a_j(X) - a_j(X')|$")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_skip_ablation(noskip: Mapping[str, np.ndarray], skip: Mapping[str, np.ndarray],
                       n_components: int = 10, *, normalise: bool = False,
                       labels: tuple[str, str] = ("without skip", "with skip")) -> Figure:
    """Fig 8: Fig 5 for both architectures side by side per component (without skip blue, with pink).

    ``normalise`` divides each model's deltas by that model's median over all components, since the two
    latent spaces have different scales; the paper compares raw values. ``labels``: the legend's names of
    the two (notebook 09 sets the paper's network beside another one).
    """
    names = [n for n in noskip if n in skip]
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        a = np.asarray(noskip[name])[:, :n_components]
        b = np.asarray(skip[name])[:, :n_components]
        if normalise:
            a, b = a / max(np.median(a), 1e-12), b / max(np.median(b), 1e-12)
        pos = np.arange(1, a.shape[1] + 1)
        _boxes(ax, a, pos - 0.2, NOSKIP_COLOR, 0.35)
        _boxes(ax, b, pos + 0.2, SKIP_COLOR, 0.35)
        ax.set_xticks(pos, [str(p) for p in pos])  # boxplot labels its own (offset) positions otherwise
        ax.set_title(name)
        ax.set_xlabel("principal component j")
    axes[0, 0].set_ylabel(r"$|a_j(X) - a_j(X')|$" + (" / median" if normalise else ""))
    handles = [matplotlib.patches.Patch(color=NOSKIP_COLOR, label=labels[0]),
               matplotlib.patches.Patch(color=SKIP_COLOR, label=labels[1])]
    axes[0, -1].legend(handles=handles, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_explained_variance(ratios: Mapping[str, np.ndarray],
                            paper: Mapping[str, Mapping[str, float]] | None = None) -> Figure:
    """Per-component and cumulative explained-variance ratio; paper's K=32 / first-4 values as markers.

    Args:
        ratios: model name -> ``(K,)`` explained-variance ratios.
        paper: model name -> ``{"K32": 0.93, "first4": 0.62}`` (drawn when the name matches).
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (name, r) in enumerate(ratios.items()):
        r = np.asarray(r)
        k = np.arange(1, r.size + 1)
        color = f"C{i}"
        ax1.plot(k, r, "o-", ms=3, color=color, label=name)
        ax2.plot(k, np.cumsum(r), "o-", ms=3, color=color, label=name)
        ref = (paper or {}).get(name)
        if ref:
            ax2.plot([4], [ref["first4"]], marker="*", ms=12, color=color, ls="none")
            ax2.plot([32], [ref["K32"]], marker="*", ms=12, color=color, ls="none")
    ax1.set(xlabel="component", ylabel="explained variance ratio", title="per component")
    ax2.set(xlabel="number of components K", ylabel="cumulative ratio", ylim=(0, 1.02),
            title="cumulative (stars: paper, first 4 and K = 32)")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_loss_curves(logs: Mapping[str, Sequence[Mapping[str, float]]], *, key: str = "loss",
                     val_key: str = "val_dice") -> Figure:
    """Training loss (left) and validation Dice (right) per model from ``log.jsonl`` records.

    Records with ``key`` are training steps; records with ``val_key`` are validations; each needs
    ``step``.
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for i, (name, records) in enumerate(logs.items()):
        tr = [(r["step"], r[key]) for r in records if key in r and "step" in r]
        va = [(r["step"], r[val_key]) for r in records if val_key in r and "step" in r]
        if tr:
            s, v = np.array(tr).T
            ax1.plot(s, v, color=f"C{i}", alpha=0.35, lw=0.8)
            w = max(1, len(v) // 20)  # a running mean shows the trend under the batch noise
            ax1.plot(s[w - 1:], np.convolve(v, np.ones(w) / w, mode="valid"), color=f"C{i}", label=name)
        if va:
            s, v = np.array(va).T
            ax2.plot(s, v, "o-", ms=3, color=f"C{i}", label=name)
    ax1.set(xlabel="step", ylabel=key, title="training loss")
    ax2.set(xlabel="step", ylabel=val_key, title="validation Dice")
    for ax in (ax1, ax2):
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_component_bars(values: Mapping[str, np.ndarray], *, ylabel: str, title: str = "") -> Figure:
    """Grouped bars per component (e.g. affine fraction of each elementary transformation per model)."""
    names = list(values)
    k = max(np.asarray(v).size for v in values.values())
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * k * len(names)), 3.2))
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        v = np.asarray(values[n])
        ax.bar(np.arange(1, v.size + 1) + (i - (len(names) - 1) / 2) * width, v, width, label=n)
    ax.set(xlabel="component", ylabel=ylabel, title=title)
    ax.set_xticks(np.arange(1, k + 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_factor_histograms(names: Sequence[str], values: np.ndarray, *, title: str = "") -> Figure:
    """One histogram per ground-truth factor of the synthetic data (``values`` is ``(N, F)``)."""
    values = np.asarray(values, dtype=float)
    n = len(names)
    cols = min(n, 5)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.0 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.axis("off")
            continue
        ax.hist(values[:, i], bins=20, color=NOSKIP_COLOR)
        ax.set_title(names[i], fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_selectivity_by_strength(sweeps: Mapping[str, Mapping], *, key: str = "mean_top_share",
                                 colors: Mapping[str, str] | None = None, title: str = "") -> Figure:
    """One panel per case-study transform: ``key`` of each model's selectivity against the transform's
    strength (:func:`regexplain.analysis.casestudy.selectivity_by_strength`), with its null mean (dotted) and 95th
    percentile (shaded band between them)."""
    transforms = [t for t in next(iter(sweeps.values())) if t != "strengths"]
    fig, axes = plt.subplots(1, len(transforms), figsize=(3.2 * len(transforms), 2.9), sharey=True,
                             squeeze=False)
    palette = colors or {}
    for ax, t in zip(axes[0], transforms, strict=True):
        for i, (name, sweep) in enumerate(sweeps.items()):
            s = np.asarray(sweep["strengths"])
            rows = [r[key] for r in sweep[t]]
            color = palette.get(name, (NOSKIP_COLOR, SKIP_COLOR)[i % 2])
            ax.plot(s, [r["observed"] for r in rows], "o-", color=color, label=name)
            mean, p95 = [r["null_mean"] for r in rows], [r["null_p95"] for r in rows]
            ax.plot(s, mean, ":", color=color)
            ax.fill_between(s, mean, p95, color=color, alpha=0.15, lw=0)
        ax.set(title=t, xlabel="strength (1 = paper's case study)")
        ax.set_ylim(0, 1.02)
    axes[0, 0].set_ylabel(key.replace("_", " "))
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_observed_vs_null(scores: Mapping[str, Mapping[str, Mapping[str, float]]], *, title: str = "",
                          width_px: int = 1000, dpi: int = 110) -> Figure:
    """Observed score against its null, one row per score, one colour per model / basis (notebook 07).

    Each row holds, per model, the observed value (dot) and the null from its mean (tick) to its 95th
    percentile (bar): a dot right of its bar beats chance. Sized to ``width_px`` at ``dpi``.

    Args:
        scores: model -> score name -> ``{"observed", "null_mean", "null_p95"}``.
    """
    models = list(scores)
    names = list(dict.fromkeys(k for s in scores.values() for k in s))
    fig, ax = plt.subplots(figsize=(width_px / dpi, 0.24 * len(names) * max(1, len(models)) ** 0.5 + 1.3), dpi=dpi)
    step = 0.7 / max(len(models), 1)
    for m, model in enumerate(models):
        color = f"C{m}"
        for r, name in enumerate(names):
            v = scores[model].get(name)
            if not v:
                continue
            y = r + (m - (len(models) - 1) / 2) * step
            lo, hi = v.get("null_mean"), v.get("null_p95")
            if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y, y], color=color, alpha=0.3, lw=5, solid_capstyle="butt")
                ax.plot([lo], [y], "|", color=color, ms=9)
            ax.plot([v["observed"]], [y], "o", color=color, ms=6, label=model if r == 0 else None)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("score (dot: observed; bar: null mean to 95th percentile)")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(models), frameon=False)
    if title:
        ax.set_title(title, fontsize=10, pad=22)
    fig.tight_layout()
    return fig
