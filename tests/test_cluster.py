import numpy as np
import pytest
from sklearn.datasets import make_blobs

from jaxae.cluster import cluster_accuracy, kmeans, scores
from jaxae.config import ClusterConfig
from jaxae.errors import JaxaeError


@pytest.mark.parametrize(
    "labels, clusters, expected",
    [
        ([0, 0, 1, 1], [1, 1, 0, 0], 1.0),  # relabelled perfectly
        ([0, 0, 1, 1], [0, 1, 0, 1], 0.5),
        ([0, 0, 0, 1, 1, 2], [5, 5, 7, 7, 7, 9], 5 / 6),  # 5->0, 7->1, 9->2
        ([0, 1, 2, 3], [0, 0, 0, 0], 0.25),  # one cluster, four labels
        ([0, 0, 0, 0], [0, 1, 2, 3], 0.25),  # four clusters, one label
        ([3, 3, 8, 8, 8], [2, 2, 2, 1, 1], 4 / 5),
    ],
)
def test_accuracy_hand_worked(labels, clusters, expected):
    assert cluster_accuracy(np.array(labels), np.array(clusters)) == pytest.approx(expected)


def test_accuracy_is_one_to_one():
    # Greedy majority voting would give 1.0 here (both clusters vote label 0).
    assert cluster_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)


def test_scores_on_blobs():
    x, y = make_blobs(n_samples=300, centers=3, cluster_std=0.5, random_state=0)
    s = scores(y, kmeans(x, ClusterConfig(clusters=3)))
    assert s == pytest.approx({"acc": 1.0, "nmi": 1.0, "ari": 1.0})


def test_kmeans_is_deterministic_for_a_seed():
    x = np.random.default_rng(0).normal(size=(200, 5))
    np.testing.assert_array_equal(
        kmeans(x, ClusterConfig(clusters=4)), kmeans(x, ClusterConfig(clusters=4))
    )


def test_more_clusters_than_samples():
    with pytest.raises(JaxaeError, match="11 clusters is more than the 10 samples"):
        kmeans(np.zeros((10, 2)), ClusterConfig(clusters=11))


def test_mismatched_lengths():
    with pytest.raises(JaxaeError, match="3 labels but 2 cluster"):
        cluster_accuracy(np.array([0, 1, 2]), np.array([0, 1]))
