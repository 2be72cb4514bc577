"""Scores of a clustering against labels: Hungarian accuracy, NMI and ARI."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, confusion_matrix, normalized_mutual_info_score

from jaxae.errors import JaxaeError


def _check_pair(labels, clusters) -> tuple[np.ndarray, np.ndarray]:
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    if labels.shape != clusters.shape:
        raise JaxaeError(f"{labels.size} labels but {clusters.size} cluster assignments")
    if labels.ndim != 1:
        raise JaxaeError(
            f"labels and clusters must be 1-D (N,), got shape {labels.shape}: "
            "pass labels.ravel() and clusters.ravel()"
        )
    if labels.size == 0:
        raise JaxaeError("labels and clusters are empty: pass at least one assignment")
    return labels, clusters


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to labels.

    The matching maximises the number of samples whose cluster is mapped to
    their label (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``);
    with more clusters than labels, the unmatched clusters count as wrong.

    Args:
      labels: ``(N,)`` true labels, any hashable values.
      clusters: ``(N,)`` cluster assignments.

    Returns:
      The accuracy in [0, 1].
    """
    labels, clusters = _check_pair(labels, clusters)
    _, label_ids = np.unique(labels, return_inverse=True)
    _, cluster_ids = np.unique(clusters, return_inverse=True)
    counts = confusion_matrix(cluster_ids, label_ids)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / labels.size)


def scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """``{"acc", "nmi", "ari"}`` of ``(N,)`` cluster assignments against ``(N,)`` labels.

    NMI and ARI are scikit-learn's (arithmetic-mean normalisation for NMI).
    """
    labels, clusters = _check_pair(labels, clusters)
    return {
        "acc": cluster_accuracy(labels, clusters),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
    }
