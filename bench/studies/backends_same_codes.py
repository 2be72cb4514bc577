#!/usr/bin/env python3
"""umap-gmm with both backends on the very codes of a trained run, model by model.

For every model a run folder holds (``--seeds S`` trains S together), the codes
of the run's images are clustered twice with the run's own UMAP and mixture
options: umap-learn + scikit-learn (the reference) and the JAX UMAP + the JAX
mixture. Printed and written as markdown: ACC / NMI / ARI of each backend, their
mean and spread over the models, the seconds of each, and how much the two
embeddings agree (the share of each point's 20 nearest neighbours in one
embedding that are among its 20 nearest in the other). No label is used for any
choice; the labels only score. Its result is in docs/jax-umap.md (how close to the
reference) and bench/results/backends-same-codes*.md.

    PYTHONPATH=. python bench/studies/backends_same_codes.py RUN_DIR \\
        --out bench/results/backends-same-codes.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
from sklearn.neighbors import NearestNeighbors

from jaxae.checkpoint import encoder_params, load_checkpoint
from jaxae.cluster import scores
from jaxae.cluster.umap_gmm import fit_umap_gmm
from jaxae.config import ClusterConfig
from jaxae.data import load_dataset
from jaxae.encoder import Encoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from umap_stage_speed import cpu_model  # beside this script

BACKENDS = {"umap-learn + scikit-learn": ("umap-learn", "sklearn"), "JAX + JAX": ("jax", "jax")}


def neighbours_kept(a: np.ndarray, b: np.ndarray, k: int = 20) -> float:
    """Mean share of each row's k nearest neighbours in ``a`` that are among its k in ``b``."""
    na = NearestNeighbors(n_neighbors=k + 1).fit(a).kneighbors(a, return_distance=False)[:, 1:]
    nb = NearestNeighbors(n_neighbors=k + 1).fit(b).kneighbors(b, return_distance=False)[:, 1:]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(na, nb)]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", default=None, help="markdown report to write")
    args = parser.parse_args(argv)

    ckpt = load_checkpoint(args.run_dir)
    report = json.loads((args.run_dir / "report.json").read_text())
    cluster_config = ClusterConfig.from_dict(report["cluster"])
    ds = load_dataset(report["dataset"], n=report["n"])
    labels = np.asarray(ds.labels)
    rows = []
    for model, (seed, _) in enumerate(ckpt.models):
        codes = Encoder(encoder_params(ckpt, model), ckpt.model_config).encode(ds.images)
        embeddings = {}
        for name, (umap_backend, gmm_backend) in BACKENDS.items():
            start = time.perf_counter()
            fit = fit_umap_gmm(
                codes, clusters=cluster_config.clusters, n_init=cluster_config.n_init,
                seed=seed, n_components=cluster_config.umap.dim,
                n_neighbors=cluster_config.umap.neighbors, min_dist=cluster_config.umap.min_dist,
                backend=umap_backend, gmm_backend=gmm_backend,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            embeddings[name] = fit.embedding
            rows.append({"seed": seed, "backend": name, "seconds": seconds,
                         **scores(labels, fit.labels)})  # fmt: skip
            print(rows[-1], flush=True)
        kept = neighbours_kept(*embeddings.values())
        rows[-1]["kept"] = rows[-2]["kept"] = kept
        print(f"seed {seed}: {kept:.3f} of the 20 nearest neighbours shared", flush=True)

    lines = [
        "# umap-gmm on the same codes: umap-learn + scikit-learn against JAX + JAX",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}`",
        "",
        f"Run: `{args.run_dir}` ({report['dataset']}, {report['n']} images, preset fields "
        f"{report['train']['epochs']} epochs, seeds {[s for s, _ in ckpt.models]}); UMAP "
        f"{cluster_config.umap.dim} dims, {cluster_config.umap.neighbors} neighbours, "
        f"min_dist {cluster_config.umap.min_dist}; mixture n_init {cluster_config.n_init}.",
        f"CPU: {cpu_model()}, {len(os.sched_getaffinity(0))} cores; JAX {jax.__version__}. "
        "Seconds include the first call's compilation (numba, XLA) in the first model.",
        "",
        "| seed | backend | ACC | NMI | ARI | seconds | 20-NN shared |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['backend']} | {r['acc']:.4f} | {r['nmi']:.4f} | "
            f"{r['ari']:.4f} | {r['seconds']:.1f} | {r['kept']:.3f} |"
        )
    lines.append("")
    for name in BACKENDS:
        acc = np.array([r["acc"] for r in rows if r["backend"] == name])
        lines.append(
            f"- {name}: ACC {acc.mean():.4f} ± {acc.std():.4f} (worst {acc.min():.4f}) "
            f"over {len(acc)} models"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
