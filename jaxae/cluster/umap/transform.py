"""UMAP's ``transform`` in JAX: new rows embedded among a fixed training embedding.

It follows umap-learn 0.5.12's ``UMAP.transform`` for the Euclidean metric: the k
nearest training rows of each new row, their memberships with
``local_connectivity=0``, a start at their membership-weighted mean embedding, then
epochs at a quarter of the fit's learning rate that pull the row towards its
neighbours and push it from negative samples, the training embedding held still.

What differs, on purpose, so that a row's embedding is a function of the row and
the fit alone, the same bits whatever batch it comes in (on one CPU):

* The schedule's scale. umap-learn fires an edge every ``max / weight`` epochs,
  ``max`` the largest membership of the whole batch, and drops the edges below
  ``max / n_epochs``: one row alone gets a different schedule from the same row in
  a batch. Here ``max`` is 1, the largest a membership can be: an edge fires on
  average ``weight`` times an epoch, as the fit's edges do (whose largest
  membership per row is 1). Every row's memberships beyond its nearest sum to
  ``log2(k)`` (the bandwidth's calibration), so each row gets about as many
  updates as any other. In a large batch umap-learn's ``max`` comes close to 1
  anyway (some new row lies near a training row).
* The epochs. umap-learn runs 100 for up to 10,000 new rows and 30 above; here 100
  for any number (a third of the fit's when the fit was given its epochs), as
  :func:`transform_epochs` says.
* The negative samples. umap-learn draws them per edge, ``r`` at each firing, so
  ``r w`` an epoch on average for an edge of weight ``w``; a new row's edges all
  share the row as their head, so here the row draws for all of them at their
  total rate ``R = r sum(w)``: ``floor((n + 1) R) - floor(n R)`` in epoch ``n``,
  the same number on average, in at most ``r (1 + log2 k) + 1`` slots (the most
  a row with calibrated memberships can need; a degenerate row is held to it).
  The ``s``-th is a hash of the row's float32 bits and ``s``, mixed with
  ``fold_in(key, n)``; not the edge's place in the batch. Identical rows draw
  identically.
* The arithmetic. Rows go through in blocks of ``jaxae._rowwise.BLOCK``, one
  compiled block after another, so every row meets the same shapes (XLA's CPU
  products round a row by the number of rows beside it).

Each epoch computes every edge (those not due masked) and every sample slot:
O(Q (k + S) C) an epoch for Q rows, k neighbours, S = r (1 + log2 k) + 1 slots
(28 for k = 20, r = 5) and C dimensions; memory O(B (k + S) C) per block of B
rows. The neighbour search is O(Q N D) against N training rows of D features. On
this project's 2-core CPU a block of 256 rows costs about 70 ms for 100 epochs
(against 4,000 training codes), so one image alone costs a block.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxae._rowwise import map_blocks, padded_rows
from jaxae.cluster.umap.graph import _memberships, _smooth_knn_dist_jit
from jaxae.cluster.umap.layout import _CLIP, _rdist_terms
from jaxae.cluster.umap.neighbors import _KNN_COLS, _knn_rows
from jaxae.cluster.umap.schedule import _mix32, _sample_rows, _schedule

# umap-learn's transform: a quarter of the fit's learning rate, 5 negative samples
# per positive one, repulsion strength 1.
_ALPHA = 0.25
_NEGATIVE_RATE = 5
_GAMMA = 1.0
# The transform draws from this stream of the seed's key, apart from the fit's draws.
_TRANSFORM_STREAM = 1


def transform_epochs(fit_epochs: int = -1) -> int:
    """The transform's epochs: umap-learn's 100 (it runs 30 above 10,000 new rows; here
    the count never depends on the rows), or a third of the fit's when the fit was
    given its own (``fit_epochs`` >= 0), as umap-learn does."""
    if fit_epochs < 0:
        return 100
    return max(fit_epochs // 3, 1)


def transform_fn(
    x: jax.Array,
    features: jax.Array,
    embedding: jax.Array,
    *,
    n_neighbors: int,
    a: float,
    b: float,
    seed: int,
    n_epochs: int,
) -> jax.Array:
    """``(Q, D)`` new rows -> ``(Q, C)`` float32 embedding, as a pure function.

    What ``UMAPFit.transform`` computes, without validation: the neighbours among
    ``features`` ``(N, D)``, their memberships, the start and the layout against the
    fixed ``embedding`` ``(N, C)``; a row equal to a training row keeps that row's
    embedding. Each row's result depends on the row alone (module docstring), so
    any split of the rows into calls gives the same bits. Jit it with
    ``n_neighbors``, ``a``, ``b``, ``seed`` and ``n_epochs`` static (see
    :func:`transform_epochs`), or call it inside your own jitted function.

    Args:
      x: ``(Q, D)`` new rows (computed in float32).
      features, embedding: the fit's ``(N, D)`` training rows and ``(N, C)`` embedding.
      n_neighbors, a, b, seed: the fit's (``UMAPFit`` fields).
      n_epochs: the layout's epochs, :func:`transform_epochs` of the fit's.

    Returns:
      ``(Q, C)`` float32.
    """
    block = functools.partial(
        transform_block, features=features, embedding=embedding, n_neighbors=n_neighbors,
        a=a, b=b, seed=seed, n_epochs=n_epochs,
    )  # fmt: skip
    return map_blocks(block, jnp.asarray(x, jnp.float32))


_transform = jax.jit(transform_fn, static_argnames=("n_neighbors", "a", "b", "seed", "n_epochs"))


def transform(fit, x: jax.Array) -> np.ndarray:
    """``UMAPFit.transform`` after its checks: ``(Q, D)`` float32 -> ``(Q, C)``.

    The rows are padded to :func:`jaxae._rowwise.padded_rows` (copies of the last),
    so a program compiles once per size bucket, not once per Q."""
    q = x.shape[0]
    x = jnp.pad(x, ((0, padded_rows(q) - q), (0, 0)), mode="edge")
    out = _transform(
        x, jnp.asarray(fit.features), jnp.asarray(fit.embedding), n_neighbors=fit.n_neighbors,
        a=fit.a, b=fit.b, seed=fit.seed, n_epochs=transform_epochs(fit.n_epochs),
    )  # fmt: skip
    return np.asarray(jax.device_get(out))[:q]


def transform_block(x, *, features, embedding, n_neighbors, a, b, seed, n_epochs):
    """:func:`transform_fn` for one block of rows ``(B, D)`` -> ``(B, C)``; every
    row's result from that row alone."""
    k = n_neighbors
    cols = max(min(_KNN_COLS, features.shape[0]), 1)
    rows = x.shape[0]
    indices, distances = _knn_rows(x, features, 0, k=k, rows=rows, cols=cols, self_first=False)
    sigmas, rhos = _smooth_knn_dist_jit(distances, k=float(k), local_connectivity=0.0)
    weights = _memberships(distances, indices, sigmas, rhos, skip_self=False)
    start = _start(weights, indices, embedding)
    # Scale 1 (module docstring): an edge fires every 1 / weight epochs, and those
    # firing less than once in the run are left out.
    kept = weights >= 1.0 / float(n_epochs)
    per_sample = jnp.where(kept, 1.0 / jnp.where(kept, weights, 1.0), jnp.inf)
    # umap-learn draws r negative samples per firing, r times the weight an epoch per
    # edge; the edges share their head, so the row draws for them all at that rate.
    rate = _NEGATIVE_RATE * jnp.sum(jnp.where(kept, weights, 0.0), axis=1)
    key = jax.random.fold_in(jax.random.key(seed), _TRANSFORM_STREAM)
    moved = _layout(
        start, indices, per_sample, rate, _row_hash(x), embedding, key, a=a, b=b,
        n_epochs=n_epochs,
    )  # fmt: skip
    nearest = indices[:, 0]
    # A row equal to a training row keeps its embedding, as umap-learn hands back its
    # embedding for the training data itself: the training rows keep their labels.
    same = jnp.all(x == features[nearest], axis=1)
    return jnp.where(same[:, None], embedding[nearest], moved)


def _row_hash(x: jax.Array) -> jax.Array:
    """``(B,)`` uint32 hash of each row's float32 bits: each word mixed with its
    column, the words xor-ed together (exact in any order), then mixed again."""
    words = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    salt = _mix32(jnp.arange(x.shape[1], dtype=jnp.uint32) * jnp.uint32(0x9E3779B9) + 1)
    mixed = _mix32(words ^ salt[None, :])
    return _mix32(jax.lax.reduce(mixed, np.uint32(0), jax.lax.bitwise_xor, (1,)))


def _layout(start, indices, per_sample, rate, row_hash, reference, key, *, a, b, n_epochs):
    """The epochs of the new rows ``(B, C)`` against the fixed ``reference`` ``(N, C)``.

    Edge ``(i, j)`` (row i, its j-th neighbour) pulls on
    :func:`jaxae.cluster.umap.schedule._schedule`'s closed-form schedule; row i draws
    ``floor((n + 1) rate_i) - floor(n rate_i)`` negative samples in epoch n, at most
    :func:`_sample_slots`. Every update of an epoch is computed from the epoch's
    start (no row moves another, so the order is moot) and summed per row in a
    fixed order.
    """
    k = indices.shape[1]
    slots = _sample_slots(k)
    rank = jnp.arange(slots, dtype=jnp.int32).reshape(1, slots)
    counters = row_hash[:, None] + jnp.arange(slots, dtype=jnp.uint32)[None, :]
    tails = reference[indices]  # (B, k, C)

    def epoch(n, y):
        t = n.astype(jnp.float32)
        alpha = _ALPHA * (1.0 - t / float(n_epochs))
        fires, _ = _schedule(per_sample, n, _NEGATIVE_RATE)
        diff = y[:, None, :] - tails
        positive, safe, power = _rdist_terms(diff, a, b)
        coeff = jnp.where(positive & fires, -2.0 * a * b * (power / safe) / (a * power + 1.0), 0.0)
        pull = jnp.sum(jnp.clip(coeff[..., None] * diff, -_CLIP, _CLIP), axis=1)
        count = jnp.floor((t + 1.0) * rate) - jnp.floor(t * rate)
        samples = _sample_rows(key, n, counters, reference.shape[0])  # (B, slots)
        diff_neg = y[:, None, :] - reference[samples]
        positive, safe, power = _rdist_terms(diff_neg, a, b)
        used = positive & (rank < count[:, None])
        coeff = jnp.where(used, 2.0 * _GAMMA * b / ((0.001 + safe) * (a * power + 1.0)), 0.0)
        push = jnp.sum(jnp.clip(coeff[..., None] * diff_neg, -_CLIP, _CLIP), axis=1)
        return y + alpha * (pull + push)

    return jax.lax.fori_loop(0, n_epochs, epoch, start)


def _sample_slots(k: int) -> int:
    """The most negative samples a row draws in an epoch: ``r`` times the most its
    memberships can sum to, 1 for the nearest plus ``log2(k)`` for the rest (the
    bandwidth's calibration), rounded up, plus one. A row whose bandwidth hit its
    floor (its neighbours all about as far) can sum to more and is held to this."""
    return math.ceil(_NEGATIVE_RATE * (1.0 + math.log2(k))) + 1


def _start(weights, indices, reference):
    """Each new row starts at its neighbours' membership-weighted mean embedding, or
    at the first neighbour of membership 1 (a training row it equals). A row whose
    memberships all underflowed starts at its nearest neighbour's (umap-learn: NaN)."""
    neighbours = reference[indices]  # (B, k, C)
    total = jnp.sum(weights, axis=1)
    mean = (
        jnp.sum(weights[..., None] * neighbours, axis=1) / jnp.where(total > 0, total, 1.0)[:, None]
    )
    exact = weights == 1.0
    first = jnp.argmax(exact, axis=1)
    pick = jnp.take_along_axis(neighbours, first[:, None, None], axis=1)[:, 0]
    use_pick = jnp.any(exact, axis=1) | (total <= 0)
    return jnp.where(use_pick[:, None], pick, mean)
