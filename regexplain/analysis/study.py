"""The seed study: do the paper's claims hold over several trainings, beside their baselines?

For N seeds and both architectures (no skip, skip) the study trains the hippocampus model with equal
steps, fits its PCA, and scores it; an untrained encoder of the same architecture and seed is scored the
same way. Every score comes with the mean and a 95 % t-interval over seeds, and every claim of the paper
ends in a verdict with its rule written beside it (:data:`RULES`).

Baselines of the paper's Fig 5 / Fig 8 read-out (top/second ratio of the median ``|Δa_j|``, components
above twice the median of the medians; :func:`readout`):

* ``rotation``: the same deltas in a Haar-random rotation of the K-dimensional PCA subspace (only the
  axes change, the information is the same);
* ``variance_matched``: the same rotation, each axis rescaled to the PCA variance of its rank (the score
  registry's null, :func:`regexplain.analysis.scores.null_coordinates`), so a ratio that only reflects unequal
  variances is matched by the null;
* ``untrained``: an untrained encoder of the same architecture and seed, its own PCA, scored identically.

Runs, scores and the verdict are written under ``out`` (one JSON per run, atomically); a rerun reuses
finished runs and scores and resumes an interrupted training, so the study resumes after an interruption.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regexplain.analysis import scores as sc
from regexplain.analysis import study_record
from regexplain.analysis.casestudy import readout_from_medians
from regexplain.config import STUDY_REGIMES, STUDY_SEEDS  # noqa: F401 (STUDY_REGIMES: re-exported)
from regexplain.errors import UsageError
from regexplain.interrupts import raise_if_interrupted
from regexplain.io import write_json, write_text

ARCHS = ("noskip", "skip")
#: factors read by "components read as rotation / translation / scaling" (the case study's axes)
READ_FACTORS = {"rotation": "rot_z_deg", "translation": "trans_z_vox", "scaling": "scale"}
N_SHOW = sc.N_SHOW   # the paper's box plots show components 1-10
K_READ = 8           # components searched for a factor (Fig 7 shows 1-8)
#: seeds per architecture of `regexplain study` (each verdict is also recomputed with every seed left out) and
#: the regimes `--regime both` studies (the calibrated default and pose, for sensitivity): config.STUDY_*
DEFAULT_SEEDS = STUDY_SEEDS
#: a trained run whose validation Dice rose by less than this did not register; the study names it
MIN_DICE_GAIN = 0.01

RULES = {
    "single": "supported if the 95 % interval of the top/second ratio lies above both 2 and the variance-matched "
              "null's 95th percentile; not supported if it lies below that percentile; else inconclusive",
    "skip": "supported if the 95 % interval of the paired difference (no skip − skip) of the ratio lies above 0; "
            "not supported if it lies below 0; else inconclusive",
    "variance": "supported if the 95 % interval lies above the paper's threshold and above the untrained "
                "encoder's mean; not supported if it lies below the threshold; else inconclusive",
    "subspace": "supported if the 95 % interval of the share lies above the variance-matched null's 95th "
                "percentile; not supported if it lies below it; else inconclusive",
    "reading": "supported if the 95 % interval of the best single-component R² lies above both the untrained "
               "encoder's mean and the random-basis null's 95th percentile; not supported if it lies below "
               "that percentile; else inconclusive",
}


# ------------------------------------------------------------------------------------------- scoring

def readout(abs_deltas: np.ndarray, n_show: int = N_SHOW) -> dict[str, Any]:
    """:func:`readout_from_medians` of ``|Δa|`` ``(N, K)`` over the first ``n_show`` components: the ratio
    (the registry's ``readout`` score, :func:`regexplain.analysis.scores.readout`) and its top / active components."""
    return readout_from_medians(np.median(np.abs(np.asarray(abs_deltas, np.float64))[:, :n_show], axis=0))


def score_coefficients(deltas: Mapping[str, np.ndarray], coeffs_train: np.ndarray, coeffs_val: np.ndarray,
                       variance_ratio: np.ndarray, factors_val: Mapping[str, np.ndarray] | None = None,
                       n_null: int = 200, seed: int = 0) -> dict[str, Any]:
    """Every study score of one model from its coefficients (pure; what :func:`score_run` computes): the
    registry's ``readout``, ``subspace`` and ``best single R²`` (:data:`regexplain.analysis.scores.STUDY_SCORES`),
    each beside the registry's nulls (:func:`regexplain.analysis.scores.null_coordinates`).

    ``subspace``: per transform, ``{"best k": {"share", "null_variance_matched_p95", "null_rotation_p95"}}`` for
    k in :data:`regexplain.analysis.scores.SUBSPACE_DIMS`. Nulls: the read-outs in ``n_null`` random bases of
    the same subspace with matched variances (``null_variance_matched_p95``, the one the verdict uses) and
    plainly rotated (``null_rotation_p95``, shown beside it); the best single-component R² in
    ``max(n_null // 4, 20)`` matched-variance bases (seed + 1).

    ``deltas``: transform name -> ``(N, K)`` signed changes; ``variance_ratio``: ``(K,)`` explained variance
    ratios; ``factors_val``: factor name -> ``(N_val,)`` true values (phantoms), or ``None``.
    """
    variances = coeffs_train.var(0, ddof=1)
    c = sc.Coordinates(coeffs_train, coeffs_val, dict(deltas))
    out: dict[str, Any] = {"explained_K": float(np.sum(variance_ratio)),
                           "explained_first4": float(np.sum(variance_ratio[:4])), "readout": {}, "subspace": {},
                           "reading": {}}
    no_factors = sc.Factors((), np.zeros((len(coeffs_train), 0)), np.zeros((len(coeffs_val), 0)), K_READ)
    score = {"readout": sc.readout, "subspace": sc.subspace}
    matched = sc.score_table(c, no_factors, sc.null_coordinates(c, variances, n_null, seed), score)
    rotated = sc.score_table(c, no_factors, sc.null_coordinates(c, None, n_null, seed), score)
    for label, entry in matched.items():
        t = entry["transform"]
        nulls = {"null_rotation_p95": rotated[label]["null_p95"], "null_variance_matched_p95": entry["null_p95"]}
        if entry["family"] == "readout":
            out["readout"][t] = {**readout(np.abs(deltas[t])), **nulls}
        else:   # subspace: share of |Δa|² in the best k components, per k
            out["subspace"].setdefault(t, {})[entry["variant"]] = {"share": entry["observed"], **nulls}
    wanted = {f: t for t, f in READ_FACTORS.items() if factors_val and f in factors_val}
    if wanted:
        names = list(wanted)
        truth = sc.Factors(names, np.zeros((len(coeffs_train), len(names))),
                           np.column_stack([np.asarray(factors_val[n], np.float64) for n in names]), K_READ)
        nulls = sc.null_coordinates(sc.Coordinates(coeffs_train, coeffs_val), variances, max(n_null // 4, 20),
                                    seed + 1)
        for entry in sc.score_table(sc.Coordinates(coeffs_train, coeffs_val), truth, nulls,
                                    {"best single R²": sc.best_single_r2}).values():
            out["reading"][wanted[entry["factor"]]] = {"r2": entry["observed"], "null_p95": entry["null_p95"]}
    return out


def score_run(model, dec, train_set, val_set, factors_val=None, n_null: int = 200, seed: int = 0) -> dict[str, Any]:
    """Encode, project and run the case study for one model, then :func:`score_coefficients`."""
    from regexplain.analysis.casestudy import case_study_deltas
    from regexplain.analysis.latent import encode_volumes

    c_tr = dec.project(encode_volumes(model, train_set.images, reference=dec.reference))
    c_va = dec.project(encode_volumes(model, val_set.images, reference=dec.reference))
    deltas = case_study_deltas(model, dec, val_set.images, base=c_va)
    return score_coefficients(deltas, c_tr, c_va, dec.explained_variance_ratio, factors_val, n_null, seed)


# -------------------------------------------------------------------------------------- statistics

def interval(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95 % t-interval over seeds (the interval is the mean itself for one value)."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "lo": float(v.mean() - half), "hi": float(v.mean() + half), "n": int(v.size)}


def decide(iv: Mapping[str, float], above: Sequence[float], below: float) -> str:
    """``supported`` if the interval lies above every value of ``above``; ``not supported`` if it lies
    below ``below``; ``inconclusive`` otherwise."""
    if iv["n"] == 0:
        return "inconclusive"
    if all(iv["lo"] > a for a in above):
        return "supported"
    if iv["hi"] < below:
        return "not supported"
    return "inconclusive"


def verdicts(scores: Mapping[str, Sequence[Mapping[str, Any]]], paper_k: float = 0.93,
             paper_first4: float = 0.62) -> list[dict[str, Any]]:
    """The verdict table from per-seed scores: ``scores["noskip" | "skip" | "untrained"]`` lists of
    :func:`score_coefficients` records (seed order). Rows: claim, measured, baseline, verdict, rule."""
    rows = []
    ns, sk, un = scores.get("noskip", []), scores.get("skip", []), scores.get("untrained", [])

    def col(runs, *keys):
        vals = []
        for r in runs:
            for k in keys:
                r = r.get(k, {}) if isinstance(r, Mapping) else None
            vals.append(r if isinstance(r, (int, float)) else None)
        return vals

    for t in (ns[0]["readout"] if ns else {}):
        iv = interval(col(ns, "readout", t, "ratio"))
        null = interval(col(ns, "readout", t, "null_variance_matched_p95"))["mean"]
        rot = interval(col(ns, "readout", t, "null_rotation_p95"))["mean"]
        unt = interval(col(un, "readout", t, "ratio"))["mean"]
        rows.append({"claim": f"Fig 5: one component stands out under {t} (top/second median |Δa|)",
                     "measured": iv, "baseline": {"variance_matched_p95": null, "rotation_p95": rot,
                                                  "untrained": unt, "paper_threshold": 2.0},
                     "verdict": decide(iv, [2.0, null], null), "rule": RULES["single"]})
        if sk:
            diff = [a - b if a is not None and b is not None else None
                    for a, b in zip(col(ns, "readout", t, "ratio"), col(sk, "readout", t, "ratio"), strict=False)]
            iv = interval(diff)
            rows.append({"claim": f"Fig 8: no skip more selective than skip under {t} (ratio difference)",
                         "measured": iv, "baseline": {"zero": 0.0}, "verdict": decide(iv, [0.0], 0.0),
                         "rule": RULES["skip"]})
    for t in (ns[0].get("subspace", {}) if ns else {}):
        for k in sc.SUBSPACE_DIMS:
            iv = interval(col(ns, "subspace", t, f"best {k}", "share"))
            if iv["n"] == 0:
                continue
            null = interval(col(ns, "subspace", t, f"best {k}", "null_variance_matched_p95"))["mean"]
            rot = interval(col(ns, "subspace", t, f"best {k}", "null_rotation_p95"))["mean"]
            unt = interval(col(un, "subspace", t, f"best {k}", "share"))["mean"]
            rows.append({"claim": f"{t} lives in {k} component{'s' if k > 1 else ''}: their share of |Δa|²",
                         "measured": iv, "baseline": {"variance_matched_p95": null, "rotation_p95": rot,
                                                      "untrained": unt},
                         "verdict": decide(iv, [null], null), "rule": RULES["subspace"]})
    for key, thr, paper in (("explained_K", 0.90, paper_k), ("explained_first4", 0.50, paper_first4)):
        iv = interval(col(ns, key))
        unt = interval(col(un, key))["mean"]
        what = "K components" if key == "explained_K" else "the first 4 components"
        rows.append({"claim": f"explained variance of {what} ≥ {thr:.0%} (paper {paper:.0%})", "measured": iv,
                     "baseline": {"untrained": unt, "paper": paper, "threshold": thr},
                     "verdict": decide(iv, [thr, unt] if np.isfinite(unt) else [thr], thr), "rule": RULES["variance"]})
    for t in READ_FACTORS:
        vals = col(ns, "reading", t, "r2")
        if all(v is None for v in vals):
            continue
        iv = interval(vals)
        null = interval(col(ns, "reading", t, "null_p95"))["mean"]
        unt = interval(col(un, "reading", t, "r2"))["mean"]
        above = [null] + ([unt] if np.isfinite(unt) else [])
        rows.append({"claim": f"a component reads as {t} ({READ_FACTORS[t]}, best of the first {K_READ}, R²)",
                     "measured": iv, "baseline": {"random_basis_p95": null, "untrained": unt},
                     "verdict": decide(iv, above, null), "rule": RULES["reading"]})
    return rows


def leave_one_out(scores: Mapping[str, Sequence[Mapping[str, Any]]], rows: Sequence[Mapping[str, Any]],
                  **kw) -> list[dict[str, Any]]:
    """``rows`` (:func:`verdicts` of ``scores``) with a stability record: the verdict of every claim
    when each single seed is left out of every architecture (paired by the records' ``"seed"``).

    Each returned row gains ``without_seed`` ``{seed: verdict}`` and ``fragile``: True when a dropped
    seed changes the verdict (a claim that one training decides should not be quoted as settled).
    """
    seeds = sorted({int(r["seed"]) for runs in scores.values() for r in runs if "seed" in r})
    by_claim: dict[str, dict[int, str]] = {r["claim"]: {} for r in rows}
    for s in seeds:
        kept = {a: [r for r in runs if int(r.get("seed", -1)) != s] for a, runs in scores.items()}
        for r in verdicts(kept, **kw):
            if r["claim"] in by_claim:
                by_claim[r["claim"]][s] = r["verdict"]
    out = []
    for r in rows:
        alt = by_claim[r["claim"]]
        out.append({**r, "without_seed": {str(s): v for s, v in alt.items()},
                    "fragile": any(v != r["verdict"] for v in alt.values())})
    return out


def verdict_markdown(rows: Sequence[Mapping[str, Any]], title: str = "Verdict") -> str:
    """``claim | measured (95 % interval) | baseline | verdict | each seed left out | rule`` as a markdown
    table (:data:`regexplain.results.STUDY_TABLES`); the stability column reads :func:`leave_one_out`'s
    record ("–" without one)."""
    from regexplain.results import table_markdown

    return "\n".join([f"### {title}", "", table_markdown("verdicts", rows)]) + "\n"


def run_rows(runs_dir: str | Path, archs: Sequence[str], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One row per trained run of ``runs_dir/<arch>_seed<seed>``: validation Dice before / after, its gain,
    folding, steps, and ``registers`` (gain >= :data:`MIN_DICE_GAIN`), from the run's ``metrics.json``.
    A run without metrics (not trained yet) is left out; unreadable metrics raise :class:`CheckpointError`
    naming the file."""
    from regexplain.errors import CheckpointError
    from regexplain.runs import read_metrics

    rows = []
    for arch in archs:
        for seed in seeds:
            path = Path(runs_dir) / f"{arch}_seed{seed}" / "metrics.json"
            if not path.is_file():
                continue
            m = read_metrics(path.parent)   # CheckpointError naming the file when it is not JSON
            try:
                before, after, steps = float(m["dice_before"]), float(m["dice_after"]), int(m["steps"])
            except (ValueError, KeyError, TypeError) as e:
                raise CheckpointError(f"{path}: not a finished run's metrics ({e!r}); delete the run folder "
                                      "to retrain it") from e
            rows.append({"arch": arch, "seed": int(seed), "dice_before": before, "dice_after": after,
                         "dice_gain": after - before, "folding_pct": float(m.get("folding_pct", float("nan"))),
                         "steps": steps, "registers": bool(after - before >= MIN_DICE_GAIN)})
    return rows


def runs_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The trained runs' registration (``arch | seed | Dice before → after | folding | steps``), then the
    runs that did not register: their scores stay in the verdicts (they are what the recipe gave), but a
    reader should know that they describe a decoder that outputs the identity."""
    from regexplain.results import table_markdown

    stuck = [f"{r['arch']} seed {r['seed']}" for r in rows if not r["registers"]]
    return "\n".join(["#### Runs", "", table_markdown("study_runs", rows), "",
                      (f"Did not register (validation Dice gain below {MIN_DICE_GAIN}): {', '.join(stuck)}; "
                       "their scores are kept in the verdicts above." if stuck else
                       f"Every run registers (validation Dice gain of at least {MIN_DICE_GAIN}).")]) + "\n"


# --------------------------------------------------------------------------------------- the study

def study_runs(out: str | Path, regime: str, arch: str = "noskip") -> list[Any]:
    """The finished runs of ``arch`` in a study folder (``out/<regime>/runs/<arch>_seed<N>``), in seed order,
    opened on the CPU (:class:`regexplain.runs.Run`) with the study's own data (``out/<regime>/data``: a
    copied or moved study still opens). Empty when the study has none."""
    from regexplain import runs

    base = Path(out) / regime
    found = [(int(rd.name.rsplit("seed", 1)[1]), rd) for rd in (base / "runs").glob(f"{arch}_seed*")
             if rd.name.rsplit("seed", 1)[1].isdigit() and runs.run_finished(rd)]
    data = base / "data" / "hippocampus"
    return [runs.open_run(rd, device="cpu", data={"root": str(data)} if data.is_dir() else None, progress=False)
            for _, rd in sorted(found)]



def _factors(cfg, ids: Sequence[str]) -> dict[str, np.ndarray] | None:
    from regexplain.analysis.inputs import factors_by_name, read_factor_table

    table = read_factor_table(cfg.data.root)
    return None if table is None else factors_by_name(ids, table, Path(cfg.data.root) / "factors.csv")


def _untrained(cfg):
    import torch

    from regexplain.adapters.families import build_model

    torch.manual_seed(cfg.train.seed)
    return build_model(cfg).eval()


def _run_config(profile: str, base: Path, regime: str, arch: str, seed: int):
    from regexplain import runs
    from regexplain.config import override

    name = f"hippocampus_{'noskip' if arch == 'untrained' else arch}"
    return override(runs.model_config(profile, name, base / "data", seed), {"data": {"phantom_regime": regime}},
                    source=f"study {profile} {regime}")


def run_study(profile: str = "quick", out: str | Path = "study", *, seeds: Sequence[int] = tuple(range(DEFAULT_SEEDS)),
              regime: str = "calibrated", archs: Sequence[str] = ARCHS, n_null: int = 200, progress: bool = True,
              log: Callable[[str], None] = print, executor: Callable | None = None) -> dict[str, Any]:
    """Train (or reuse / resume), score and judge; writes ``out/<regime>/study.json`` and ``STUDY.md``.

    ``executor``: a :mod:`regexplain.executors` runner that trains the missing runs first (side by side,
    or on a cluster); ``None`` trains each in turn inside the scoring loop.

    Raises :class:`UsageError` (a ``ValueError``) for fewer than 3 seeds, an unknown architecture or regime.
    """
    from tqdm.auto import tqdm

    from regexplain import runs
    from regexplain.analysis.inputs import encode_splits, fit_decomposition
    from regexplain.config import PHANTOM_REGIMES
    from regexplain.data.pairs import load_splits
    from regexplain.registration.checkpoint import load_model

    seeds = [int(s) for s in seeds]
    if len(seeds) < 3 or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds: a study needs at least 3 distinct seeds, got {seeds}")
    if not set(archs) <= set(ARCHS) or not archs:
        raise UsageError(f"--archs: architectures must be among {ARCHS}, got {list(archs)}")
    if regime not in PHANTOM_REGIMES:
        raise UsageError(f"--regime: unknown phantom regime {regime!r}; choose one of {PHANTOM_REGIMES}")
    base = Path(out) / regime
    request = study_record.study_request(profile, regime, seeds, archs)
    study_record.check_study_folder(base, request)   # a folder started otherwise is refused, never mixed
    jobs = [(a, s) for s in seeds for a in (*archs, "untrained")]
    scores: dict[str, list[dict[str, Any]]] = {a: [] for a in (*archs, "untrained")}
    data_cache: dict[str, Any] = {}
    if executor is not None:            # the missing trainings first, all at once; the loop reuses them
        from regexplain.executors import job_for

        todo = [(_run_config(profile, base, regime, a, s), base / "runs" / f"{a}_seed{s}") for a, s in jobs
                if a != "untrained" and not runs.run_finished(base / "runs" / f"{a}_seed{s}")]
        if todo:
            runs.ensure_data(todo[0][0])
            for msg in executor([job_for(c, rd) for c, rd in todo]):
                log(msg)
    bar = tqdm(jobs, desc=f"study {regime}", unit="run", disable=not progress)
    for arch, seed in bar:
        raise_if_interrupted()          # a Ctrl-C a library swallowed (regexplain/interrupts.py) stops here
        bar.set_postfix_str(f"{arch} seed {seed}")
        cfg = _run_config(profile, base, regime, arch, seed)
        path = base / "scores" / f"{arch}_seed{seed}.json"
        if path.is_file():
            scores[arch].append(study_record.read_scores(path, request, arch, seed))
            continue
        runs.ensure_data(cfg)
        if "sets" not in data_cache:
            data_cache["sets"] = load_splits(cfg.data, progress=False)
        train_set, val_set = data_cache["sets"]
        if arch == "untrained":
            model = _untrained(cfg)
            dec = fit_decomposition(model, encode_splits(model, train_set, val_set), cfg.latent.n_components)
        else:
            rd = base / "runs" / f"{arch}_seed{seed}"
            log(runs.ensure_trained(cfg, rd, progress=False))
            dec = runs.ensure_decomposition(rd, data=(train_set, val_set))
            model, _ = load_model(rd, device="cpu")
        rec = score_run(model, dec, train_set, val_set, _factors(cfg, val_set.ids), n_null, seed)
        rec["seed"], rec["arch"] = seed, arch
        rec["provenance"] = study_record.run_record(request, arch, seed)
        write_json(path, rec)
        scores[arch].append(rec)
    bar.close()
    rows = leave_one_out(scores, verdicts(scores))
    trained = run_rows(base / "runs", archs, seeds)
    result = {"profile": profile, "regime": regime, "seeds": seeds, "archs": list(archs), "scores": scores,
              "verdicts": rows, "runs": trained,
              "provenance": request}
    write_json(base / "study.json", result)
    title = f"Seed study ({profile}, {regime} phantoms, {len(seeds)} seeds)"
    write_text(base / "STUDY.md", verdict_markdown(rows, title) + "\n" + runs_markdown(trained))
    return result

