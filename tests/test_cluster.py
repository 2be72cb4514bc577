import numpy as np
import pytest
from sklearn.datasets import make_blobs

from jaxae.cluster import cluster_accuracy, fit_kmeans, kmeans, predict_nearest, scores
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


def test_scores_of_nothing_is_a_jaxae_error():
    with pytest.raises(JaxaeError, match="labels and clusters are empty"):
        scores(np.array([], int), np.array([], int))


def test_fit_kmeans_predicts_its_own_labels_and_new_points():
    x, _ = make_blobs(n_samples=300, centers=4, n_features=5, random_state=1)
    fit = fit_kmeans(x, clusters=4, n_init=2, seed=0)
    np.testing.assert_array_equal(fit.predict(x), fit.labels)
    np.testing.assert_array_equal(
        fit.labels, kmeans(x, ClusterConfig(clusters=4, n_init=2, seed=0))
    )
    # New points next to a centre go to it.
    near = fit.centers + 1e-3
    np.testing.assert_array_equal(fit.predict(near), np.arange(4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clusters": 0}, "clusters must be at least 1"),
        ({"n_init": 0}, "n_init must be at least 1"),
        ({"tol": -1.0}, "tol must be at least 0"),
        ({"seed": -1}, "seed must be at least 0"),
        ({"backend": "cuda"}, "unknown backend 'cuda'"),
    ],
)
def test_fit_kmeans_bad_values_give_one_line(kwargs, match):
    with pytest.raises(JaxaeError, match=match) as error:
        fit_kmeans(np.zeros((10, 2)), **kwargs)
    assert "\n" not in str(error.value)


def test_predict_nearest_checks_the_width():
    with pytest.raises(JaxaeError, match="3 columns but the centres 2"):
        predict_nearest(np.zeros((2, 2)), np.zeros((5, 3)))
