"""A Gaussian mixture on device: EM with full or diagonal covariances, in float32.

It follows scikit-learn's ``GaussianMixture`` (``sklearn/mixture/_base.py``,
``_gaussian_mixture.py``): each start is the M-step of the one-hot labels of a
k-means run (:func:`jaxae.cluster.jax_kmeans.kmeans_jax`, one k-means++ start per
EM start, as ``init_params="kmeans"``); then E-step, M-step, until the mean
log-likelihood changes by less than ``tol`` or ``max_iter`` iterations pass. The
lower bound of a start is the mean log-likelihood of its data under the parameters
*before* its last M-step, as scikit-learn reports it, and the start with the
highest lower bound wins; labels are never looked at.

The ``n_init`` starts run together under :func:`jax.vmap`, each carrying its own
iteration count and convergence, in one compiled program that runs ``count``
iterations from where the state is (:class:`EM`); :func:`jaxae.loop.drive` calls
it in chunks of a couple of seconds, polling ``should_stop`` between them, and a
run cut into chunks gives the same bits as one call.

Numerics. The features are centred and divided by the root of their mean
variance before EM (the means and covariances are scaled back, the lower bound
shifted by ``-F log scale``), so float32 sums of squares do not cancel and
``reg_covar`` is relative: scikit-learn adds it in the features' units, which in
float32 is below rounding for codes of large variance, and above their variance
for small ones. A covariance is the responsibility-weighted scatter of centred
differences, ``sum_n r_nk (x_n - m_k)(x_n - m_k)^T / N_k``, positive semi-definite
as a Gram matrix, symmetrised against rounding, plus ``r = max(reg_covar, F eps)``
on its diagonal (``eps`` float32's): a Cholesky factor in float32 of a matrix of
unit scale loses about ``F eps`` to rounding, so a smaller ridge is not seen (on
100-dimensional codes of 800 digits, 90 units dead, 1e-6 failed every factor that
scikit-learn's float64 factored). A component whose factor still fails (a few
rows in many dimensions) gets ``10 r``, ``100 r``, ... up to six times, in the
M-step itself, so EM goes on where scikit-learn, in float64, needed nothing. The
floor moves the lower bound by about ``-(F_dead / 2) log(r / reg_covar)`` against
scikit-learn's with the same ``reg_covar``; with the same effective ridge the two
agree (tests/test_gmm.py). Densities use the Cholesky factor ``L``: ``log N(x) =
-(F log 2 pi + |L^-1 (x - m)|^2) / 2 - sum log diag L``, where ``L^-1`` (F x F, one
triangular solve against the identity, scikit-learn's ``precisions_cholesky_``)
multiplies the differences as one matrix product; the covariance itself is never
inverted. Responsibilities are normalised with ``logsumexp``. A start whose bound
still becomes non-finite stops, is never chosen, and if every start fails
:func:`fit_gmm_jax` says to raise ``reg_covar``.

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
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from jaxae._validate import check_choice, check_int, check_real, check_rows
from jaxae.cluster.jax_kmeans import kmeans_jax
from jaxae.errors import JaxaeError
from jaxae.loop import Call, check_stop, drive, polled

COVARIANCE_TYPES = ("full", "diag")
_PRECISION = jax.lax.Precision.HIGHEST
# scikit-learn adds 10 machine epsilons to each component's mass so none is 0.
_MASS_FLOOR = 10 * float(np.finfo(np.float32).eps)
# The least reg_covar per feature, in units of the mean variance (module docstring).
_REG_FLOOR = float(np.finfo(np.float32).eps)
# A covariance whose factor still fails gets 10, 100, ... times reg_covar, this many times.
_REG_RETRIES = 6


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
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
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
      reg_covar: added to every covariance's diagonal, in units of the features'
        mean variance (module docstring), and at least ``F`` float32 epsilons.
      should_stop: polled every couple of seconds of EM (and between the k-means
        starts); True raises :class:`jaxae.loop.Stopped`.
      progress: a progress bar over the EM iterations.

    Returns:
      A :class:`GMMResult`.

    Raises:
      NotPositiveDefinite: every run's covariances stopped being positive definite.
      JaxaeError: for bad features or options.
      jaxae.loop.Stopped: ``should_stop()`` returned True.
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
    starts = []
    for s in seeds:  # each start's k-means is one call: polled beside it
        message = f"the mixture's k-means starts stopped after {len(starts)}"
        start = lambda s=s: kmeans_jax(x, clusters=clusters, n_init=1, seed=int(s)).labels
        starts.append(jnp.asarray(polled(start, should_stop, message)))
        check_stop(should_stop, message)
    diag = covariance_type == "diag"
    em = EM(x, jnp.stack(starts), tol, reg_covar, clusters=clusters, max_iter=max_iter, diag=diag,
            should_stop=should_stop)  # fmt: skip
    state, _ = drive(
        em.run, em.init(), start=0, total=max_iter, chunk=max_iter, observe=em.observe,
        unit="iteration", what="the mixture's EM", progress=progress, should_stop=should_stop,
    )  # fmt: skip
    labels, weights, means, covs, bound, n_iter, converged = jax.device_get(em.best(state))
    if not np.isfinite(bound):
        raise NotPositiveDefinite(
            f"every covariance estimate stopped being positive definite: pass a larger "
            f"reg_covar than {reg_covar} (e.g. reg_covar={max(reg_covar * 100, 1e-4):g})"
        )
    return GMMResult(labels, weights, means, covs, float(bound), int(n_iter), bool(converged))


class NotPositiveDefinite(JaxaeError):
    """Every EM run's covariances stopped being positive definite (``reg_covar`` too small)."""


class EM:
    """The ``n_init`` EM runs of :func:`fit_gmm_jax` as a loop :func:`jaxae.loop.drive` runs.

    ``init()`` is every start's M-step of its one-hot k-means labels; ``run(state,
    first, count)`` runs up to ``count`` more iterations of every run not yet stopped
    (converged, ``max_iter`` reached, or a non-finite bound), one compiled program
    whatever ``count`` is; ``best(state)`` picks the highest lower bound and labels
    the rows, in the features' own units. Each run carries its own iteration count
    and stops itself, so any split of the iterations into calls gives the same bits
    as ``run(init(), 0, max_iter)``.

    Args:
      x: ``(N, F)`` float32 features.
      starts: ``(R, N)`` int32 labels, one start per run.
      tol, reg_covar, clusters, max_iter, diag: as :func:`fit_gmm_jax` takes them
        (``diag``: diagonal covariances).
      should_stop: polled beside each call of ``run`` (:func:`jaxae.loop.polled`): an
        iteration on 70,000 pixels in 784 dimensions takes longer than a poll may wait.
    """

    def __init__(self, x, starts, tol, reg_covar, *, clusters, max_iter, diag, should_stop=None):
        self.x, self.starts, self.max_iter = x, starts, max_iter
        self.should_stop = should_stop
        self.opt = _Options(clusters, max_iter, diag, _REG_RETRIES)
        self.centre, self.scale = _standardise(x)
        f = x.shape[1]
        self.reg = np.float32(max(float(reg_covar), f * _REG_FLOOR))
        self.tol = np.float32(tol)

    def init(self):
        return _em_init(self.x, self.starts, self.centre, self.scale, self.reg, opt=self.opt)

    def run(self, state, first, count):
        del first  # every run counts its own iterations
        call = lambda: jax.block_until_ready(_em_run(
            self.x, state, self.centre, self.scale, self.tol, self.reg, count, opt=self.opt
        ))  # fmt: skip
        return polled(call, self.should_stop, "the mixture's EM stopped inside a call")

    def observe(self, state, ran, first, count) -> Call:
        ran, going = jax.device_get((ran, _going(state, self.max_iter)))
        return Call(int(ran), finished=not bool(np.any(going)))

    def best(self, state):
        return _em_best(self.x, state, self.centre, self.scale, opt=self.opt)


@jax.jit
def _standardise(x):
    """The features' mean ``(F,)`` and the root of their mean variance (1 when every
    feature is constant): EM runs on ``(x - centre) / scale``."""
    centre = jnp.mean(x, axis=0)
    spread = jnp.sqrt(jnp.mean(jnp.square(x - centre[None, :])))
    return centre, jnp.where(spread > 0, spread, 1.0)


class _Options(NamedTuple):
    """EM's static options: K, the most iterations per run, diagonal covariances, and
    how many times a covariance whose factor fails gets ten times more ``reg_covar``."""

    clusters: int
    max_iter: int
    diag: bool
    retries: int


@functools.partial(jax.jit, static_argnames="opt")
def _em_init(x, starts, centre, scale, reg_covar, *, opt: _Options):
    """Every run's state before its first iteration: ``(params, bound, n_iter, converged)``,
    each with a leading run axis."""
    xs = (x - centre[None, :]) / scale
    params = jax.vmap(
        lambda labels: _m_step(xs, jax.nn.one_hot(labels, opt.clusters, dtype=jnp.float32),
                               reg_covar, diag=opt.diag, retries=opt.retries)
    )(starts)  # fmt: skip
    r = starts.shape[0]
    return (
        params,
        jnp.full((r,), -jnp.inf, jnp.float32),
        jnp.zeros((r,), jnp.int32),
        jnp.zeros((r,), bool),
    )


def _going(state, max_iter: int):
    """``(R,)`` whether each run has iterations left: not converged, under ``max_iter``,
    and its bound is not NaN (``-inf`` only before the first iteration)."""
    _, bound, n_iter, converged = state
    return (n_iter < max_iter) & ~converged & ~jnp.isnan(bound)


@functools.partial(jax.jit, static_argnames="opt")
def _em_run(x, state, centre, scale, tol, reg_covar, count, *, opt: _Options):
    """Up to ``count`` EM iterations of every run still going; the new state and the
    iterations run (fewer than ``count`` when every run stopped)."""
    xs = (x - centre[None, :]) / scale

    def one(params, bound):
        log_norm, log_resp = _e_step(xs, *params, diag=opt.diag)
        new = _m_step(xs, jnp.exp(log_resp), reg_covar, diag=opt.diag, retries=opt.retries)
        new_bound = jnp.mean(log_norm)
        new_bound = jnp.where(jnp.isfinite(new_bound), new_bound, jnp.nan)
        return new, new_bound, jnp.abs(new_bound - bound) < tol

    def body(carry):
        i, state = carry
        params, bound, n_iter, converged = state
        going = _going(state, opt.max_iter)
        new, new_bound, now = jax.vmap(one)(params, bound)
        keep = lambda old, new: jnp.where(going.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)
        params = jax.tree.map(keep, params, new)
        state = (params, keep(bound, new_bound), n_iter + going, keep(converged, now))
        return i + 1, state

    ran, state = jax.lax.while_loop(
        lambda c: (c[0] < count) & jnp.any(_going(c[1], opt.max_iter)), body, (jnp.int32(0), state)
    )
    return state, ran


@functools.partial(jax.jit, static_argnames="opt")
def _em_best(x, state, centre, scale, *, opt: _Options):
    """The run with the highest finite lower bound, its labels, and its mixture in the
    features' units (the bound is a density: it moves by ``-F log scale``)."""
    xs = (x - centre[None, :]) / scale
    (weights, means, covs), bounds, n_iters, converged = state
    best = jnp.argmax(jnp.where(jnp.isfinite(bounds), bounds, -jnp.inf))
    weights, means, covs = weights[best], means[best], covs[best]
    labels = jnp.argmax(_weighted_log_prob(xs, weights, means, covs, diag=opt.diag), axis=1)
    bound = bounds[best] - x.shape[1] * jnp.log(scale)
    return (
        labels.astype(jnp.int32),
        weights,
        means * scale + centre[None, :],
        covs * scale**2,
        jnp.where(jnp.isfinite(bounds[best]), bound, jnp.nan),
        n_iters[best],
        converged[best],
    )


def _m_step(x, resp, reg_covar, *, diag: bool, retries: int):
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
        return _definite(cov, reg_covar, retries)

    return weights, means, jax.vmap(scatter, in_axes=(1, 0, 0))(resp, means, mass)


def _definite(cov, reg_covar, retries: int):
    """``cov + r I`` for the first ``r`` of ``reg_covar * 10^j``, ``j = 0 .. retries``,
    whose float32 Cholesky factor is finite (the last when none is)."""
    eye = jnp.eye(cov.shape[0], dtype=cov.dtype)

    def failed(state):
        j, reg = state
        chol = jnp.linalg.cholesky(cov + reg * eye)
        return (j < retries) & ~jnp.all(jnp.isfinite(chol))

    _, reg = jax.lax.while_loop(
        failed, lambda s: (s[0] + 1, s[1] * 10.0), (jnp.int32(0), jnp.asarray(reg_covar))
    )
    return cov + reg * eye


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
