"""jax_gmm against scikit-learn's GaussianMixture (float64, the reference), on blobs."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from jaxae import loop
from jaxae.cluster import jax_gmm
from jaxae.cluster.gmm import gmm_from_arrays
from jaxae.cluster.jax_gmm import GMMResult, fit_gmm_jax, predict, predict_proba
from jaxae.cluster.jax_kmeans import kmeans_jax
from jaxae.errors import JaxaeError
from jaxae.loop import Stopped, drive

K = 6
TYPES = ["full", "diag"]


@pytest.fixture(scope="module")
def blobs():
    """Six separated blobs of different spreads in 5 dimensions."""
    x, y = make_blobs(
        n_samples=900, n_features=5, centers=K, cluster_std=[1, 2, 0.5, 1, 1.5, 1], random_state=0
    )
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def overlapping():
    """Six overlapping blobs: EM needs tens of iterations."""
    x, _ = make_blobs(n_samples=900, n_features=5, centers=K, cluster_std=3.0, random_state=2)
    return x.astype(np.float32)


def start_labels(x):
    return jnp.asarray(kmeans_jax(x, clusters=K, n_init=1, seed=1).labels)[None]


def em_for(x, starts, covariance_type, tol=1e-3, max_iter=100):
    """The EM of fit_gmm_jax from ``(R, N)`` start labels (reg_covar 1e-6)."""
    return jax_gmm.EM(
        jnp.asarray(x), starts, tol, 1e-6, clusters=K, max_iter=max_iter,
        diag=covariance_type == "diag",
    )  # fmt: skip


def in_units(em, params):
    """A start's scaled (weights, means, covariances) in the features' units, float64."""
    centre, scale = (np.asarray(a, np.float64) for a in (em.centre, em.scale))
    w, m, c = (np.asarray(p, np.float64)[0] for p in params)
    return w, m * scale + centre, c * scale**2


@pytest.mark.parametrize("covariance_type", TYPES)
def test_em_matches_sklearn_from_the_same_start(overlapping, covariance_type):
    x = overlapping
    em = em_for(x, start_labels(x), covariance_type, tol=1e-4)
    start = em.init()
    w0, m0, c0 = in_units(em, start[0])
    state, _ = em.run(start, 0, 100)
    _, weights, means, covs, bound, n_iter, converged = em.best(state)
    reference = GaussianMixture(
        K,
        covariance_type=covariance_type,
        weights_init=w0 / w0.sum(),  # float64-normalised, as scikit-learn checks
        means_init=m0,
        precisions_init=np.linalg.inv(c0) if covariance_type == "full" else 1.0 / c0,
        tol=1e-4,
        reg_covar=1e-6 * float(em.scale) ** 2,  # ours is in units of the mean variance
    ).fit(x.astype(np.float64))
    assert int(n_iter) == reference.n_iter_ and bool(converged) == reference.converged_
    assert int(n_iter) >= 5  # a real trajectory, not a start that is already a fixed point
    # float32 against float64 over tens of iterations: about 1e-6 of the bound.
    np.testing.assert_allclose(float(bound), reference.lower_bound_, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(weights), reference.weights_, atol=1e-4)
    np.testing.assert_allclose(np.asarray(means), reference.means_, atol=1e-3 * np.abs(x).max())
    np.testing.assert_allclose(np.asarray(covs), reference.covariances_, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_likelihood_never_decreases(overlapping, covariance_type):
    em = em_for(overlapping, start_labels(overlapping), covariance_type, tol=0.0)
    state, history = em.init(), []
    for i in range(100):  # one iteration a call: the bound after each
        state, ran = em.run(state, i, 1)
        assert int(ran) == 1
        history.append(float(state[1][0]))
    history = np.asarray(history)
    assert int(state[2][0]) == 100 and np.isfinite(history).all()
    # EM's guarantee, up to float32 rounding of a mean of 900 log-densities.
    assert (np.diff(history) >= -1e-6 * np.abs(history[1:])).all()
    assert history[-1] > history[0]


@pytest.mark.parametrize("covariance_type", TYPES)
def test_em_in_chunks_is_one_call_bit_for_bit(overlapping, covariance_type):
    x = overlapping
    other = kmeans_jax(x, clusters=K, n_init=1, seed=2).labels
    starts = jnp.concatenate([start_labels(x), jnp.asarray(other)[None]])
    em = em_for(x, starts, covariance_type, tol=1e-4)
    whole, iterations = em.run(em.init(), 0, 100)
    assert 5 < int(iterations) < 100  # the runs converge at different iterations, before max_iter
    for sizes in ([3] * 40, [1, 7, 2, 50, 40]):
        state, done = em.init(), 0
        for count in sizes:
            state, ran = em.run(state, done, count)
            done += int(ran)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(whole), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # and through the driver, polled between calls
    driven, done = drive(em.run, em.init(), start=0, total=100, chunk=100, observe=em.observe,
                         unit="iteration", what="EM", progress=False)  # fmt: skip
    assert done == int(iterations)
    for a, b in zip(jax.tree.leaves(driven), jax.tree.leaves(whole), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_stop_during_em_raises_stopped(overlapping, monkeypatch):
    monkeypatch.setattr(loop, "CALL_SECONDS", 0.0)  # one iteration a call

    def should_stop():  # once EM runs (the driver is on the stack), not in the starts
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name != "drive":
            frame = frame.f_back
        return frame is not None

    # After the first call, or beside it while it compiles (jaxae.loop.polled).
    stopped = r"the mixture's EM stopped (after iteration 1|inside a call)$"
    with pytest.raises(Stopped, match=stopped) as info:
        fit_gmm_jax(overlapping, clusters=K, n_init=2, tol=0.0, should_stop=should_stop)
    assert info.value.interrupted


@pytest.mark.parametrize("covariance_type", TYPES)
def test_fit_finds_sklearns_optimum_on_separated_blobs(blobs, covariance_type):
    x, y = blobs
    result = fit_gmm_jax(x, clusters=K, n_init=3, covariance_type=covariance_type)
    assert isinstance(result, GMMResult)
    assert result.labels.shape == (900,) and result.labels.dtype == np.int32
    assert result.means.shape == (K, 5) and result.weights.shape == (K,)
    assert result.covariances.shape == ((K, 5, 5) if covariance_type == "full" else (K, 5))
    np.testing.assert_allclose(result.weights.sum(), 1.0, rtol=1e-6)
    assert adjusted_rand_score(y, result.labels) == 1.0
    reference = GaussianMixture(K, covariance_type=covariance_type, n_init=3, random_state=0).fit(
        x.astype(np.float64)
    )
    np.testing.assert_allclose(result.lower_bound, reference.lower_bound_, rtol=1e-5)
    assert result.converged and 1 <= result.n_iter <= 100


def test_best_start_is_the_highest_lower_bound(overlapping):
    x = jnp.asarray(overlapping)
    starts = jnp.stack(
        [jnp.asarray(kmeans_jax(x, clusters=K, n_init=1, seed=s).labels) for s in range(3)]
    )

    def fit(s):
        em = em_for(x, s, "full")
        return em.best(em.run(em.init(), 0, 100)[0])

    bounds = [float(fit(starts[i : i + 1])[4]) for i in range(3)]
    assert len(set(bounds)) > 1  # the starts differ, so the choice matters
    labels, *_, bound, _, _ = fit(starts)
    # Run alone or batched under vmap, a start's float32 bound moves in its last bits.
    np.testing.assert_allclose(float(bound), max(bounds), rtol=1e-6)
    assert all(b < float(bound) - 1e-4 for b in bounds if b != max(bounds))
    best = int(np.argmax(bounds))
    alone = np.asarray(fit(starts[best : best + 1])[0])
    assert (np.asarray(labels) == alone).mean() > 0.99


@pytest.mark.parametrize("covariance_type", TYPES)
def test_predict_matches_the_fit_and_sklearn(overlapping, covariance_type):
    x = overlapping
    result = fit_gmm_jax(x, clusters=K, covariance_type=covariance_type)
    np.testing.assert_array_equal(
        np.asarray(predict(x, result.weights, result.means, result.covariances)), result.labels
    )
    proba = np.asarray(predict_proba(x, result.weights, result.means, result.covariances))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    reference = gmm_from_arrays(
        {
            "weights": result.weights,
            "means": result.means,
            "covariances": result.covariances,
            "covariance_type": np.asarray(covariance_type),
        }
    )
    np.testing.assert_allclose(proba, reference.predict_proba(x.astype(np.float64)), atol=1e-4)


def test_collapsed_components_stay_definite_and_a_failure_names_reg_covar(monkeypatch):
    # Six distinct rows, repeated: each component's covariance is exactly 0.
    x = np.repeat(np.eye(6, 5, dtype=np.float32) * 10.0, 150, axis=0)
    # reg_covar=0 still has the float32 floor: the components stay definite.
    assert fit_gmm_jax(x, clusters=K, reg_covar=0.0).converged
    # Without the floor and the retries every factor fails, and the message says what to do.
    monkeypatch.setattr(jax_gmm, "_REG_FLOOR", 0.0)
    monkeypatch.setattr(jax_gmm, "_REG_RETRIES", 0)
    with pytest.raises(jax_gmm.NotPositiveDefinite, match=r"larger reg_covar .*reg_covar=0.0001"):
        fit_gmm_jax(x, clusters=K, reg_covar=0.0)
    # Without the floor, the retries alone reach a definite covariance from 1e-30.
    monkeypatch.setattr(jax_gmm, "_REG_RETRIES", 40)
    assert np.isfinite(fit_gmm_jax(x, clusters=K, reg_covar=1e-30).lower_bound)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (dict(clusters=0), "clusters"),
        (dict(clusters=901), "clusters=900"),
        (dict(n_init=0), "n_init"),
        (dict(covariance_type="tied"), "covariance_type"),
        (dict(max_iter=0), "max_iter"),
        (dict(tol=-1.0), "tol"),
        (dict(reg_covar=-1e-6), "reg_covar"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_options_raise_one_line(blobs, kwargs, needle):
    with pytest.raises(JaxaeError, match=needle) as info:
        fit_gmm_jax(blobs[0], **kwargs)
    assert "\n" not in str(info.value)


def test_bad_features_raise():
    with pytest.raises(JaxaeError, match="features"):
        fit_gmm_jax(np.zeros((10,), np.float32))
    with pytest.raises(JaxaeError, match="non-finite"):
        fit_gmm_jax(np.full((10, 2), np.nan, np.float32), clusters=2)
