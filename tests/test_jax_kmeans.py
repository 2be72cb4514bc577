"""kmeans_jax against scikit-learn's KMeans (the reference), on blobs, digits and noise.

Shapes are shared between tests on purpose: each new (N, F, K, n_init) compiles
once, and compiling is most of this file's run time on CPU.
"""

import jax
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits, make_blobs
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from jaxae.cluster import KMeansResult, jax_kmeans, kmeans_jax
from jaxae.errors import JaxaeError

# The acceptance criterion: inertia within 1% of scikit-learn's.
INERTIA_RTOL = 0.01


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(n_samples=2000, n_features=16, centers=10, cluster_std=1.0, random_state=0)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """scikit-learn's 1,797 8x8 digits, each row standardised (mean 0, std 1)."""
    x = load_digits().data
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    return x.astype(np.float32)


def sklearn_kmeans(x: np.ndarray, **kwargs) -> KMeans:
    """The reference: scikit-learn's Lloyd in float64, on one thread (on a busy machine
    its OpenMP threads spin-wait and take 25 times longer on these small arrays)."""
    kwargs = {"n_clusters": 10, "algorithm": "lloyd", **kwargs}
    with threadpool_limits(1):
        return KMeans(**kwargs).fit(x.astype(np.float64))


def test_result_types_and_shapes(blobs):
    result = kmeans_jax(blobs[0])
    assert isinstance(result, KMeansResult)
    assert result.labels.shape == (2000,) and result.labels.dtype == np.int32
    assert result.centers.shape == (10, 16) and result.centers.dtype == np.float32
    assert isinstance(result.inertia, float) and isinstance(result.n_iter, int)
    assert 1 <= result.n_iter <= 300


def test_separated_blobs_recovered_exactly(blobs):
    x, truth = blobs
    result = kmeans_jax(x, clusters=10, n_init=3, seed=0)
    assert adjusted_rand_score(truth, result.labels) == 1.0


def test_inertia_is_that_of_labels_and_centers(blobs):
    x = blobs[0].astype(np.float64)
    result = kmeans_jax(blobs[0])
    exact = np.sum((x - result.centers[result.labels]) ** 2)
    np.testing.assert_allclose(result.inertia, exact, rtol=1e-5)
    # Each label is the nearest center.
    d2 = ((x[:, None, :] - result.centers[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(result.labels, d2.argmin(1))


@pytest.mark.parametrize("seed", [0, 1])
def test_inertia_within_1pct_of_sklearn_on_digits(digits, seed):
    ours = kmeans_jax(digits, clusters=10, n_init=3, seed=seed)
    theirs = sklearn_kmeans(digits, n_init=3, random_state=seed)
    assert ours.inertia <= theirs.inertia_ * (1 + INERTIA_RTOL)


def test_inertia_within_1pct_of_sklearn_on_noise(digits):
    # Unclustered data has many near-equal local minima: a hard case for seeding.
    x = np.random.default_rng(0).normal(size=digits.shape).astype(np.float32)
    ours = kmeans_jax(x, clusters=10, n_init=3, seed=0)
    theirs = sklearn_kmeans(x, n_init=3, random_state=0)
    assert ours.inertia <= theirs.inertia_ * (1 + INERTIA_RTOL)


@pytest.mark.parametrize("draw", [0, 1, 2])
def test_same_starts_same_result_as_sklearn(digits, draw):
    """From the same centers, Lloyd takes the same steps as scikit-learn's (in float64).

    Three starts (rows of the data) run at once, vmapped; scikit-learn runs each
    alone (n_init=1), and the best of its three must be ours.
    """
    rng = np.random.default_rng(draw)
    inits = np.stack([digits[rng.choice(len(digits), 10, replace=False)] for _ in range(3)])
    runs = [sklearn_kmeans(digits, init=init.astype(np.float64), n_init=1) for init in inits]
    theirs = min(runs, key=lambda run: run.inertia_)
    ours = kmeans_jax(digits, init=inits)
    np.testing.assert_array_equal(ours.labels, theirs.labels_)
    np.testing.assert_allclose(ours.inertia, theirs.inertia_, rtol=1e-4)
    np.testing.assert_allclose(ours.centers, theirs.cluster_centers_, rtol=1e-4, atol=1e-5)
    assert ours.n_iter == theirs.n_iter_


def test_blocks_of_rows_give_the_same_result(blobs):
    """The row-blocked path (padded last block) equals the one-block path."""
    x = blobs[0]
    whole = kmeans_jax(x, seed=3)
    blocked = kmeans_jax(x, seed=3, chunk_rows=300)  # 7 blocks of 286, 2 padded rows
    np.testing.assert_array_equal(blocked.labels, whole.labels)
    np.testing.assert_allclose(blocked.centers, whole.centers, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(blocked.inertia, whole.inertia, rtol=1e-5)
    assert blocked.n_iter == whole.n_iter


def test_same_seed_same_result_and_accepts_device_arrays(blobs):
    x = blobs[0]
    first = kmeans_jax(x, seed=5)
    again = kmeans_jax(jax.numpy.asarray(x), seed=5)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert first.inertia == again.inertia


def test_new_data_of_same_shape_does_not_recompile(blobs):
    x = blobs[0]
    kmeans_jax(x, seed=0)
    sizes = jax_kmeans.compiled_programs()
    shuffled = np.random.default_rng(1).permutation(x)
    kmeans_jax(shuffled, seed=7, tol=1e-3)
    kmeans_jax(shuffled + 1.0, seed=8)
    assert jax_kmeans.compiled_programs() == sizes


def test_one_cluster_is_the_mean(blobs):
    x = blobs[0]
    result = kmeans_jax(x, clusters=1, n_init=1)
    np.testing.assert_allclose(result.centers[0], x.mean(0), rtol=1e-5, atol=1e-5)
    assert (result.labels == 0).all()


@pytest.mark.parametrize(
    ("features", "kwargs", "match"),
    [
        (np.zeros((5, 3), np.float32), {"clusters": 6}, "6 clusters is more than the 5 rows"),
        (np.array([[0.0, 1.0], [np.nan, 2.0]]), {"clusters": 1}, "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), {"clusters": 1}, "NaN or infinity"),
        (np.zeros(5, np.float32), {"clusters": 1}, "a 2-D array"),
        (np.zeros((5, 3), np.int64), {"clusters": 1}, "must be floats"),
        (np.zeros((0, 3), np.float32), {"clusters": 1}, "empty"),
        (np.zeros((5, 3), np.float32), {"clusters": 0}, "clusters must be at least 1"),
        (np.zeros((5, 3), np.float32), {"clusters": 2, "n_init": 0}, "n_init must be"),
        (np.zeros((5, 3), np.float32), {"clusters": 2, "max_iter": 0}, "max_iter must be"),
        (np.zeros((5, 3), np.float32), {"clusters": 2, "tol": -1.0}, "tol must be"),
        (np.zeros((5, 3), np.float32), {"clusters": 2, "chunk_rows": 0}, "chunk_rows must"),
        (np.zeros((5, 3), np.float32), {"clusters": 2, "init": np.zeros((3, 3))}, "init must"),
    ],
)
def test_bad_input_raises_jaxae_error(features, kwargs, match):
    with pytest.raises(JaxaeError, match=match):
        kmeans_jax(features, **kwargs)
