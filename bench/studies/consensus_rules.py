#!/usr/bin/env python3
"""Which label-free rule turns a run's S clusterings into one answer: the study behind
the run's consensus (docs/devices.md, "Many models in one program").

For each finished run folder given, clusters every model's codes again as the run
did (``jaxae.methods.cluster_models``; with ``--method`` another method, e.g. the
refinement's start ``umap-gmm``, which takes a minute where the refinement takes
many), then scores, with the labels, what four rules hand out:

- ``medoid``: the run's rule (:func:`jaxae.consensus.consensus`), the clustering
  with the highest mean adjusted Rand index with the others; a single model, so
  ``predict`` is that model's;
- ``vote``: every clustering's cluster numbers matched to the medoid's (Hungarian,
  on the counts of shared images), then each image's most frequent label, the
  medoid's on a tie;
- ``bipartite``: the images-to-clusters graph of all S clusterings cut into K parts
  (Fern and Brodley 2004, HBGF): the K leading left singular vectors of the
  degree-normalised one-hot matrix, rows normalised, KMeans (n_init 10);
- ``codes``: not a rule over the S partitions but one clustering of the S models'
  codes side by side, the run's own answer
  (:func:`jaxae.consensus.cluster_side_by_side`): each model's codes centred and
  divided by their mean standard deviation (every model weighs the same),
  concatenated to S x code_dim features and clustered once by the method's start,
  with ``--fits`` seeds (its mean and spread; the UMAP seed moves it), and the
  fit that agrees most with the others (with three fits or more).

beside the mean and the worst of the S models. The labels only score.

    python bench/studies/consensus_rules.py RUN [RUN ...] --method umap-gmm \\
        --out bench/results/consensus-rules.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

from jaxae import methods
from jaxae.cluster import scores
from jaxae.consensus import cluster_side_by_side, consensus
from jaxae.lifecycle import load_run_data, resume_point
from jaxae.rundir import REPORT


def clusterings(run: Path, method: str | None):
    """Each model of ``run`` clustered again, by ``method`` or the run's own: the (S, N)
    labels, the true labels, the data's name, the images, the models' parameters (the
    refined encoders' where the run refined them and ``method`` is None), the model
    config and the cluster config used."""
    config, _, ckpt = resume_point(run)
    if not (run / REPORT).is_file():
        raise SystemExit(f"{run} has not finished: finish it with jaxae run --resume {run}")
    cluster_config = config.cluster
    if method is not None:
        cluster_config = dataclasses.replace(cluster_config, method=method)
    config, dataset = load_run_data(run, config, ckpt)
    count = len(ckpt.models)
    params, found, _ = methods.cluster_models(
        jax.tree.map(np.asarray, ckpt.state.params), dataset.images,
        alive=np.ones(count, bool), model_config=config.model, cluster_config=cluster_config,
        seeds=[ckpt.models[m][0] for m in range(count)], progress=False, devices=config.devices,
    )  # fmt: skip
    labels = np.stack([c.labels for c in found])
    return (
        labels, dataset.labels, config.data.source, dataset.images, params, config.model,
        cluster_config,
    )  # fmt: skip


def codes_rule(images, params, model_config, cluster_config, fits: int) -> list[np.ndarray]:
    """``fits`` clusterings (seeds 0, 1, ...) of the models' codes side by side, as a run
    of several seeds makes its answer (:func:`jaxae.consensus.cluster_side_by_side`)."""
    alive = np.ones(len(jax.tree.leaves(params)[0]), bool)
    return [
        cluster_side_by_side(
            params, images, alive, model_config=model_config, cluster_config=cluster_config,
            seed=s,
        ).labels
        for s in range(fits)
    ]  # fmt: skip


def matched(labels: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """``labels`` renumbered to share the most images with ``reference``'s clusters."""
    counts = np.zeros((k, k))
    np.add.at(counts, (labels, reference), 1)
    rows, cols = linear_sum_assignment(-counts)
    table = np.empty(k, int)
    table[rows] = cols
    return table[labels]


def vote(partitions: np.ndarray, chosen: int, k: int) -> np.ndarray:
    reference = partitions[chosen]
    counts = np.zeros((len(reference), k), int)
    rows = np.arange(len(reference))
    for labels in partitions:
        counts[rows, matched(labels, reference, k)] += 1
    keep = counts[rows, reference] == counts.max(axis=1)
    return np.where(keep, reference, counts.argmax(axis=1))


def bipartite(partitions: np.ndarray, k: int) -> np.ndarray:
    s, n = partitions.shape
    onehot = np.zeros((n, s * k))
    for i, labels in enumerate(partitions):
        onehot[np.arange(n), i * k + labels] = 1
    onehot = onehot[:, onehot.sum(0) > 0]
    u, _, _ = np.linalg.svd(onehot / np.sqrt(onehot.sum(0) * s), full_matrices=False)
    rows = u[:, :k] / np.linalg.norm(u[:, :k], axis=1, keepdims=True)
    return KMeans(k, n_init=10, random_state=0).fit_predict(rows)


def study(partitions: np.ndarray, truth: np.ndarray, together: list[np.ndarray]) -> dict:
    k = int(partitions.max()) + 1
    chosen = consensus(list(partitions)).chosen
    acc = [scores(truth, p)["acc"] for p in partitions]
    rules = {
        "medoid": partitions[chosen],
        "vote": vote(partitions, chosen, k),
        "bipartite": bipartite(partitions, k),
    }
    together_acc = [scores(truth, labels)["acc"] for labels in together]
    return {
        "codes": together_acc,
        "codes_mean": float(np.mean(together_acc)),
        "codes_std": float(np.std(together_acc)),
        # The fit that agrees most with the other fits: would several fits steady it?
        "codes_medoid": together_acc[consensus(together).chosen] if len(together) > 2 else None,
        "models": acc,
        "mean": float(np.mean(acc)),
        "worst": float(np.min(acc)),
        **{name: scores(truth, labels)["acc"] for name, labels in rules.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished run folders of several seeds")
    p.add_argument("--method", default=None, help="cluster the codes by this method instead")
    p.add_argument("--fits", type=int, default=3, help="seeds of the side-by-side clustering")
    p.add_argument("--out", type=Path, default=None, help="markdown to write (.json beside)")
    args = p.parse_args()
    rows = []
    for run in args.runs:
        partitions, truth, source, images, params, model_config, cluster_config = clusterings(
            run, args.method
        )
        together = codes_rule(images, params, model_config, cluster_config, args.fits)
        rows.append({"run": str(run), "data": source, **study(partitions, truth, together)})
        print(json.dumps(rows[-1]))
    lines = [
        f"# One answer from S models: four label-free rules ({args.method or 'run'} labels)",
        "",
        "| run | data | models' ACC | mean | worst | medoid | vote | bipartite | codes "
        "| codes, medoid of the fits |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        models = ", ".join(f"{a:.4f}" for a in r["models"])
        lines.append(
            f"| {Path(r['run']).name} | {Path(r['data']).parent.name} | {models} | "
            f"{r['mean']:.4f} | {r['worst']:.4f} | {r['medoid']:.4f} | {r['vote']:.4f} | "
            f"{r['bipartite']:.4f} | {r['codes_mean']:.4f} ± {r['codes_std']:.4f} | "
            f"{'' if r['codes_medoid'] is None else format(r['codes_medoid'], '.4f')} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
