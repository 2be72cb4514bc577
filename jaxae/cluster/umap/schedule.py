"""When each edge of UMAP's layout fires, and the negative samples it draws.

What differs from umap-learn (``layouts.py``), on purpose:

* Which epochs an edge fires in, and how many negative samples it draws, come in
  closed form from the epoch number: an edge with ``epochs_per_sample = e`` fires
  in epoch ``n`` when ``floor(n / e)`` has grown since epoch ``n - 1``, and draws
  ``floor(n r / e)`` minus the same count at its previous firing (umap-learn's
  counters, in exact arithmetic; its float64 running sums can fall one sample
  short at a boundary and make it up at the next firing). So the layout carries
  no counters and a chunk of epochs
  needs only the epoch number to start from.
* Random numbers: the ``j``-th negative sample of edge ``i`` in epoch ``n`` is a
  32-bit hash of ``i (2 r + 1) + j`` and two words of ``fold_in(key(seed), n)``,
  modulo N (umap-learn takes its own generator's words modulo N), so the same seed
  gives a different embedding from umap-learn's, and a draw does not depend on
  which other edges are due.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _schedule(epochs_per_sample, epoch, negative_sample_rate: int):
    """Which edges fire in ``epoch`` and how many negative samples each draws.

    umap-learn's counters in closed form. Its edge counter starts at ``e`` and
    grows by ``e`` at each firing, so after epoch ``n`` an edge has fired
    ``floor(n / e)`` times (``e >= 1``: at most once an epoch). Its negative-sample
    counter, after a firing in epoch ``m``, stands at ``floor(m r / e) * e / r``
    (``e / r`` before any), so a firing in epoch ``n`` draws ``floor(n r / e)``
    minus ``floor(m r / e)``, where ``m = ceil(c e)`` is the epoch of the edge's
    ``c``-th and latest firing (minus 1 when it has not fired yet). At most
    ``2 r + 1``: firings are less than ``e + 1`` epochs apart.

    Returns:
      ``(E,)`` bool and ``(E,)`` float32 counts in ``[0, 2 r + 1]``.
    """
    e = epochs_per_sample
    n = jnp.asarray(epoch, jnp.int32).astype(jnp.float32)
    rate = float(negative_sample_rate)
    fired_before = jnp.maximum(jnp.floor((n - 1.0) / e), 0.0)
    fires = jnp.floor(n / e) > fired_before
    last = jnp.ceil(fired_before * e)
    drawn = jnp.where(fired_before >= 1.0, jnp.floor(last * rate / e), 1.0)
    most = 2 * negative_sample_rate + 1
    return fires, jnp.clip(jnp.floor(n * rate / e) - drawn, 0.0, float(most))


def _mix32(x: jax.Array) -> jax.Array:
    """A bijective 32-bit integer hash (the "lowbias32" constants of C. Wellons'
    hash-prospector): two xor-shift-multiply rounds and a final xor-shift."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _sample_rows(key, epoch, counters: jax.Array, rows: int) -> jax.Array:
    """Row drawn for each ``counters`` value (uint32) in epoch ``epoch``: a counter-based
    hash of the counter and two words of ``fold_in(key, epoch)``, modulo ``rows``.

    Counter-based, so a draw depends on its counter only, not on which other draws
    an epoch makes: the layout draws for the edges due alone and the draws stay the
    same whatever the compaction. Threefry (``jax.random.bits``) for every draw took
    a third of a layout epoch on this CPU; here the key is hashed once per epoch and
    each draw costs about ten integer operations. The modulo bias is below
    ``rows / 2^32``, as for umap-learn's ``tau_rand_int(...) % n``.
    """
    words = jax.random.bits(jax.random.fold_in(key, epoch), (2,), jnp.uint32)
    mixed = _mix32(_mix32(counters ^ words[0]) + words[1])
    return (mixed % jnp.uint32(rows)).astype(jnp.int32)


def _negative_samples(key, epoch, edges: int, slots: int, rows: int) -> jax.Array:
    """``(edges, slots)`` int32: the rows :func:`layout_step` draws in epoch ``epoch``
    as the ``j``-th negative sample of edge ``i`` (``slots = 2 r + 1``); an edge
    uses its first ``n_neg`` of them (see :func:`_schedule`)."""
    counters = jnp.arange(edges * slots, dtype=jnp.uint32).reshape(edges, slots)
    return _sample_rows(key, epoch, counters, rows)


def _arrange(values: jax.Array, fill, waves: int, shards: int) -> jax.Array:
    """One per-edge array in :func:`_arrange_edges`' order, padded with ``fill``."""
    values = jnp.pad(values, (0, -values.shape[0] % (waves * shards)), constant_values=fill)
    return values.reshape(-1, waves).T


@functools.partial(jax.jit, static_argnames=("n_epochs", "negative_sample_rate", "waves", "shards"))
def _schedule_peaks(
    epochs_per_sample, *, n_epochs: int, negative_sample_rate: int, waves: int, shards: int
):  # fmt: skip
    """The most edges due in any one epoch, and the most of them drawing more than
    ``r + 1`` negative samples, in any one of the ``waves * shards`` slices of the
    edges that :func:`_arrange_edges` makes."""
    epochs_per_sample = _arrange(epochs_per_sample, jnp.inf, waves, shards)
    epochs_per_sample = epochs_per_sample.reshape(waves * shards, -1)

    def one(epoch):
        fires, n_neg = _schedule(epochs_per_sample, epoch, negative_sample_rate)
        many = fires & (n_neg > negative_sample_rate + 1)
        return (
            jnp.max(jnp.sum(fires, axis=1, dtype=jnp.int32)),
            jnp.max(jnp.sum(many, axis=1, dtype=jnp.int32)),
        )

    due, many = jax.lax.map(one, jnp.arange(n_epochs, dtype=jnp.int32))
    return jnp.max(due), jnp.max(many)
