"""A Gaussian mixture on device: EM with full or diagonal covariances, in float32.

It follows scikit-learn's ``GaussianMixture`` (``sklearn/mixture/_base.py``,
``_gaussian_mixture.py``): each start is the M-step of the one-hot labels of a
k-means run (:func:`jaxae.cluster.jax_kmeans.kmeans_jax`, one k-means++ start per
EM start, as ``init_params="kmeans"``); then E-step, M-step, until the mean
log-likelihood changes by less than ``tol`` or ``max_iter`` iterations pass. The
lower bound of a start is the mean log-likelihood of its data under the parameters
*before* its last M-step, as scikit-learn reports it, and the start with the
highest lower bound wins; labels are never looked at.

The ``n_init`` starts run together under :func:`jax.vmap`, each EM loop a
:func:`jax.lax.while_loop`: the host sees one call.

Numerics. The features are centred before EM (the means are shifted back), so
float32 sums of squares do not cancel. A covariance is the responsibility-weighted
scatter of centred differences, ``sum_n r_nk (x_n - m_k)(x_n - m_k)^T / N_k``, which is
positive semi-definite as a Gram matrix, symmetrised against rounding, plus
``reg_covar`` on its diagonal, which makes it positive definite (scikit-learn's
guard). Densities use its Cholesky factor ``L``: ``log N(x) = -(F log 2 pi + |L^-1 (x -
m)|^2) / 2 - sum log diag L``, where ``L^-1`` (F x F, one triangular solve against
the identity, scikit-learn's ``precisions_cholesky_``) multiplies the differences
as one matrix product; the covariance itself is never inverted. Responsibilities
are normalised with ``logsumexp``. Should a factor still fail (a component on a few
identical rows with ``reg_covar=0``), that start stops with a non-finite bound, is
never chosen, and if every start fails :func:`fit_gmm_jax` says to raise ``reg_covar``.

Memory: the E-step holds ``(K, N, F)`` differences, the full M-step ``(K, F, F)``
plus ``(K, N, F)``, per start; time per iteration O(N K F^2) (full) or O(N K F).

Example:
  >>> import numpy as np
  >>> from jaxae.cluster.jax_gmm import fit_gmm_jax, predict
  >>> x = np.random.default_rng(0).normal(size=(400, 3)).astype(np.float32)
  >>> x[:200] += 8.0
  >>> result = fit_gmm_jax(x, clusters=2, n_init=2)
  >>> np.bincount(result.labels).tolist(), result.covariances.shape
  ([200, 200], (2, 3, 3))
  >>> labels = predict(x, result.weights, result.means, result.covariances)
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from jaxae._validate import check_choice, check_int, check_real, check_rows
from jaxae.cluster.jax_kmeans import kmeans_jax
from jaxae.errors import JaxaeError

COVARIANCE_TYPES = ("full", "diag")
_PRECISION = jax.lax.Precision.HIGHEST
# scikit-learn adds 10 machine epsilons to each component's mass so none is 0.
_MASS_FLOOR = 10 * float(np.finfo(np.float32).eps)


class GMMResult(NamedTuple):
    """The best of the ``n_init`` EM runs (highest lower bound), as host arrays.

    Attributes:
      labels: ``(N,)`` int32 most probable component of each row.
      weights: ``(K,)`` float32 mixing weights, summing to 1.
      means: ``(K, F)`` float32.
      covariances: ``(K, F, F)`` (full) or ``(K, F)`` (diag) float32, as scikit-learn.
      lower_bound: mean log-likelihood per row (scikit-learn's ``lower_bound_``).
      n_iter: EM iterations of the best run.
      converged: whether it stopped on ``tol`` before ``max_iter``.
    """

    labels: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    lower_bound: float
    n_iter: int
    converged: bool


def fit_gmm_jax(
    features: np.ndarray | jax.Array,
    *,
    clusters: int = 10,
    n_init: int = 1,
    seed: int = 0,
    covariance_type: str = "full",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
) -> GMMResult:
    """Fits a ``clusters``-component Gaussian mixture to ``(N, F)`` features by EM.

    Args:
      features: ``(N, F)`` finite floats (computed in float32).
      clusters: K, 1 to N.
      n_init: EM runs from k-means starts (k-means seeds drawn from ``seed``); the
        highest lower bound wins.
      seed: seed of the k-means starts.
      covariance_type: ``"full"`` or ``"diag"``.
      max_iter: most EM iterations per run.
      tol: stop when the mean log-likelihood changes by less than this.
      reg_covar: added to every covariance's diagonal.

    Returns:
      A :class:`GMMResult`.

    Raises:
      JaxaeError: for bad features or options, or when every run's covariances
        stopped being positive definite.
    """
    features = check_rows("features", features, floats_only=True, allow_images=False)
    n = features.shape[0]
    for name, value in (("clusters", clusters), ("n_init", n_init), ("max_iter", max_iter)):
        check_int(name, value, minimum=1)
    if clusters > n:
        raise JaxaeError(
            f"{clusters} clusters is more than the {n} rows: pass clusters={n} or less"
        )
    check_int("seed", seed, minimum=0)
    check_choice("covariance_type", covariance_type, COVARIANCE_TYPES)
    check_real("tol", tol, minimum=0)
    check_real("reg_covar", reg_covar, minimum=0)

    x = jnp.asarray(features, jnp.float32)
    seeds = np.random.SeedSequence(seed).generate_state(n_init)
    starts = jnp.stack(
        [jnp.asarray(kmeans_jax(x, clusters=clusters, n_init=1, seed=int(s)).labels) for s in seeds]
    )
    labels, weights, means, covs, bound, n_iter, converged = jax.device_get(
        _fit(
            x,
            starts,
            np.float32(tol),
            np.float32(reg_covar),
            clusters=clusters,
            max_iter=max_iter,
            diag=covariance_type == "diag",
        )
    )
    if not np.isfinite(bound):
        raise JaxaeError(
            f"every covariance estimate stopped being positive definite: pass a larger "
            f"reg_covar than {reg_covar} (e.g. reg_covar={max(reg_covar * 100, 1e-4):g})"
        )
    return GMMResult(labels, weights, means, covs, float(bound), int(n_iter), bool(converged))


@functools.partial(jax.jit, static_argnames=("clusters", "max_iter", "diag"))
def _fit(x, starts, tol, reg_covar, *, clusters: int, max_iter: int, diag: bool):
    """Every start's EM, the best by lower bound, and its labels."""
    mean = jnp.mean(x, axis=0)
    xc = x - mean[None, :]

    def one(labels):
        resp = jax.nn.one_hot(labels, clusters, dtype=jnp.float32)
        params = _m_step(xc, resp, reg_covar, diag=diag)
        params, bound, n_iter, converged, _ = _em(xc, params, tol, reg_covar, max_iter, diag=diag)
        return params, bound, n_iter, converged

    (weights, means, covs), bounds, n_iters, converged = jax.vmap(one)(starts)
    best = jnp.argmax(jnp.where(jnp.isfinite(bounds), bounds, -jnp.inf))
    weights, means, covs = weights[best], means[best], covs[best]
    log_prob = _weighted_log_prob(xc, weights, means, covs, diag=diag)
    labels = jnp.argmax(log_prob, axis=1).astype(jnp.int32)
    return (
        labels,
        weights,
        means + mean[None, :],
        covs,
        bounds[best],
        n_iters[best],
        converged[best],
    )


def _em(x, params, tol, reg_covar, max_iter: int, *, diag: bool):
    """EM from ``params`` (weights, means, covariances): the final parameters, the
    lower bound, iterations, convergence, and ``(max_iter,)`` bounds per iteration
    (NaN after the last)."""

    def step(state):
        it, params, bound, _, history = state
        log_norm, log_resp = _e_step(x, *params, diag=diag)
        new = _m_step(x, jnp.exp(log_resp), reg_covar, diag=diag)
        new_bound = jnp.mean(log_norm)
        converged = jnp.abs(new_bound - bound) < tol
        return it + 1, new, new_bound, converged, history.at[it].set(new_bound)

    def going(state):
        it, _, bound, converged, _ = state
        # -inf only before the first iteration; NaN (a failed factor) stops the run.
        return (it < max_iter) & ~converged & ~jnp.isnan(bound)

    history = jnp.full((max_iter,), jnp.nan, jnp.float32)
    start = (jnp.int32(0), params, jnp.float32(-jnp.inf), jnp.bool_(False), history)
    n_iter, params, bound, converged, history = jax.lax.while_loop(going, step, start)
    bound = jnp.where(jnp.isfinite(bound), bound, jnp.nan)
    return params, bound, n_iter, converged, history


def _m_step(x, resp, reg_covar, *, diag: bool):
    """Weights ``(K,)``, means ``(K, F)`` and covariances from responsibilities ``(N, K)``."""
    mass = jnp.sum(resp, axis=0) + _MASS_FLOOR
    means = jnp.dot(resp.T, x, precision=_PRECISION) / mass[:, None]
    weights = mass / jnp.sum(mass)

    def scatter(r, m, nk):
        diff = x - m[None, :]
        if diag:
            return jnp.dot(r, diff * diff, precision=_PRECISION) / nk + reg_covar
        cov = jnp.dot((diff * r[:, None]).T, diff, precision=_PRECISION) / nk
        cov = 0.5 * (cov + cov.T)  # symmetric to the last bit before the factorisation
        return cov + reg_covar * jnp.eye(x.shape[1], dtype=jnp.float32)

    return weights, means, jax.vmap(scatter, in_axes=(1, 0, 0))(resp, means, mass)


def _log_gaussian(x, means, covs, *, diag: bool):
    """``(N, K)`` log-densities of rows ``x`` under each component."""
    f = x.shape[1]

    def one(m, cov):
        diff = x - m[None, :]
        if diag:
            return -0.5 * jnp.sum(diff * diff / cov[None, :], axis=1) - 0.5 * jnp.sum(jnp.log(cov))
        chol = jnp.linalg.cholesky(cov)
        # L^-1 once (F x F), then one matrix product for the N rows: a triangular
        # solve with N right-hand sides took 15 times as long on a CPU.
        inv_chol = solve_triangular(chol, jnp.eye(f, dtype=chol.dtype), lower=True)
        z = jnp.dot(diff, inv_chol.T, precision=_PRECISION)
        return -0.5 * jnp.sum(z * z, axis=1) - jnp.sum(jnp.log(jnp.diagonal(chol)))

    return jax.vmap(one, out_axes=1)(means, covs) - 0.5 * f * math.log(2 * math.pi)


def _weighted_log_prob(x, weights, means, covs, *, diag: bool):
    return _log_gaussian(x, means, covs, diag=diag) + jnp.log(weights)[None, :]


def _e_step(x, weights, means, covs, *, diag: bool):
    """``(N,)`` log-likelihood of each row and ``(N, K)`` log-responsibilities."""
    log_prob = _weighted_log_prob(x, weights, means, covs, diag=diag)
    log_norm = jax.scipy.special.logsumexp(log_prob, axis=1)
    return log_norm, log_prob - log_norm[:, None]


@jax.jit
def predict_proba(
    features: jax.Array, weights: jax.Array, means: jax.Array, covariances: jax.Array
) -> jax.Array:
    """``(N, K)`` float32 responsibilities of ``(N, F)`` rows under a fitted mixture.

    Pure and jittable; full covariances ``(K, F, F)`` or diagonal ``(K, F)`` are told
    apart by their rank. No validation: check shapes before calling.
    """
    x = jnp.asarray(features, jnp.float32)
    diag = jnp.ndim(covariances) == 2
    mean = jnp.mean(means, axis=0)  # centred as in the fit
    _, log_resp = _e_step(
        x - mean[None, :],
        jnp.asarray(weights, jnp.float32),
        jnp.asarray(means, jnp.float32) - mean[None, :],
        jnp.asarray(covariances, jnp.float32),
        diag=diag,
    )
    return jnp.exp(log_resp)


@jax.jit
def predict(
    features: jax.Array, weights: jax.Array, means: jax.Array, covariances: jax.Array
) -> jax.Array:
    """``(N,)`` int32 most probable component of each row (see :func:`predict_proba`)."""
    return jnp.argmax(predict_proba(features, weights, means, covariances), axis=1).astype(
        jnp.int32
    )
