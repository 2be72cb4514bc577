#!/usr/bin/env python3
"""``predict`` on images a ``umap-gmm`` run never saw, against its own clusters.

Trains ``jaxae run --method umap-gmm`` (the JAX backends) on the first ``--train``
images of a data set (or reuses ``--run``), then predicts the next ``--test``
images and reports: the training ACC (``clusters.npy``), the held-out ACC, the
seconds of ``predict`` (the first call, compilation included, then warm, then per
image alone), how many training images ``predict`` gives ``clusters.npy`` back for, and whether the
held-out labels and codes are the same predicted in one call, one at a time (the
first ``--alone`` of them) and permuted. Its results are in docs/results-mnist.md and
docs/results-fashion-mnist.md (new images) and bench/results/clustering/*-heldout.json.

    PYTHONPATH=. python bench/studies/predict_heldout.py --dataset ../shared/data/mnist-5k \\
        --train 4000 --test 1000 --epochs 30 --run /tmp/run4k
    # the full set: 60,000 training digits, the 10,000 test digits after them
    PYTHONPATH=. python bench/studies/predict_heldout.py --dataset ../shared/data/mnist \\
        --train 60000 --test 10000 --epochs 100 --run /tmp/run60k
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import jaxae
from jaxae.cli import main as jaxae_main
from jaxae.cluster.scores import cluster_accuracy


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--train", type=int, default=4000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=30, help="pretraining epochs (n2d-fast)")
    p.add_argument("--run", type=Path, required=True, help="run folder: trained unless there")
    p.add_argument("--alone", type=int, default=100, help="held-out images predicted one by one")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if not (args.run / "clusters.npy").is_file():
        run = ["run", "--dataset", args.dataset, "--n", str(args.train), "--preset", "n2d-fast"]
        run += ["--epochs", str(args.epochs), "--seed", str(args.seed), "--out", str(args.run)]
        if jaxae_main([*run, "--no-progress"]) != 0:
            return 1
    data = jaxae.load_dataset(args.dataset, n=args.train + args.test)
    images = np.asarray(data.images).reshape(len(data.images), -1)
    labels = np.asarray(data.labels)
    train, test = images[: args.train], images[args.train :]
    ae = jaxae.load(args.run)
    clusters = np.load(args.run / "clusters.npy")

    start = time.perf_counter()
    held = ae.predict(test)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    ae.predict(test)
    warm = time.perf_counter() - start
    again = ae.predict(train)
    ae.predict(test[:1])  # its program compiled before the clock starts
    start = time.perf_counter()
    alone = np.array([ae.predict(test[i : i + 1])[0] for i in range(args.alone)])
    each = (time.perf_counter() - start) / args.alone
    order = np.random.default_rng(0).permutation(len(test))
    permuted = np.empty_like(held)
    permuted[order] = ae.predict(test[order])
    codes = ae.encode(test)
    codes_alone = np.concatenate([ae.encode(test[i : i + 1]) for i in range(args.alone)])
    result = {
        "train_acc": cluster_accuracy(labels[: args.train], clusters),
        "heldout_acc": cluster_accuracy(labels[args.train :], held),
        "predict_seconds": seconds,
        "predict_seconds_warm": warm,
        "one_image_seconds": each,
        "train_predict_equals_clusters": float(np.mean(again == clusters)),
        "alone_equals_batch": float(np.mean(alone == held[: args.alone])),
        "permuted_equals_batch": float(np.mean(permuted == held)),
        "codes_alone_bitwise": bool(np.array_equal(codes_alone, codes[: args.alone])),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
