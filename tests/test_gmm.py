"""gmm and umap-gmm: reproducible for a seed, predict their own labels, no pickle needed.

umap-gmm is tested with both UMAP backends, the default (JAX) and umap-learn; the
umap-learn tests pay numba's compilation once (about 15 s for the fit and 6 s for
``transform`` on first use in a process); the data is kept tiny.
"""

import sys

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from jaxae.cluster import GMMFit, fit_gmm, fit_umap_gmm, gmm_arrays, gmm_from_arrays
from jaxae.cluster.umap_gmm import UMAP_MISSING
from jaxae.errors import JaxaeError


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=300, n_features=12, centers=4, cluster_std=1.0, random_state=0)
    return x, y


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gmm_predicts_its_labels_and_is_seeded(blobs, covariance_type):
    x, y = blobs
    fit = fit_gmm(x, clusters=4, n_init=2, seed=3, covariance_type=covariance_type)
    assert fit.labels.shape == (300,) and fit.labels.dtype == np.int32
    assert adjusted_rand_score(y, fit.labels) == 1.0
    np.testing.assert_array_equal(fit.predict(x), fit.labels)
    again = fit_gmm(x, clusters=4, n_init=2, seed=3, covariance_type=covariance_type)
    np.testing.assert_array_equal(again.model.means_, fit.model.means_)


def test_gmm_from_arrays_predicts_as_the_original(blobs):
    x, _ = blobs
    fit = fit_gmm(x, clusters=4, seed=0)
    arrays = gmm_arrays(fit.model)
    assert all(a.dtype != object for a in arrays.values())  # savez without pickle
    rebuilt = gmm_from_arrays(arrays)
    np.testing.assert_array_equal(rebuilt.precisions_cholesky_, fit.model.precisions_cholesky_)
    new = x + np.random.default_rng(0).normal(scale=0.5, size=x.shape)
    np.testing.assert_array_equal(rebuilt.predict(new), fit.model.predict(new))
    np.testing.assert_allclose(rebuilt.predict_proba(new), fit.model.predict_proba(new))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clusters": 400}, "400 clusters is more than the 300 samples"),
        ({"n_init": 0}, "n_init must be at least 1"),
        ({"covariance_type": "banded"}, "unknown covariance_type 'banded'"),
        ({"reg_covar": -1.0}, "reg_covar must be at least 0"),
    ],
)
def test_gmm_bad_values_give_one_line(blobs, kwargs, match):
    with pytest.raises(JaxaeError, match=match) as error:
        fit_gmm(blobs[0], **kwargs)
    assert "\n" not in str(error.value)


def test_missing_umap_learn_gives_one_line(blobs, monkeypatch):
    # None in sys.modules makes `import umap` raise ImportError, as when it is absent.
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(JaxaeError) as error:
        fit_umap_gmm(blobs[0], clusters=4, backend="umap-learn")
    assert (
        str(error.value)
        == UMAP_MISSING
        == "umap-gmm needs umap-learn: pip install 'jaxae[umap]', or pass umap.backend=jax"
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_neighbors": 300}, "n_neighbors=300 needs more than the 300 samples"),
        ({"n_neighbors": 1}, "n_neighbors must be at least 2"),
        ({"n_components": 0}, "n_components must be at least 1"),
        ({"min_dist": -0.1}, "min_dist must be at least 0"),
        ({"metric": 3}, "metric must be a name"),
        ({"n_epochs": 0}, "n_epochs must be at least 1"),
    ],
)
def test_umap_gmm_bad_values_give_one_line(blobs, kwargs, match):
    with pytest.raises(JaxaeError, match=match) as error:
        fit_umap_gmm(blobs[0], clusters=4, **kwargs)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module", params=["jax", "umap-learn"])
def umap_fit(blobs, request):
    if request.param == "umap-learn":
        pytest.importorskip("umap")
    return fit_umap_gmm(  # 100 layout epochs: blobs need no more
        blobs[0], clusters=4, n_init=2, seed=0, n_epochs=100, backend=request.param
    )


def test_umap_gmm_finds_the_blobs_and_is_reproducible(blobs, umap_fit):
    x, y = blobs
    assert umap_fit.embedding.shape == (300, 10)
    assert adjusted_rand_score(y, umap_fit.labels) == 1.0
    backend = "jax" if umap_fit.arrays() is not None else "umap-learn"
    again = fit_umap_gmm(x, clusters=4, n_init=2, seed=0, n_epochs=100, backend=backend)
    np.testing.assert_array_equal(again.embedding, umap_fit.embedding)
    np.testing.assert_array_equal(again.labels, umap_fit.labels)


def test_umap_gmm_predict(blobs, umap_fit):
    x, _ = blobs
    # On the training codes both backends hand back the training embedding: exact.
    np.testing.assert_array_equal(umap_fit.predict(x), umap_fit.labels)
    # On codes it has not seen, transform optimises them among their neighbours.
    moved = x[:60] + np.random.default_rng(0).normal(scale=1e-3, size=(60, x.shape[1]))
    assert (umap_fit.predict(moved) == umap_fit.labels[:60]).mean() >= 0.99
    with pytest.raises(JaxaeError, match="11 columns but the clustering was fitted on 12"):
        umap_fit.predict(x[:, :11])


def test_the_device_mixture_is_carried_as_a_saved_gaussian_mixture(blobs):
    from jaxae.cluster.gmm import fit_mixture

    x, y = blobs
    fit = fit_mixture(x, clusters=4, n_init=2, seed=0, backend="jax")
    assert adjusted_rand_score(y, fit.labels) == 1.0
    np.testing.assert_array_equal(fit.predict(x), fit.labels)  # what a run saves predicts
    back = GMMFit.from_arrays(fit.arrays())
    np.testing.assert_array_equal(back.predict(x), fit.labels)
    with pytest.raises(JaxaeError, match="unknown backend 'torch'"):
        fit_mixture(x, clusters=4, n_init=1, seed=0, backend="torch")
