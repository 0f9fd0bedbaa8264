"""Time PCA of an N x F latent matrix (default 260 x 32 768, K = 32) with several solvers.

Prints wall time per solver and the smallest |cos| between its top-K components and scikit-learn's
``svd_solver="full"`` reference. Goal: <= 1 s on 2 CPU cores. Usage::

    python benchmarks/pca.py [--quick] [--n 260] [--f 32768] [--k 32] [--repeats 3] [--threads 2]

Solvers run alternately (A B A B ...) and are compared by medians, like the other scripts.
"""

from __future__ import annotations

import numpy as np
from common import alternate, device_info, parser, setup, summary, table, write
from sklearn.decomposition import PCA

from regexplain.analysis.latent import pca_gram


def _sk(solver: str):
    def run(x, k):
        p = PCA(n_components=k, svd_solver=solver, random_state=0).fit(x)
        return p.components_
    return run


def _torch_svd(x, k):
    import torch

    xc = torch.from_numpy(x - x.mean(0))
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    return vh[:k].numpy()


def _gram(x, k):
    return pca_gram(x, k)[0]


def main() -> None:
    ap = parser("pca", __doc__)
    ap.add_argument("--n", type=int, default=260)
    ap.add_argument("--f", type=int, default=32768)
    ap.add_argument("--k", type=int, default=32)
    a = ap.parse_args()
    device = setup(a)
    n, f = (60, 4096) if a.quick else (a.n, a.f)
    rng = np.random.default_rng(0)
    # Latents with a decaying spectrum, like real codes (random isotropic data makes "top K" ill-defined).
    scales = 1.0 / np.arange(1, n + 1)
    x = (rng.standard_normal((n, n)) * scales) @ rng.standard_normal((n, f)) / np.sqrt(f)
    x = (x + 0.01 * rng.standard_normal((n, f))).astype(np.float32)
    ref = PCA(n_components=a.k, svd_solver="full").fit(x).components_
    solvers = {"sklearn full": _sk("full"), "sklearn randomized": _sk("randomized"),
               "sklearn covariance_eigh": _sk("covariance_eigh"), "torch svd": _torch_svd,
               "gram eigh (latent.py)": _gram}
    if f > 2048:                        # eigh of an F x F covariance: 20 s at F = 4096, 4 GiB at 32 768
        solvers.pop("sklearn covariance_eigh")
    print(f"PCA of {n} x {f} float32, K = {a.k} on {device_info(device)}")
    rows = []
    for name, ts in alternate({k: (lambda fn=fn: fn(x, a.k)) for k, fn in solvers.items()}, device,
                              a.repeats or 3).items():
        comps = np.asarray(solvers[name](x, a.k), dtype=np.float64)
        rows.append({"solver": name, **summary(ts), "min_abs_cos_vs_full": float(np.abs((comps * ref).sum(1)).min())})
    print(table(rows, ["solver", "median_s", "min_s", "max_s", "n", "min_abs_cos_vs_full"]))
    write(a.json, {"benchmark": "pca", "n": n, "f": f, "k": a.k, "goal_s": 1.0, **device_info(device),
                   "results": rows})


if __name__ == "__main__":
    main()
