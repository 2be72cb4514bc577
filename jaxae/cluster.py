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


def kmeans_fit(
    features: np.ndarray, config: ClusterConfig = ClusterConfig(), *, backend: str = "sklearn"
) -> tuple[np.ndarray, np.ndarray]:
    """``kmeans`` that also returns the (clusters, F) centres: (labels, centres)."""
    check_clusters(config.clusters, features.shape[0])
    if backend == "jax":
        from jaxae.jax_kmeans import kmeans_jax

        result = kmeans_jax(
            features,
            clusters=config.clusters,
            n_init=config.n_init,
            max_iter=config.max_iter,
            tol=config.tol,
            seed=config.seed,
        )
        return np.asarray(result.labels), np.asarray(result.centers, np.float32)
    km = KMeans(
        n_clusters=config.clusters,
        init="k-means++",
        n_init=config.n_init,
        max_iter=config.max_iter,
        tol=config.tol,
        random_state=config.seed,
    ).fit(np.asarray(features, np.float64))
    return km.labels_, km.cluster_centers_.astype(np.float32)


def nearest_center(features: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(N,) index of the nearest of the (K, F) centres for each of the (N, F) features."""
    f = np.asarray(features, np.float64)
    c = np.asarray(centers, np.float64)
    d = (f**2).sum(1, keepdims=True) - 2 * f @ c.T + (c**2).sum(1)[None]
    return d.argmin(axis=1)
