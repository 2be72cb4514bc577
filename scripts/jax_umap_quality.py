#!/usr/bin/env python3
"""JAX UMAP + JAX GMM against umap-learn + scikit-learn's GaussianMixture (issue 16).

On the same features (MNIST pixels / 255, optionally reduced by PCA), for each
seed: umap-learn ``UMAP(n_components, n_neighbors, min_dist=0, random_state=seed,
n_jobs=1)`` then ``GaussianMixture(full, n_init, random_state=seed)``, against
``fit_umap`` (spectral and PCA starts) then ``fit_gmm_jax(full, n_init, seed)``.
Reports ACC/NMI/ARI (mean and std over seeds), the wall time of each stage, and
how many of each point's 20 nearest neighbours in the JAX embedding are among its
20 in umap-learn's (self excluded), averaged.

    python scripts/jax_umap_quality.py --dataset ../shared/data/mnist-5k --n 5000 \\
        --pca 50 --seeds 0 1 2 --out bench/results/jax-umap-quality.json

Times include JAX's compilation on the first seed (each stage's first call) and
umap-learn's numba compilation on its first fit; the later seeds show steady state.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from jaxae.cluster import scores
from jaxae.cluster.jax_gmm import fit_gmm_jax
from jaxae.cluster.jax_umap import fit_umap, nearest_neighbors
from jaxae.data import load_dataset


def neighbour_agreement(a: np.ndarray, b: np.ndarray, k: int = 20) -> float:
    """Mean share of each row's k nearest neighbours in ``a`` found among its k in ``b``."""

    def knn(y):
        y = jnp.asarray(y, jnp.float32)
        return np.asarray(nearest_neighbors(y, y, k + 1, self_first=True)[0])[:, 1:]

    ia, ib = knn(a), knn(b)
    return float(np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(ia, ib, strict=True)]))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    jax.block_until_ready(out) if isinstance(out, jax.Array) else None
    return out, time.perf_counter() - start


def summarise(report: dict) -> str:
    """Markdown tables (mean ± std over seeds) of a JSON report this script wrote."""
    rows = report["rows"]
    methods = [m for m in rows[0] if m != "seed"]
    stat = lambda m, key: np.array([r[m][key] for r in rows if key in r[m]])
    fmt = lambda v, d=3: f"{v.mean():.{d}f} ± {v.std():.{d}f}" if v.size else "-"
    lines = [
        "| UMAP + GMM | ACC | NMI | ARI | UMAP s | GMM s | kNN shared with umap-learn |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in methods:
        lines.append(
            f"| {m} | {fmt(stat(m, 'acc'))} | {fmt(stat(m, 'nmi'))} | {fmt(stat(m, 'ari'))} "
            f"| {fmt(stat(m, 'umap_s'), 0)} | {fmt(stat(m, 'gmm_s'), 1)} "
            f"| {fmt(stat(m, 'neighbours_shared'))} |"
        )
    lines += [
        "",
        "| embedding | seed | ACC, scikit-learn GMM | ACC, JAX GMM "
        "| lower bound, scikit-learn | lower bound, JAX |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in methods:
        for r in rows:
            if m == "umap-learn":
                # Each JAX entry clustered umap-learn's embedding with the JAX GMM: the first.
                first = r[next(n for n in methods if n != m)]
                sk = (r[m]["acc"], r[m]["lower_bound"])
                jx = (
                    first["acc_jax_gmm_on_umap_learn"],
                    first.get("lower_bound_jax_gmm_on_umap_learn"),
                )
            else:
                sk = (r[m]["acc_sklearn_gmm"], r[m].get("lower_bound_sklearn_gmm"))
                jx = (r[m]["acc"], r[m]["lower_bound"])
            bound = lambda v: "-" if v is None else f"{v:.4f}"
            cells = [m, r["seed"], f"{sk[0]:.4f}", f"{jx[0]:.4f}", bound(sk[1]), bound(jx[1])]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    per_seed = ["", "| seed | " + " | ".join(f"{m} ACC" for m in methods) + " |",
                "| --- |" + " --- |" * len(methods)]  # fmt: skip
    for r in rows:
        per_seed.append(
            f"| {r['seed']} | " + " | ".join(f"{r[m]['acc']:.4f}" for m in methods) + " |"
        )
    agreement = report.get("seed_agreement", {})
    if agreement:
        per_seed += ["", "| method | kNN shared, seed 0 against seed 1 |", "| --- | --- |"]
        per_seed += [f"| {m} | {v:.3f} |" for m, v in agreement.items()]
    return "\n".join(lines + per_seed) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--summarise", metavar="JSON", help="print the tables of a report")
    parser.add_argument("--dataset", default="../shared/data/mnist-5k")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--pca", type=int, default=50, help="0: the raw pixels")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-init", type=int, default=10)
    parser.add_argument("--inits", nargs="+", default=["spectral", "pca"])
    parser.add_argument("--skip-umap-learn", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.summarise:
        with open(args.summarise) as f:
            print(summarise(json.load(f)), end="")
        return 0

    ds = load_dataset(args.dataset, n=args.n)
    x = np.asarray(ds.images, np.float32) / 255.0
    if args.pca:
        x = PCA(args.pca, random_state=0).fit_transform(x).astype(np.float32)
    labels = np.asarray(ds.labels)
    rows = []
    embeddings: dict[str, list[np.ndarray]] = {}  # method -> one embedding per seed
    for seed in args.seeds:
        row = {"seed": seed}
        emb_ref = None
        if not args.skip_umap_learn:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import umap

                reducer = umap.UMAP(
                    n_components=10, n_neighbors=20, min_dist=0.0, random_state=seed, n_jobs=1
                )
                emb_ref, t = timed(reducer.fit_transform, x)
            with threadpool_limits(1):
                gmm = GaussianMixture(
                    10, covariance_type="full", n_init=args.n_init, random_state=seed
                )
                gmm, t_gmm = timed(gmm.fit, emb_ref)
            embeddings.setdefault("umap-learn", []).append(emb_ref)
            row["umap-learn"] = {
                "umap_s": t,
                "gmm_s": t_gmm,
                **scores(labels, gmm.predict(emb_ref)),
                "lower_bound": float(gmm.lower_bound_),
            }
            print(seed, "umap-learn", row["umap-learn"], flush=True)
        for init in args.inits:
            fit, t = timed(fit_umap, x, n_components=10, n_neighbors=20, seed=seed, init=init)
            result, t_gmm = timed(
                fit_gmm_jax, fit.embedding, clusters=10, n_init=args.n_init, seed=seed
            )
            entry = {
                "umap_s": t,
                "gmm_s": t_gmm,
                **scores(labels, result.labels),
                "lower_bound": result.lower_bound,
            }
            if emb_ref is not None:
                entry["neighbours_shared"] = neighbour_agreement(fit.embedding, emb_ref)
                # The JAX embedding clustered by scikit-learn, and the other way round:
                # separates the layout's quality from the mixture's.
                with threadpool_limits(1):
                    sk = GaussianMixture(
                        10, covariance_type="full", n_init=args.n_init, random_state=seed
                    ).fit(fit.embedding)
                entry["acc_sklearn_gmm"] = scores(labels, sk.predict(fit.embedding))["acc"]
                entry["lower_bound_sklearn_gmm"] = float(sk.lower_bound_)
                other = fit_gmm_jax(emb_ref, clusters=10, n_init=args.n_init, seed=seed)
                entry["acc_jax_gmm_on_umap_learn"] = scores(labels, other.labels)["acc"]
                entry["lower_bound_jax_gmm_on_umap_learn"] = other.lower_bound
            embeddings.setdefault(f"jax-{init}", []).append(fit.embedding)
            row[f"jax-{init}"] = entry
            print(seed, f"jax-{init}", entry, flush=True)
        rows.append(row)
    # How far apart two seeds of one method are: the yardstick for the agreement
    # between the methods.
    seed_agreement = {
        m: neighbour_agreement(e[0], e[1]) for m, e in embeddings.items() if len(e) > 1
    }
    print("seed 0 against seed 1", seed_agreement, flush=True)

    meta = {
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "rows": x.shape[0],
        "features": x.shape[1],
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "sklearn": sklearn.__version__,
        "platform": platform.platform(),
        "cpus": len(__import__("os").sched_getaffinity(0)),
    }
    try:
        import umap

        meta["umap-learn"] = umap.__version__
    except ImportError:
        pass
    print(json.dumps(meta))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows, "seed_agreement": seed_agreement}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
