#!/usr/bin/env python3
"""DEC against DEC-DA from the same pretrained autoencoder, on real digits.

DEC-DA (Guo, Zhu, Liu and Yin, ACML 2018; XifengGuo/DEC-DA ``main.py``): the
d-500-500-2000-10 autoencoder is pretrained on randomly shifted (10%) and rotated
(10 degrees) batches, SGD lr 1.0 momentum 0.9, batch 256; then DEC's refinement
(SGD lr 0.01 momentum 0.9, batch 256 in data order, tol 0.001; update interval 30
for their smaller sets) with the same augmentation of each step's batch, the
target on the clean images. This script pretrains once with augmentation (fewer
epochs than their 500) and refines that one model twice, without and with
augmentation, printing the cluster accuracy of KMeans on the pretrained codes
(the refinements' shared start), DEC after and DEC-DA after, with seconds.

    nice -n 5 python scripts/dec_da_trial.py --data ../shared/data/mnist-5k \\
        --epochs 40 --max-iter 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np

from jaxae.augment import AugmentConfig
from jaxae.cluster import RefineConfig, cluster_accuracy, refine
from jaxae.cluster.dec import encode_models
from jaxae.cluster.kmeans import fit_kmeans
from jaxae.config import ModelConfig, TrainConfig
from jaxae.data import load_dataset
from jaxae.preprocess import scale
from jaxae.train import fit

DEC_DA_AUGMENT = AugmentConfig(shift=0.1, rotate=10.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a dataset jaxae.data loads (IDX folder)")
    parser.add_argument("--n", type=int, default=None, help="first N images (default all)")
    parser.add_argument("--epochs", type=int, default=40, help="pretraining epochs")
    parser.add_argument("--max-iter", type=int, default=2000, help="most refinement steps")
    parser.add_argument("--update-interval", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ds = load_dataset(args.data, n=args.n)
    labels = np.asarray(ds.labels)
    model_config = ModelConfig(
        input_dim=ds.images.shape[1], hidden=(500, 500, 2000), code_dim=10,
        code_activation="linear", scaling="unit", kernel_init="dec_uniform",
        image_shape=ds.image_shape,
    )  # fmt: skip
    train_config = TrainConfig(
        epochs=args.epochs, batch_size=256, optimizer="sgd", lr=1.0, momentum=0.9,
        shift=DEC_DA_AUGMENT.shift, rotate=DEC_DA_AUGMENT.rotate, seed=args.seed,
    )  # fmt: skip
    print(f"{jax.devices()[0].device_kind}; {len(labels)} images {ds.image_shape}")

    t0 = time.perf_counter()
    trained = fit(
        ds.images, model_config=model_config, train_config=train_config,
        progress=False, keep_model_axis=True,
    )  # fmt: skip
    model_config = trained.model_config  # data_range fitted
    params = trained.state.params
    print(
        f"pretraining with augmentation: {args.epochs} epochs, loss "
        f"{float(np.ravel(trained.loss_history)[-1]):.5f}, {time.perf_counter() - t0:.1f} s"
    )

    x = np.asarray(scale(ds.images, model_config.scaling, model_config.data_range))
    dec = RefineConfig(
        clusters=10, update_interval=args.update_interval, max_iter=args.max_iter,
    )  # fmt: skip
    t0 = time.perf_counter()
    codes = np.asarray(encode_models(params, x, model_config=model_config))[0]
    # The same KMeans init_refinement fits (n_init 20, the seed): both refinements start here.
    start = fit_kmeans(codes, clusters=10, n_init=dec.kmeans_n_init, seed=args.seed)
    print(
        f"KMeans on the pretrained codes: acc {cluster_accuracy(labels, start.labels):.4f}, "
        f"{time.perf_counter() - t0:.1f} s"
    )
    for name, config in (
        ("DEC", dec),
        ("DEC-DA", dataclasses.replace(dec, augment=DEC_DA_AUGMENT, image_shape=ds.image_shape)),
    ):
        t0 = time.perf_counter()
        result = refine(
            x, params, model_config=model_config, config=config, seeds=[args.seed], progress=False
        )
        print(
            f"{name} after: acc {cluster_accuracy(labels, result.labels[0]):.4f}, "
            f"largest cluster {np.bincount(result.labels[0]).max() / len(labels):.2f}, "
            f"{int(result.steps[0])} steps, converged {bool(result.converged[0])}, "
            f"{time.perf_counter() - t0:.1f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
