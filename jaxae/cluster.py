"""KMeans on codes, and scores of clusters against labels."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, confusion_matrix, normalized_mutual_info_score

from jaxae.config import ClusterConfig
from jaxae.errors import JaxaeError


def check_clusters(clusters: int, n: int) -> None:
    if clusters > n:
        raise JaxaeError(
            f"{clusters} clusters is more than the {n} samples: pass --clusters {n} or less"
        )


def kmeans(
    features: np.ndarray, config: ClusterConfig = ClusterConfig(), *, backend: str = "sklearn"
) -> np.ndarray:
    """Cluster (N, F) features with k-means++ KMeans: (N,) int labels.

    ``backend`` "sklearn" uses scikit-learn's KMeans; "jax" the jitted
    on-device k-means of ``jaxae.jax_kmeans`` (for many codes, on a GPU).
    """
    check_clusters(config.clusters, features.shape[0])
    if backend == "jax":
        from jaxae.jax_kmeans import kmeans_jax

        return kmeans_jax(
            features,
            clusters=config.clusters,
            n_init=config.n_init,
            max_iter=config.max_iter,
            tol=config.tol,
            seed=config.seed,
        ).labels
    if backend != "sklearn":
        raise JaxaeError(f"unknown KMeans backend {backend!r}: use sklearn or jax")
    return KMeans(
        n_clusters=config.clusters,
        init="k-means++",
        n_init=config.n_init,
        max_iter=config.max_iter,
        tol=config.tol,
        random_state=config.seed,
    ).fit_predict(np.asarray(features, np.float64))


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to labels.

    The matching maximises the number of samples whose cluster is mapped to
    their label (Hungarian algorithm); with more clusters than labels, the
    unmatched clusters count as wrong.
    """
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    if labels.shape != clusters.shape:
        raise JaxaeError(f"{labels.size} labels but {clusters.size} cluster assignments")
    _, label_ids = np.unique(labels, return_inverse=True)
    _, cluster_ids = np.unique(clusters, return_inverse=True)
    counts = confusion_matrix(cluster_ids, label_ids)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / labels.size)


def scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """{"acc", "nmi", "ari"} of a clustering against integer labels."""
    return {
        "acc": cluster_accuracy(labels, clusters),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
    }
