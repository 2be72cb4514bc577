"""UMAP's first step: the exact k nearest neighbours of every row.

The ``k = n_neighbors`` nearest neighbours of every row, the row itself first at
distance 0 (umap-learn's convention, so its ``rho`` and ``sigma`` come out the
same). Exact, by blocked matrix products: a block of ``B`` rows against column
blocks of ``C`` data rows, a running ``jax.lax.top_k`` merged per column block.
Time O(N^2 D) flops; memory O(B C + B k D), never N x N. The chosen neighbours'
distances are recomputed from differences (not from the ``|x|^2 - 2 x.y + |y|^2``
expansion) so near neighbours keep their digits. Always exact: umap-learn switches
to NN-descent from 4,096 rows.

On several devices (``devices=P``, a 1-D ``"data"`` mesh as :func:`jaxae.fit` trains
on) the features are copied to every device and the query rows split: each device
searches ``ceil(N / (P B)) B`` rows (whole blocks of the one-device B, so at most
one block of padding each) against all N, O(N^2 D / P) flops and the one-device
O(B C + B k D) memory each, and the ``(N, k)`` results are gathered onto every
device. Every row is searched by the same arithmetic, so the neighbours and
distances are the one-device ones bit for bit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxae._validate import check_int
from jaxae.errors import JaxaeError
from jaxae.parallel import make_mesh, replicate, to_host

# As in jax_kmeans: TF32 on a GPU would reorder near neighbours.
_PRECISION = jax.lax.Precision.HIGHEST
# Rows and data rows per kNN block: a (256, 2048) float32 score block is 2 MiB.
_KNN_ROWS = 256
_KNN_COLS = 2048


def nearest_neighbors(
    queries: jax.Array,
    data: jax.Array,
    k: int,
    *,
    self_first: bool = False,
    block_rows: int = _KNN_ROWS,
    block_cols: int = _KNN_COLS,
    devices: int | str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Exact Euclidean k nearest rows of ``data`` for each of ``queries``.

    Args:
      queries: ``(Q, D)`` float32.
      data: ``(N, D)`` float32, N >= k.
      k: neighbours per query.
      self_first: ``queries`` is ``data``: each row is its own first neighbour at
        distance 0 (umap-learn's convention), whatever ties the distances have.
      block_rows, block_cols: B and C, the query and data rows of one score block.
      devices: the query rows split over this many devices (or "all"; see
        :func:`jaxae.parallel.make_mesh`), the data copied to each. Every row is
        searched by the same arithmetic as on one device: the same bits.

    Returns:
      ``(Q, k)`` int32 indices into ``data`` and ``(Q, k)`` float32 distances, nearest
      first (replicated over the devices).
    """
    q, n = queries.shape[0], data.shape[0]
    check_int("k", k, minimum=1, maximum=n)
    check_int("block_rows", block_rows, minimum=1)
    check_int("block_cols", block_cols, minimum=1)
    if queries.ndim != 2 or data.ndim != 2 or queries.shape[1] != data.shape[1]:
        raise JaxaeError(
            f"queries {queries.shape} and data {data.shape} must be (Q, D) and (N, D): "
            "pass rows of the same width"
        )
    rows = min(block_rows, q)
    cols = max(min(block_cols, n), 1)
    mesh = make_mesh(devices)
    if mesh is None:
        return _knn(queries, data, k=k, rows=rows, cols=cols, self_first=self_first)
    queries, data = replicate(to_host((queries, data)), mesh)
    return _knn_sharded(queries, data, k=k, rows=rows, cols=cols, self_first=self_first, mesh=mesh)


def _knn_rows(queries, data, first_row, *, k: int, rows: int, cols: int, self_first: bool):
    """The search of :func:`nearest_neighbors` for ``queries``, rows ``first_row``
    onwards of the query array (``self_first`` compares these global row ids)."""
    q, d = queries.shape
    n = data.shape[0]
    mean = jnp.mean(data, axis=0)  # centred rows keep the expansion accurate in float32
    queries, data = queries - mean[None, :], data - mean[None, :]
    q_blocks, n_blocks = -(-q // rows), -(-n // cols)
    qp = jnp.pad(queries, ((0, q_blocks * rows - q), (0, 0)))
    dp = jnp.pad(data, ((0, n_blocks * cols - n), (0, 0)))
    d_sq = jnp.sum(dp * dp, axis=1).reshape(n_blocks, cols)
    col_ids = jnp.arange(n_blocks * cols, dtype=jnp.int32).reshape(n_blocks, cols)
    data_blocks = dp.reshape(n_blocks, cols, d)

    def one_block(args):
        x, row_ids = args
        x_sq = jnp.sum(x * x, axis=1)

        def merge(best, block):
            best_neg, best_ids = best
            y, y_sq, ids = block
            scores = x_sq[:, None] - 2.0 * jnp.dot(x, y.T, precision=_PRECISION) + y_sq[None, :]
            scores = jnp.where((ids < n)[None, :], scores, jnp.inf)
            if self_first:  # below every true distance, so the row itself comes first
                scores = jnp.where(ids[None, :] == row_ids[:, None], -1.0, scores)
            both = jnp.concatenate([best_neg, -scores], axis=1)
            both_ids = jnp.concatenate([best_ids, jnp.broadcast_to(ids[None, :], scores.shape)], 1)
            top, where = jax.lax.top_k(both, k)
            return (top, jnp.take_along_axis(both_ids, where, axis=1)), None

        start = (jnp.full((rows, k), -jnp.inf), jnp.zeros((rows, k), jnp.int32))
        (_, ids), _ = jax.lax.scan(merge, start, (data_blocks, d_sq, col_ids))
        # Exact distances of the chosen k, from differences, and their order by them
        # (stable, so the row itself stays first among exact duplicates).
        diff = x[:, None, :] - data[ids]
        dist = jnp.sqrt(jnp.sum(diff * diff, axis=2))
        if self_first:  # exactly 0, whatever XLA's fusion does to x - x
            dist = jnp.where(ids == row_ids[:, None], 0.0, dist)
        order = jnp.argsort(dist, axis=1, stable=True)
        return jnp.take_along_axis(ids, order, 1), jnp.take_along_axis(dist, order, 1)

    row_ids = first_row + jnp.arange(q_blocks * rows, dtype=jnp.int32).reshape(q_blocks, rows)
    ids, dist = jax.lax.map(one_block, (qp.reshape(q_blocks, rows, d), row_ids))
    return ids.reshape(-1, k)[:q], dist.reshape(-1, k)[:q]


@functools.partial(jax.jit, static_argnames=("k", "rows", "cols", "self_first"))
def _knn(queries, data, *, k: int, rows: int, cols: int, self_first: bool):
    return _knn_rows(queries, data, 0, k=k, rows=rows, cols=cols, self_first=self_first)


@functools.partial(jax.jit, static_argnames=("k", "rows", "cols", "self_first", "mesh"))
def _knn_sharded(queries, data, *, k: int, rows: int, cols: int, self_first: bool, mesh: Mesh):
    """:func:`_knn` with the query rows split over ``mesh``'s ``"data"`` axis, the data
    replicated: each device searches whole blocks of ``rows`` rows (the one-device
    block, so every row sees the same arithmetic), the results replicated."""
    q = queries.shape[0]
    per = -(-q // (mesh.size * rows)) * rows  # query rows per device
    padded = jnp.pad(queries, ((0, per * mesh.size - q), (0, 0)))

    def search(local, data):
        first = jax.lax.axis_index("data") * per
        return _knn_rows(local, data, first, k=k, rows=rows, cols=cols, self_first=self_first)

    # No collectives inside, so no replication types to check (check_vma would want
    # the search's invariant starting carry cast to varying).
    ids, dist = jax.shard_map(
        search, mesh=mesh, in_specs=(P("data"), P()), out_specs=(P("data"), P("data")),
        check_vma=False,
    )(padded, data)  # fmt: skip
    everywhere = NamedSharding(mesh, P())
    return tuple(jax.lax.with_sharding_constraint(a[:q], everywhere) for a in (ids, dist))
