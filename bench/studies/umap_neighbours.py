#!/usr/bin/env python3
"""Does UMAP's neighbourhood size move N2D's clusters? The study behind keeping N2D's 20.

For each finished run folder given, every model's pretrained codes (the start a
DEC/IDEC refinement would take) are clustered by UMAP + the Gaussian mixture with
the run's options, once per ``--neighbors`` value, with the model's seed. Written
as JSON (resumable: fits already in ``--out`` are not repeated) and markdown: ACC /
NMI per model and setting, and each setting's mean ± std over the models. The
labels only score; nothing here chooses.

    python bench/studies/umap_neighbours.py RUN [RUN ...] --neighbors 10,20,50 \\
        --out bench/results/umap-neighbours.json
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

from jaxae.checkpoint import load_checkpoint
from jaxae.cluster import scores
from jaxae.cluster.umap_gmm import fit_umap_gmm
from jaxae.config import ClusterConfig
from jaxae.data import load_dataset
from jaxae.encoder import Encoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from umap_stage_speed import cpu_model  # beside this script


def study(run_dir: Path, neighbors: list[int], rows: list[dict], save) -> None:
    ckpt = load_checkpoint(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    config = ClusterConfig.from_dict(report["cluster"])
    ds = load_dataset(report["dataset"], n=report["n"])
    labels = np.asarray(ds.labels)
    done = {(r["run"], r["seed"], r["neighbors"]) for r in rows}
    for model, (seed, _) in enumerate(ckpt.models):
        todo = [k for k in neighbors if (str(run_dir), seed, k) not in done]
        if not todo:
            continue
        pretrained = jax.tree.map(lambda a, m=model: a[m], ckpt.state.params)
        codes = np.asarray(Encoder(pretrained, ckpt.model_config).encode(ds.images))
        for k in todo:
            start = time.perf_counter()
            fit = fit_umap_gmm(
                codes, clusters=config.clusters, n_init=config.n_init, seed=seed,
                n_components=config.umap.dim, n_neighbors=k, min_dist=config.umap.min_dist,
            )  # fmt: skip
            rows.append({
                "run": str(run_dir), "dataset": report["dataset"], "seed": seed, "neighbors": k,
                "seconds": time.perf_counter() - start, **scores(labels, fit.labels),
            })  # fmt: skip
            print(rows[-1], flush=True)
            save()


def markdown(rows: list[dict], argv: list[str]) -> str:
    lines = [
        "# UMAP's neighbourhood size under N2D's clusters of the codes",
        "",
        f"Command: `{' '.join(['python', *argv])}`",
        "",
        f"CPU: {cpu_model()}, {len(os.sched_getaffinity(0))} cores; JAX {jax.__version__}. "
        "Pretrained codes of each model, JAX UMAP (10 dims, min_dist 0) and the JAX "
        "mixture (best of 10 starts), the model's seed.",
        "",
        "| run | neighbours | ACC per model | ACC mean ± std | NMI mean |",
        "| --- | ---: | --- | --- | ---: |",
    ]
    for run in dict.fromkeys(r["run"] for r in rows):
        for k in sorted({r["neighbors"] for r in rows if r["run"] == run}):
            got = [r for r in rows if r["run"] == run and r["neighbors"] == k]
            acc = np.array([r["acc"] for r in got])
            nmi = np.array([r["nmi"] for r in got])
            lines.append(
                f"| {Path(run).name} | {k} | {', '.join(f'{a:.3f}' for a in acc)} | "
                f"{acc.mean():.3f} ± {acc.std():.3f} | {nmi.mean():.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--neighbors", default="10,20,50", help="comma-separated sizes")
    parser.add_argument("--out", type=Path, required=True, help="JSON of every fit")
    args = parser.parse_args(argv)
    neighbors = [int(k) for k in args.neighbors.split(",")]
    rows = json.loads(args.out.read_text()) if args.out.exists() else []

    def save():
        args.out.write_text(json.dumps(rows, indent=1) + "\n")

    for run in args.runs:
        study(run, neighbors, rows, save)
    text = markdown(rows, sys.argv if argv is None else [__file__, *argv])
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
