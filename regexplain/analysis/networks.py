"""The paper's method on any network, in one row: registration, latent variance, the case study's read-out
beside its null, and the bottleneck share beside an untrained twin (notebook 09, RESULTS.md's "networks").
"""

from __future__ import annotations

from typing import Any

from regexplain.analysis.casestudy import case_study_deltas


def network_row(name: str, run, metrics: dict[str, Any], *, n_pairs: int = 30, n_null: int = 20,
                seed: int = 0) -> dict[str, Any]:
    """The ``networks`` result row of an opened run (:class:`~regexplain.runs.Run` with its decomposition)
    and its ``metrics.json``.

    Columns: parameters; validation Dice before / after; the explained variance of all K components and of
    the first four; per case-study transform the read-out (top / second median ``|Δa|``, Fig 5) with the 95th
    percentile of a variance-matched random-basis null; the bottleneck and skip shares
    (:mod:`regexplain.analysis.share`) over ``n_pairs`` validation pairs, and the bottleneck share of the same
    architecture untrained (its own PCA).
    """
    from regexplain.analysis.inputs import decompose_run
    from regexplain.analysis.scores import Coordinates, null_coordinates, readout, score_table
    from regexplain.analysis.share import bottleneck_share, untrained_model
    from regexplain.data.pairs import validation_pairs

    dec = run.decomposition
    deltas = case_study_deltas(run.model, dec, run.val.images)
    coords = Coordinates(dec.extra["train_coefficients"], dec.extra["val_coefficients"], deltas, dec.sigma)
    table = score_table(coords, None, null_coordinates(coords, dec.explained_variance, n_null, seed),
                        {"readout": readout})
    pairs = validation_pairs(run.val, n_pairs, run.cfg.data.seed)
    share = bottleneck_share(run.model, dec, run.val.images, pairs)
    blank = untrained_model(run.cfg, seed)
    blank_dec, _ = decompose_run(blank, run.cfg, run.run_dir / "checkpoint.pt", run.train, run.val)
    blank_share = bottleneck_share(blank, blank_dec, run.val.images, pairs)
    summary = dec.summary()
    row: dict[str, Any] = {
        "network": name, "family": run.cfg.model.family,
        "parameters": int(sum(p.numel() for p in run.model.parameters())),
        "dice_before": metrics.get("dice_before"), "dice_after": metrics.get("dice_after"),
        "K": dec.n_components, "explained_K": summary["total"], "explained_first4": summary["first4"],
        "bottleneck_share": share["bottleneck_share"], "skip_share": share["skip_share"],
        "bottleneck_share_untrained": blank_share["bottleneck_share"], "mean_norm": share["mean_norm"]}
    for entry in table.values():
        t = entry["transform"]
        row[f"readout_{t}"], row[f"readout_{t}_null"] = entry["observed"], entry["null_p95"]
    return row

