"""Row-wise programs: each row's result the same bits whatever batch it came in.

XLA's CPU matrix products round a row differently for different numbers of rows
(on this project's CPU, encoding 1 to 17 digits alone gave other bits than the
same digits among 600). So the programs that promise a result per row (encode,
UMAP's transform, predict) split their rows into blocks of :data:`BLOCK` and run
one compiled block after another with ``jax.lax.map``: every row then goes through
the same arithmetic, at the same shape, whatever the batch's size, order or
company.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxae._buckets import bucket

# Rows per block: the neighbour search's query block, and a product large enough to
# run near a CPU's peak; one new row costs a block.
BLOCK = 256


def padded_rows(n: int) -> int:
    """Rows to pad ``n`` to: a whole number of blocks, that number rounded up to a size
    bucket above 8 blocks (at most 12.5% more), so few programs compile."""
    blocks = max(-(-n // BLOCK), 1)
    return BLOCK * (blocks if blocks <= 8 else bucket(blocks))


def map_blocks(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """``fn`` over ``(Q, ...)`` rows in blocks of :data:`BLOCK`, one after another.

    Pure and jittable. ``fn`` maps ``(BLOCK, ...)`` rows to ``(BLOCK, ...)`` results,
    each row's from that row alone; the rows are padded with copies of the last to a
    whole number of blocks, and the padding's results dropped.

    Returns:
      ``fn``'s results for the ``Q`` rows.
    """
    q = x.shape[0]
    blocks = max(-(-q // BLOCK), 1)
    pad = [(0, blocks * BLOCK - q)] + [(0, 0)] * (x.ndim - 1)
    x = jnp.pad(x, pad, mode="edge").reshape(blocks, BLOCK, *x.shape[1:])
    out = jax.lax.map(fn, x)
    return out.reshape(blocks * BLOCK, *out.shape[2:])[:q]
