"""UMAP's fuzzy simplicial set: the neighbours' memberships and their union.

As umap-learn's ``smooth_knn_dist``, ``compute_membership_strengths`` and
``fuzzy_simplicial_set`` (``umap_.py``):

1. Per row, ``rho`` (distance to the nearest non-identical neighbour, for
   ``local_connectivity=1``) and ``sigma`` by 64 steps of bisection until the
   memberships sum to ``log2(k)`` within 1e-5; ``sigma`` is floored at 1e-3 times
   the row's mean distance (``smooth_knn_dist``). Vectorised over rows, on device,
   in float32 (umap-learn bisects in float64: on 400 digits the sigmas agree to
   4e-6 relative, the rhos exactly).
2. Memberships ``exp(-(d - rho) / sigma)``, then the fuzzy union
   ``A + A^T - A * A^T`` on the host with ``scipy.sparse``: the number of edges
   depends on the data (a dynamic shape), the work is O(N k), and doing it as
   umap-learn does makes the graph equal to its graph, value for value.
3. Edges below ``max / n_epochs`` dropped (:func:`_prune`): they would fire less
   than once in the layout.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

# umap-learn's constants (umap_.py): bisection tolerance and the floor of sigma.
_SMOOTH_K_TOLERANCE = 1e-5
_MIN_K_DIST_SCALE = 1e-3
_BISECTION_STEPS = 64
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@functools.partial(jax.jit, static_argnames=("k", "local_connectivity"))
def _smooth_knn_dist_jit(distances, *, k: float, local_connectivity: float):
    target = math.log2(k)
    mean_all = jnp.mean(distances)
    index = math.floor(local_connectivity)
    fraction = local_connectivity - index

    def one_row(dist):
        positive = dist > 0.0
        count = jnp.sum(positive)
        zeros = dist.shape[0] - count  # sorted rows: the zero distances come first
        nonzero = lambda i: dist[jnp.clip(zeros + i, 0, dist.shape[0] - 1)]
        if index > 0:
            rho = nonzero(index - 1)
            if fraction > _SMOOTH_K_TOLERANCE:
                rho = rho + fraction * (nonzero(index) - nonzero(index - 1))
        else:
            rho = fraction * nonzero(0)
        rho = jnp.where(count >= local_connectivity, rho, jnp.where(count > 0, jnp.max(dist), 0.0))
        rest = dist[1:] - rho  # umap-learn's sum leaves out the first neighbour

        def step(_, state):
            lo, hi, mid, done = state
            total = jnp.sum(jnp.where(rest > 0, jnp.exp(-(rest / mid)), 1.0))
            done = done | (jnp.abs(total - target) < _SMOOTH_K_TOLERANCE)
            high = total > target
            new_lo = jnp.where(high, lo, mid)
            new_hi = jnp.where(high, mid, hi)
            doubled = jnp.where(hi >= _FLOAT32_MAX, mid * 2.0, (new_lo + new_hi) / 2.0)
            new_mid = jnp.where(high, (new_lo + new_hi) / 2.0, doubled)
            keep = lambda old, new: jnp.where(done, old, new)
            return keep(lo, new_lo), keep(hi, new_hi), keep(mid, new_mid), done

        start = (jnp.float32(0), jnp.float32(_FLOAT32_MAX), jnp.float32(1), jnp.bool_(False))
        sigma = jax.lax.fori_loop(0, _BISECTION_STEPS, step, start)[2]
        floor = _MIN_K_DIST_SCALE * jnp.where(rho > 0.0, jnp.mean(dist), mean_all)
        return jnp.maximum(sigma, floor), rho

    return jax.vmap(one_row)(distances)


def _smooth_knn_dist(distances, k: float, local_connectivity: float):
    """umap-learn's ``smooth_knn_dist`` (bandwidth 1): ``(N,)`` sigmas and rhos.

    ``distances`` ``(N, k)`` float32, each row ascending.
    """
    return _smooth_knn_dist_jit(distances, k=k, local_connectivity=local_connectivity)


@functools.partial(jax.jit, static_argnames="skip_self")
def _memberships(distances, indices, sigmas, rhos, *, skip_self: bool):
    """``(N, k)`` membership of each neighbour (``compute_membership_strengths``)."""
    excess = distances - rhos[:, None]
    safe_sigma = jnp.where(sigmas > 0.0, sigmas, 1.0)[:, None]
    near = (excess <= 0.0) | (sigmas == 0.0)[:, None]
    weights = jnp.where(near, 1.0, jnp.exp(-(excess / safe_sigma)))
    if skip_self:
        own = jnp.arange(indices.shape[0], dtype=indices.dtype)[:, None]
        weights = jnp.where(indices == own, 0.0, weights)
    return weights


def _fuzzy_union(indices: np.ndarray, weights: np.ndarray, n: int) -> scipy.sparse.coo_matrix:
    """The symmetric ``A + A^T - A * A^T`` of the directed memberships, as COO, float32."""
    rows = np.repeat(np.arange(n, dtype=np.int32), indices.shape[1])
    a = scipy.sparse.coo_matrix(
        (weights.reshape(-1).astype(np.float32), (rows, indices.reshape(-1))), shape=(n, n)
    ).tocsr()
    a.eliminate_zeros()
    t = a.transpose().tocsr()
    union = a + t - a.multiply(t)
    union = scipy.sparse.coo_matrix(union)
    union.eliminate_zeros()
    return union


def _prune(graph: scipy.sparse.coo_matrix, n_epochs: int) -> scipy.sparse.coo_matrix:
    """Drops edges below ``max / n_epochs`` (they would fire less than once)."""
    graph = graph.tocoo(copy=True)
    graph.sum_duplicates()
    graph.data[graph.data < graph.data.max() / float(n_epochs)] = 0.0
    graph.eliminate_zeros()
    return graph
