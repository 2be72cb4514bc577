#!/usr/bin/env python3
"""Where fit_umap's time goes on mnist-5k (PCA-50, k = 20, C = 10): each stage timed
after a warm-up call, the layout's capacity (the busiest epoch) and its time per
epoch against the negative-sample draws alone.

    PYTHONPATH=. python scripts/jax_umap_profile.py --dataset ../shared/data/mnist-5k
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.decomposition import PCA

from jaxae.cluster import jax_umap
from jaxae.data import load_dataset


def seconds(fn, *args, repeat: int = 1) -> float:
    """Mean wall seconds of ``fn(*args)`` after one warm-up call (compilation)."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(repeat):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / repeat


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="../shared/data/mnist-5k")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=20, help="layout epochs timed")
    args = parser.parse_args(argv)

    ds = load_dataset(args.dataset, n=args.n)
    x = np.asarray(ds.images, np.float32) / 255.0
    x = jnp.asarray(PCA(50, random_state=0).fit_transform(x).astype(np.float32))
    k, c = 20, 10
    print(f"kNN: {seconds(jax_umap.nearest_neighbors, x, x, k):.3f} s")
    idx, dist = jax_umap.nearest_neighbors(x, x, k, self_first=True)
    sigmas, rhos = jax_umap._smooth_knn_dist(dist, float(k), 1.0)
    weights = jax_umap._memberships(dist, idx, sigmas, rhos, skip_self=True)
    host = jax.device_get((idx, weights))
    start = time.perf_counter()
    graph = jax_umap._prune(jax_umap._fuzzy_union(*host, x.shape[0]), 500)
    print(f"fuzzy union and pruning (host): {time.perf_counter() - start:.3f} s, {graph.nnz} edges")
    start = time.perf_counter()
    jax_umap._spectral(graph, c, np.asarray(x), np.random.default_rng(0))
    print(f"spectral start (host eigsh): {time.perf_counter() - start:.3f} s")
    layout = jax_umap._layout_graph(graph)
    share = float(np.mean(1.0 / np.asarray(layout.epochs_per_sample)))
    print(f"edges due per epoch, on average: {share:.1%}")
    start = time.perf_counter()
    capacity = jax_umap.layout_capacity(layout, 500)
    print(f"layout capacity {capacity} (edges due, edges drawing over r + 1): "
          f"{time.perf_counter() - start:.3f} s with compilation")  # fmt: skip
    y = jnp.asarray(np.random.default_rng(0).uniform(0, 10, (x.shape[0], c)).astype(np.float32))
    a, b = jax_umap.find_ab_params(1.0, 0.0)

    def epochs(count):
        return jax_umap.layout_epochs(
            y, layout, jax.random.key(0), 0, count, a=a, b=b, n_epochs=500, capacity=capacity
        )

    per_epoch = seconds(epochs, args.epochs) / args.epochs
    counters = jnp.arange(capacity[0] * 6, dtype=jnp.uint32)  # r + 1 slots per due edge
    draws = jax.jit(lambda key: jax_umap._sample_rows(key, 0, counters, x.shape[0]))
    draw_s = seconds(draws, jax.random.key(1), repeat=args.epochs)
    print(f"layout: {per_epoch * 1e3:.0f} ms per epoch ({per_epoch * 500:.0f} s for 500)")
    print(f"  of which the negative-sample draws alone: {draw_s * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
