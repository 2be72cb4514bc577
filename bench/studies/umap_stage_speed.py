#!/usr/bin/env python3
"""The N2D clustering stage timed both ways on the same codes, in one process.

umap-learn ``UMAP(n_components=10, n_neighbors=20, min_dist=0, random_state=seed,
n_jobs=1)`` (seeded, so one thread, as jaxae runs it) then scikit-learn's
``GaussianMixture(10, covariance_type="full", n_init=10, random_state=seed)``,
against ``fit_umap(..., seed=seed)`` then ``fit_gmm_jax(clusters=10, n_init=10,
seed=seed)``. The codes are PCA-10 of MNIST digits (pixels / 255, scikit-learn's
PCA with ``random_state=0``), a stand-in for a 10-dimensional autoencoder code.

A warm-up run of each (numba's and XLA's compilation) is reported apart; then the
two alternate, ``--rounds`` times, so both see the same load. The scikit-learn
mixture runs with its default threads (as jaxae runs it) and, for reference,
once more on one thread (threadpoolctl) on the same embedding. Its result is in
docs/benchmarks.md (UMAP and the mixture) and bench/results/umap-stage-speed*.md.

    PYTHONPATH=. nice -n 5 python bench/studies/umap_stage_speed.py \\
        --images ../shared/data/mnist/t10k-images-idx3-ubyte.gz \\
        --out bench/results/umap-stage-speed.md
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from jaxae.cluster import scores
from jaxae.cluster.jax_gmm import fit_gmm_jax
from jaxae.cluster.umap import fit_umap
from jaxae.data import load_dataset

CLUSTERS, N_INIT, K, C = 10, 10, 20, 10


def baseline(x: np.ndarray, seed: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

        start = time.perf_counter()
        reducer = umap.UMAP(
            n_components=C, n_neighbors=K, min_dist=0.0, random_state=seed, n_jobs=1
        )
        embedding = reducer.fit_transform(x)
    middle = time.perf_counter()
    gmm = GaussianMixture(CLUSTERS, covariance_type="full", n_init=N_INIT, random_state=seed)
    labels = gmm.fit(embedding).predict(embedding)
    end = time.perf_counter()
    with threadpool_limits(1):
        one = GaussianMixture(CLUSTERS, covariance_type="full", n_init=N_INIT, random_state=seed)
        one.fit(embedding).predict(embedding)
    return {
        "umap": middle - start,
        "gmm": end - middle,
        "gmm_1_thread": time.perf_counter() - end,
        "labels": labels,
    }


def jax_path(x: np.ndarray, seed: int) -> dict:
    start = time.perf_counter()
    fit = fit_umap(x, n_components=C, n_neighbors=K, min_dist=0.0, seed=seed)
    middle = time.perf_counter()
    result = fit_gmm_jax(fit.embedding, clusters=CLUSTERS, n_init=N_INIT, seed=seed)
    return {
        "umap": middle - start,
        "gmm": time.perf_counter() - middle,
        "labels": np.asarray(result.labels),
    }


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    return next(
        (line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line),
        "unknown",
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default="../shared/data/mnist/t10k-images-idx3-ubyte.gz")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="markdown report to write")
    args = parser.parse_args(argv)

    ds = load_dataset(args.images, n=args.n)
    x = np.asarray(ds.images, np.float32) / 255.0
    x = PCA(C, random_state=0).fit_transform(x).astype(np.float32)
    labels = np.asarray(ds.labels)
    load_before = os.getloadavg()

    rows = []
    for round_ in ["warm-up", *range(1, args.rounds + 1)]:
        for name, run in (("umap-learn + scikit-learn", baseline), ("jaxae JAX", jax_path)):
            out = run(x, args.seed)
            acc = scores(labels, out.pop("labels"))["acc"]
            rows.append({"round": round_, "method": name, "acc": acc, **out})
            print(rows[-1], flush=True)

    def total(r, gmm="gmm"):
        return r["umap"] + r[gmm]

    timed = [r for r in rows if r["round"] != "warm-up"]
    base = [r for r in timed if r["method"].startswith("umap-learn")]
    mine = [r for r in timed if r["method"] == "jaxae JAX"]
    lines = [
        "# The N2D stage (UMAP then a 10-component full mixture, n_init 10): umap-learn +",
        "# scikit-learn against jaxae's JAX UMAP + JAX GMM, same codes, one process",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}`, niceness {os.nice(0)}",
        "",
        f"Codes: PCA-10 of the first {x.shape[0]} images of `{args.images}` "
        f"(pixels / 255), seed {args.seed} for every run.",
        f"CPU: {cpu_model()}, {len(os.sched_getaffinity(0))} cores visible; "
        f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}.",
        f"JAX {jax.__version__} ({jax.default_backend()}, {jax.devices()[0].device_kind}, "
        f"float32), scikit-learn {sklearn.__version__}, umap-learn "
        f"{__import__('umap').__version__}, numba {__import__('numba').__version__}, "
        f"Python {platform.python_version()}.",
        "",
        "Wall seconds. The warm-up includes numba's (umap-learn) and XLA's (JAX) "
        "compilation; the rounds alternate the two methods.",
        "",
        "| round | method | UMAP s | GMM s | total s | ACC | GMM s, scikit-learn on 1 thread |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        one = f"{r['gmm_1_thread']:.1f}" if "gmm_1_thread" in r else "-"
        lines.append(
            f"| {r['round']} | {r['method']} | {r['umap']:.1f} | {r['gmm']:.1f} "
            f"| {total(r):.1f} | {r['acc']:.4f} | {one} |"
        )
    ratios = [total(b) / total(m) for b, m in zip(base, mine, strict=True)]
    ratios_one = [total(b, "gmm_1_thread") / total(m) for b, m in zip(base, mine, strict=True)]
    umap_ratios = [b["umap"] / m["umap"] for b, m in zip(base, mine, strict=True)]
    fmt = lambda v: ", ".join(f"{r:.2f}" for r in v)
    lines += [
        "",
        f"Speed-up of the stage (umap-learn + scikit-learn time / JAX time), per round: "
        f"{fmt(ratios)}; over all rounds "
        f"{sum(map(total, base)) / sum(map(total, mine)):.2f}.",
        f"With scikit-learn's mixture on one thread instead: {fmt(ratios_one)}.",
        f"UMAP alone: {fmt(umap_ratios)}.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
