"""The refinement guard's signals: is a DEC or IDEC refinement making its clusters worse?

At every target update (``RefineConfig.guard``) a refinement's labels are compared,
without labels of the data, with the clusters it started from, and the models
refined together are compared with one another; when a signal fires, the model
stops and the run keeps its start (:func:`jaxae.cluster.refine.keep_start`).
Thresholds chosen on MNIST and Fashion-MNIST together, from the traces of
``bench/studies/refine_trace.py`` (docs/refinement-guard.md).

Per model (:func:`degeneration`):

- ``unbalanced``: the effective number of clusters, ``exp(-sum s log s)`` of the
  cluster shares s, falls more than ``GUARD_BALANCE`` below the start's (clusters
  absorbing others, the classic DEC collapse);
- ``empty``: a cluster keeps less than ``GUARD_EMPTY`` of its starting share;
- ``moved``: more than ``GUARD_MOVED`` of the labels left their starting cluster.

Across the models of a run (:func:`mean_agreement`), when there are at least two:

- ``disagree``: the seeds' mean agreement (adjusted Rand index between every two
  models' labels) falls more than ``GUARD_AGREEMENT`` below what it was after the
  first target update (``jaxae.cluster.dec``, ``_compare_models``). On
  digits the refinements of different seeds move towards the same clusters; where
  the KL target sharpens clusters the data does not hold (clothes), each seed
  drifts its own way, slowly, with balanced shares, and the per-model signals see
  nothing until the clusters are already worse. The seeds drifting apart is the
  sign the refinement is not finding structure, so every model keeps its start.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

GUARD_SIGNALS = ("unbalanced", "empty", "moved", "disagree")
# "unbalanced": how many effective clusters may be lost against the start.
GUARD_BALANCE = 0.65
# "empty": the least fraction of its starting share a cluster may keep.
GUARD_EMPTY = 0.1
# "moved": the largest share of labels that may leave their starting cluster.
GUARD_MOVED = 0.3
# "disagree": how far the models' mean adjusted Rand index may fall below its first value.
GUARD_AGREEMENT = 0.05


def degeneration(labels: jax.Array, start_labels: jax.Array, clusters: int) -> jax.Array:
    """Which per-model signal ``(N,)`` labels show against the ``(N,)`` start: ``()`` int32.

    0 when the clusters look healthy, else 1 + the index in ``GUARD_SIGNALS`` of
    the first of ``unbalanced``, ``empty``, ``moved`` that fires (module docstring).
    A cluster's identity is its centre, which the refinement moves but never
    renumbers, so labels compare with the start's directly. No ground truth enters.
    """
    n = labels.shape[0]
    shares = jnp.bincount(labels, length=clusters) / n
    start = jnp.bincount(start_labels, length=clusters) / n
    fired = jnp.stack([
        effective_clusters(shares) < effective_clusters(start) - GUARD_BALANCE,
        jnp.any((start > 0) & (shares < GUARD_EMPTY * start)),
        jnp.mean((labels != start_labels).astype(jnp.float32)) > GUARD_MOVED,
    ])  # fmt: skip
    return jnp.where(jnp.any(fired), jnp.argmax(fired) + 1, 0).astype(jnp.int32)


def effective_clusters(shares: jax.Array) -> jax.Array:
    """``exp`` of the entropy of ``(K,)`` cluster shares: K when all are equal, 1 for one."""
    safe = jnp.where(shares > 0, shares, 1.0)
    return jnp.exp(-jnp.sum(jnp.where(shares > 0, shares * jnp.log(safe), 0.0)))


def mean_agreement(labels: jax.Array, clusters: int) -> jax.Array:
    """``()`` float32: the mean adjusted Rand index over every two of ``(M, N)`` partitions.

    Hubert and Arabie's index from the ``(M, M, K, K)`` contingency tables (one
    matrix product of one-hot labels), as ``sklearn.metrics.adjusted_rand_score``
    computes it for each pair: 1 for identical partitions up to a renumbering,
    about 0 for independent ones. Needs M >= 2.
    """
    m, n = labels.shape
    onehot = jax.nn.one_hot(labels, clusters, dtype=jnp.float32)  # (M, N, K)
    table = jnp.einsum("ank,bnl->abkl", onehot, onehot, precision=jax.lax.Precision.HIGHEST)

    def pairs(c):  # "n choose 2", in float32: N up to millions keeps ~7 digits
        return c * (c - 1.0) / 2.0

    index = jnp.sum(pairs(table), axis=(2, 3))
    rows = jnp.sum(pairs(jnp.sum(table, axis=3)), axis=2)  # (M, M): a's cluster sizes
    cols = jnp.sum(pairs(jnp.sum(table, axis=2)), axis=2)  # b's
    expected = rows * cols / pairs(jnp.float32(n))
    top = (rows + cols) / 2.0
    spread = top - expected
    ari = jnp.where(spread != 0, (index - expected) / jnp.where(spread != 0, spread, 1.0), 1.0)
    off = ~jnp.eye(m, dtype=bool)
    return jnp.sum(jnp.where(off, ari, 0.0)) / (m * (m - 1))
