#!/usr/bin/env python3
"""How the JAX UMAP's time and memory grow with N: each stage of ``fit_umap`` timed
at N rows, and the process's peak memory after it, one fresh process per N.

The rows are PCA-10 of MNIST digits (pixels / 255), a stand-in for 10-dimensional
codes; N above the digits available tiles them, copy i moved along axis i by
twice the data's diameter, so a row's exact neighbours are those of its copy and
the graph is the copies' graphs side by side (the layout's work grows
with N as for new rows; the spectral start then lays out one piece per copy).
``--pixels`` takes the 784 scaled pixels instead (the pixel baseline's
neighbour search).

Stages: the exact neighbour search, the fuzzy graph (bandwidths on the device,
the union on the host), the spectral start (host ``eigsh``), the layout's
capacity, and the layout epochs. Where a stage would take too long, it is timed
on a part and scaled linearly, and the table says so: ``--knn-queries Q`` searches
Q query rows against all N (the search is linear in its queries), and the graph
is then built from the first copy's neighbours shifted to every copy (checked
against the Q rows searched);
``--layout-epochs E`` times E of the layout's epochs (200 above 10,000 rows,
each about as costly: the edges due are spread evenly over the epochs). Its result
is in docs/benchmarks.md (growth with N) and bench/results/umap-scaling.md.

    PYTHONPATH=. python bench/studies/umap_scaling.py --n 10000 70000 700000 \\
        --knn-queries 70000 --layout-epochs 20 --out bench/results/umap-scaling.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp, numpy as np
from sklearn.decomposition import PCA
from jaxae.cluster.umap.graph import _fuzzy_union, _memberships, _prune, _smooth_knn_dist
from jaxae.cluster.umap.layout import (
    _WAVES,
    _layout_graph,
    find_ab_params,
    layout_capacity,
    layout_epochs,
)
from jaxae.cluster.umap.neighbors import nearest_neighbors
from jaxae.cluster.umap.spectral import _initial_embedding
from jaxae.data import load_dataset

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

n, pixels, queries, epochs_timed, source = (int(sys.argv[1]), sys.argv[2] == "1",
    int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
ds = load_dataset(source)
x = np.asarray(ds.images, np.float32).reshape(len(ds.images), -1) / 255.0
if not pixels:
    x = PCA(10, random_state=0).fit_transform(x).astype(np.float32)
base = x[:n]
copies = -(-n // len(base))
# Twice the diameter along a different axis per copy: apart, yet near enough that the
# search's float32 |x|^2 - 2 x.y + |y|^2 keeps the near distances' digits.
shift = 4.0 * float(np.linalg.norm(base - base.mean(axis=0), axis=1).max())
d = base.shape[1]
moves = [np.eye(d, dtype=np.float32)[i % d] * shift * (1 + i // d) for i in range(copies)]
x = np.concatenate([base + m for m in moves])[:n]
out = {"n": n, "d": x.shape[1], "start_mb": peak_mb()}
k, c = 20, 10
xd = jnp.asarray(x)
q = min(queries, n)
jax.block_until_ready(nearest_neighbors(xd[:256], xd, k))  # compile apart
t = time.perf_counter()
idx, dist = jax.block_until_ready(nearest_neighbors(xd[:q], xd, k, self_first=True))
out["knn_s"] = (time.perf_counter() - t) * n / q
out["knn_queries"] = q
out["knn_mb"] = peak_mb()
if pixels:
    print(json.dumps(out)); sys.exit(0)
if q < n:  # the graph from the first copy's neighbours, shifted to every copy
    if n % len(base):
        sys.exit("--knn-queries below N needs N a multiple of the rows available")
    b = jnp.asarray(base)
    one_idx, one_dist = nearest_neighbors(b, b, k, self_first=True)
    one_idx, one_dist = np.asarray(one_idx), np.asarray(one_dist)
    tiled = np.concatenate([one_idx + i * len(base) for i in range(copies)])
    same = float(np.mean(np.asarray(idx) == tiled[:q]))
    out["tiled_neighbours_checked"] = same
    idx, dist = jnp.asarray(tiled), jnp.asarray(np.tile(one_dist, (copies, 1)))
t = time.perf_counter()
sigmas, rhos = _smooth_knn_dist(dist, float(k), 1.0)
w = _memberships(dist, idx, sigmas, rhos, skip_self=True)
n_epochs = 500 if n <= 10_000 else 200
graph = _prune(_fuzzy_union(*jax.device_get((idx, w)), n), n_epochs)
out["graph_s"] = time.perf_counter() - t
out["edges"] = int(graph.nnz)
t = time.perf_counter()
start = _initial_embedding(x, graph, c, "spectral", np.random.default_rng(0))
out["spectral_s"] = time.perf_counter() - t
layout = _layout_graph(graph)
t = time.perf_counter()
capacity = layout_capacity(layout, n_epochs, waves=_WAVES)
out["capacity_s"] = time.perf_counter() - t
out["capacity"] = list(capacity)
a, b = find_ab_params(1.0, 0.0)
timed = min(epochs_timed, n_epochs)
run = lambda first, count: jax.block_until_ready(layout_epochs(
    jnp.asarray(start), layout, jax.random.key(0), first, count, a=a, b=b, n_epochs=n_epochs,
    capacity=capacity, waves=_WAVES))
run(0, 1)  # compile apart
t = time.perf_counter()
run(0, timed)
out["layout_s"] = (time.perf_counter() - t) * n_epochs / timed
out["layout_epochs"] = [timed, n_epochs]
out["peak_mb"] = peak_mb()
print(json.dumps(out))
"""


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        return next(line.split(":", 1)[1].strip() for line in text.splitlines()
                    if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def measure(n: int, args) -> dict:
    cmd = [sys.executable, "-c", CHILD, str(n), "1" if args.pixels else "0",
           str(args.knn_queries), str(args.layout_epochs), args.dataset]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"N={n} failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> list[str]:
    def s(v):
        return "" if v is None else f"{v:,.2f}"

    lines = [
        "| N | D | kNN s | queries timed | graph s | edges | spectral s | layout s | "
        "epochs timed | peak MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        epochs = r.get("layout_epochs")
        lines.append(
            f"| {r['n']:,} | {r['d']} | {s(r['knn_s'])} | {r['knn_queries']:,} | "
            f"{s(r.get('graph_s'))} | {format(r['edges'], ',') if 'edges' in r else ''} | "
            f"{s(r.get('spectral_s'))} | "
            f"{s(r.get('layout_s'))} | {'' if epochs is None else f'{epochs[0]} of {epochs[1]}'} | "
            f"{s(r.get('peak_mb', r['knn_mb']))} |"
        )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="../shared/data/mnist")
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 70_000])
    parser.add_argument("--pixels", action="store_true", help="784 pixels, neighbour search only")
    parser.add_argument("--knn-queries", type=int, default=10**9)
    parser.add_argument("--layout-epochs", type=int, default=10**9)
    parser.add_argument("--out", default=None, help="markdown report to write")
    args = parser.parse_args(argv)
    rows = []
    for n in args.n:
        rows.append(measure(n, args))
        print(json.dumps(rows[-1]), flush=True)
    lines = [
        "# The JAX UMAP's stages at growing N",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; one fresh process per N; "
        f"load average at the end {os.getloadavg()[0]:.1f}. Seconds scaled from a part "
        "where 'queries timed' is below N or 'epochs timed' below all; peak MB is the "
        "process's resident peak (data, JAX and all stages so far).",
        "",
        *table(rows),
        "",
        *(
            f"- N = {r['n']:,}: the shifted neighbours equal the searched ones for "
            f"{r['tiled_neighbours_checked']:.2%} of the {r['knn_queries']:,} rows searched."
            for r in rows
            if "tiled_neighbours_checked" in r
        ),
        "",
    ]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
