"""The clustering stage of an experiment: each model's codes clustered by the
configured method, and the same methods on the pixels as baselines.

A ``Clustering`` is what one model's stage leaves: its labels on the training
images, what ``predict`` needs for new images, and a summary for the report.
The algorithms themselves live in ``jaxae.cluster``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxae import cluster
from jaxae.config import ClusterConfig, ModelConfig
from jaxae.encoder import Encoder

# A code unit is alive when it is non-zero for at least this share of the images.
ALIVE_FRACTION = 0.01


@dataclasses.dataclass(frozen=True)
class Clustering:
    """One model's clusters: ``labels`` (N,) on the training images, and the fitted
    state ``predict`` uses on new codes (``centers`` for KMeans, DEC and IDEC)."""

    method: str
    labels: np.ndarray
    centers: np.ndarray | None = None
    alive_code_units: int | None = None
    extra: dict | None = None

    def predict(self, codes: np.ndarray) -> np.ndarray:
        """(N, code_dim) codes -> (N,) cluster labels."""
        return cluster.nearest_center(codes, self.centers)

    def summary(self) -> dict[str, Any]:
        out = {"method": self.method}
        if self.alive_code_units is not None:
            out["alive_code_units"] = self.alive_code_units
        return out


def alive_units(codes: np.ndarray) -> int:
    """Code units that are non-zero for at least 1% of the images (dead ReLUs are not)."""
    return int(((np.abs(codes) > 0).mean(axis=0) >= ALIVE_FRACTION).sum())


def cluster_models(
    params: Any,
    images: np.ndarray,
    *,
    alive: np.ndarray,
    model_config: ModelConfig,
    cluster_config: ClusterConfig,
    seeds: Sequence[int],
    progress: bool = True,
) -> tuple[Any, list[Clustering | None]]:
    """Cluster each model's codes; returns the (possibly refined) params and the clusterings.

    ``params`` has a leading model axis; models that are not ``alive`` (diverged)
    get ``None``.
    """
    out: list[Clustering | None] = []
    for i, seed in enumerate(seeds):
        if not alive[i]:
            out.append(None)
            continue
        p = jax.tree.map(lambda a, i=i: a[i], params)
        codes = Encoder(p, model_config).encode(images)
        config = dataclasses.replace(cluster_config, seed=seed)
        labels, centers = cluster.kmeans_fit(codes, config, backend=config.kmeans_backend)
        out.append(Clustering("kmeans", labels, centers, alive_units(codes)))
    return params, out


def pixel_baselines(
    pixels: np.ndarray, cluster_config: ClusterConfig, *, seeds: Sequence[int], labels: np.ndarray
) -> dict[str, dict[int, dict[str, float]]]:
    """Scores of KMeans (and of the method, where it applies) on the scaled pixels, per seed."""
    out: dict[str, dict[int, dict[str, float]]] = {"pixel_kmeans": {}}
    for seed in seeds:
        config = dataclasses.replace(cluster_config, seed=seed)
        out["pixel_kmeans"][seed] = cluster.scores(labels, cluster.kmeans(pixels, config))
    return out
