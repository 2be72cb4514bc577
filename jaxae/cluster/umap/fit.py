"""UMAP in JAX: exact neighbours, umap-learn's fuzzy graph, a synchronous layout.

It follows umap-learn 0.5.12 (``umap_.py``, ``layouts.py``, ``spectral.py``) step by
step, for the Euclidean metric only:

1. The ``k = n_neighbors`` nearest neighbours of every row, the row itself first
   at distance 0 (umap-learn's convention, so its ``rho`` and ``sigma`` come out
   the same). Exact, by blocked matrix products: a block of ``B`` rows against
   column blocks of ``C`` data rows, a running ``jax.lax.top_k`` merged per
   column block. Time O(N^2 D) flops; memory O(B C + B k D), never N x N. The
   chosen neighbours' distances are recomputed from differences (not from the
   ``|x|^2 - 2 x.y + |y|^2`` expansion) so near neighbours keep their digits.
2. Per row, ``rho`` (distance to the nearest non-identical neighbour, for
   ``local_connectivity=1``) and ``sigma`` by 64 steps of bisection until the
   memberships sum to ``log2(k)`` within 1e-5; ``sigma`` is floored at 1e-3 times
   the row's mean distance (``smooth_knn_dist``). Vectorised over rows, on device,
   in float32 (umap-learn bisects in float64: on 400 digits the sigmas agree to
   4e-6 relative, the rhos exactly).
3. Memberships ``exp(-(d - rho) / sigma)``, then the fuzzy union
   ``A + A^T - A * A^T`` on the host with ``scipy.sparse``: the number of edges
   depends on the data (a dynamic shape), the work is O(N k), and doing it as
   umap-learn does makes the graph equal to its graph, value for value.
4. ``a`` and ``b`` fitted to ``min_dist`` and ``spread`` by ``scipy.optimize.curve_fit``
   (``find_ab_params``); 500 epochs up to 10,000 rows and 200 above; edges below
   ``max / n_epochs`` dropped; ``epochs_per_sample = max / weight``.
5. Initialisation: eigenvectors 2..C+1 of the normalised Laplacian (``eigsh``,
   umap-learn's settings, the trivial eigenvector deflated: see
   ``_laplacian_eigenvectors``), a graph in pieces laid out piece by piece around
   places as umap-learn does (``_spectral``), or the features' principal components; scaled so the
   largest coordinate is 10, noise of 1e-4, then each axis stretched to [0, 10].
6. The layout: per epoch every edge "due" pulls its two ends together and pushes
   its head away from negative samples (5 per edge, uniform over the rows), the
   gradients clipped at 4, with the learning rate ``1 - epoch / n_epochs``.

What differs from umap-learn, on purpose:

* The updates are synchronous in waves. Each epoch's edges are dealt out into 16
  waves (a row's edges spread over them); within a wave every gradient is
  computed from the positions the wave starts from and summed with scatter-adds,
  and the next wave starts from there. umap-learn moves points edge by edge
  (Hogwild on several threads). Fixed shapes, and one seed gives the same
  embedding bit for bit, on one device (on a mesh, bit for bit for that number
  of devices). One wave per epoch (every update from the epoch's start, as
  cuML's seeded mode buffers them) overshoots: at a learning rate near 1 an edge
  pulls each end of a close pair past the other, umap-learn's next update of the
  pair pulls them back, but both of the pair's edges at once throw them apart.
  On the codes of five mnist-5k models, one wave clustered 1.4 points of ACC
  below umap-learn on the same codes and fell to 0.78 on one layout seed of one
  model; 16 waves matched umap-learn's layout from the same graph and start
  (model 0, three seeds: 0.884 against 0.885; one wave 0.831).
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
* Neighbours are always exact (umap-learn switches to NN-descent from 4,096 rows).
* A connected graph whose eigensolver fails is laid out from PCA (umap-learn
  falls back to random); a piece of a graph in several pieces falls back as
  umap-learn does.

Time per layout epoch is O(E) to find the edges due (a closed-form test per
edge, then a compaction), plus O(F (r + 2) C) for the F edges due, r negative
samples each and C output dimensions: about E / 4 edges due an epoch on digits,
as umap-learn visits them. Shapes are fixed by :func:`layout_capacity`, the
largest F over the epochs (computed once per fit, O(E n_epochs) elementwise).
Memory: the negative samples' differences are F (r + 1) C float32; with k = 20,
C = 10, r = 5, about 17 MB at 10,000 rows (F = 72,000 of E = 255,000) and 122 MB
at 70,000 (F = 508,000 of E = 1.81 million): F grows linearly with N (E is about
1.3 N k after the union). Measured on MNIST PCA-10 codes, a layout call raised the
process's peak RSS from 815 to 964 MB at 70,000 rows (from 815 to 2,796 MB when
every edge was computed with 2 r + 1 masked slots).

On several devices (``fit_umap(..., devices=P)``, a 1-D ``"data"`` mesh as
:func:`jaxae.fit` trains on), the features are copied to every device and:

* the neighbour search splits the query rows: each device searches
  ``ceil(N / (P B)) B`` rows (whole blocks of the one-device B, so at most one
  block of padding each) against all N, O(N^2 D / P) flops and the one-device
  O(B C + B k D) memory each, and the ``(N, k)`` results are gathered onto every
  device. Every row is searched by the same arithmetic, so the neighbours and
  distances are the one-device ones bit for bit;
* the fuzzy graph and the start are computed once, as on one device;
* the layout splits each wave's edges into P equal slices, each device finding
  its due edges (O(E / P) an epoch) and computing their steps (O(F (r + 2) C / P),
  memory F (r + 1) C / P: ``layout_capacity(..., waves=W, shards=P)`` sizes each
  slice), adding them up into an ``(N, C)`` step that is summed over the devices
  (``psum``, N C floats each wave) into the embedding every device holds. The
  same steps as on one device, summed in another order: the embeddings agree to
  float32 rounding after an epoch or two, but the layout amplifies rounding (at a
  learning rate near 1, moves clipped at 4), so after hundreds of epochs points
  sit up to a tenth of the embedding's range apart, as they do when one input row
  moves by one ulp; the clusters stay about as good (on 400 digits, three layout
  seeds, KMeans labels of the one- and four-device embeddings agreed at adjusted
  Rand indices of 1.0, 1.0 and 0.89, a mixture's at 0.77 to 0.88).
* ``transform`` runs on one device.

Example:
  >>> import numpy as np
  >>> from jaxae.cluster.umap.fit import fit_umap
  >>> x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
  >>> x[:150] += 6.0
  >>> fit = fit_umap(x, n_components=2, n_neighbors=10, n_epochs=50)
  >>> fit.embedding.shape, fit.transform(x[:5]).shape
  ((300, 2), (5, 2))
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg
import sklearn.manifold
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxae._buckets import bucket
from jaxae._validate import check_choice, check_int, check_real, check_rows
from jaxae.errors import JaxaeError
from jaxae.loop import check_stop
from jaxae.parallel import make_mesh, replicate, to_host

INITS = ("spectral", "pca")
# umap-learn's constants (umap_.py): bisection tolerance and the floor of sigma.
_SMOOTH_K_TOLERANCE = 1e-5
_MIN_K_DIST_SCALE = 1e-3
_BISECTION_STEPS = 64
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# As in jax_kmeans: TF32 on a GPU would reorder near neighbours.
_PRECISION = jax.lax.Precision.HIGHEST
_CLIP = 4.0
# Each layout epoch in this many waves of edges, one after another (layout_epochs).
_WAVES = 16
# Rows and data rows per kNN block: a (256, 2048) float32 score block is 2 MiB.
_KNN_ROWS = 256
_KNN_COLS = 2048


class LayoutGraph(NamedTuple):
    """The edges the layout optimises, as fixed-shape device arrays.

    Attributes:
      head: ``(E,)`` int32 row moved by the edge (and pushed from negative samples).
      tail: ``(E,)`` int32 row it is pulled towards (of the reference embedding
        when there is one).
      epochs_per_sample: ``(E,)`` float32, at least 1: the edge fires about once
        every this many epochs.
    """

    head: jax.Array
    tail: jax.Array
    epochs_per_sample: jax.Array


class UMAPFit(NamedTuple):
    """A fitted UMAP: plain arrays, so ``np.savez(path, **fit.arrays())`` saves it.

    Attributes:
      features: ``(N, D)`` float32 training features (``transform`` searches them).
      embedding: ``(N, C)`` float32 their embedding.
      a, b: the curve ``1 / (1 + a d^(2b))`` of the embedding's similarities.
      n_neighbors: k of the fit (``transform`` uses the same).
      seed: seed of the fit (``transform`` draws from it too).
      n_epochs: the ``n_epochs`` passed to the fit, -1 for umap-learn's default.
    """

    features: np.ndarray
    embedding: np.ndarray
    a: float
    b: float
    n_neighbors: int
    seed: int
    n_epochs: int

    def transform(self, features: np.ndarray | jax.Array) -> np.ndarray:
        """Embeds ``(Q, D)`` new rows among the fixed training embedding.

        As ``UMAP.transform`` (:mod:`jaxae.cluster.umap.transform`): memberships to
        the k nearest training rows with ``local_connectivity=0``, a start at their
        weighted mean embedding, then 100 epochs (a third of the fit's when it was
        given) at a learning rate of 0.25, pulled towards the neighbours, pushed
        from negative samples, the training embedding held still. Each row's
        embedding depends on that row alone, bit for bit on one CPU, whatever the
        batch's size, order or other rows (umap-learn's does not: see that module).
        A row equal to a training row keeps that row's embedding (umap-learn returns
        ``embedding_`` when handed the training array itself), so the training
        rows' labels are the fit's own.

        Returns:
          ``(Q, C)`` float32.
        """
        features = check_rows("features", features, floats_only=True, allow_images=False)
        if features.shape[1] != self.features.shape[1]:
            raise JaxaeError(
                f"features have {features.shape[1]} columns but the UMAP was fitted on "
                f"{self.features.shape[1]}: pass rows of the same width"
            )
        # Imported here: the transform builds on this module's search and schedule.
        from jaxae.cluster.umap.transform import transform

        return transform(self, jnp.asarray(features, jnp.float32))

    def arrays(self) -> dict[str, np.ndarray]:
        """The fit as a dict of arrays for ``np.savez`` (no pickle)."""
        return {
            "features": np.asarray(self.features),
            "embedding": np.asarray(self.embedding),
            "ab": np.asarray([self.a, self.b], np.float64),
            "options": np.asarray([self.n_neighbors, self.seed, self.n_epochs], np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays) -> UMAPFit:
        """The fit :meth:`arrays` gave (a dict or an ``np.load`` result)."""
        try:
            features = np.asarray(arrays["features"], np.float32)
            embedding = np.asarray(arrays["embedding"], np.float32)
            a, b = np.asarray(arrays["ab"], np.float64).tolist()
            n_neighbors, seed, n_epochs = np.asarray(arrays["options"], np.int64).tolist()
        except (KeyError, ValueError, TypeError):
            raise JaxaeError(
                "UMAP arrays need features, embedding, ab (2) and options (3): "
                "pass what UMAPFit.arrays() returned"
            ) from None
        if (
            features.ndim != 2
            or embedding.ndim != 2
            or features.shape[0] != embedding.shape[0]
            or not 2 <= n_neighbors < features.shape[0]
        ):
            raise JaxaeError(
                f"UMAP arrays do not fit together: features {features.shape}, "
                f"embedding {embedding.shape}, n_neighbors {n_neighbors}"
            )
        return cls(features, embedding, a, b, n_neighbors, seed, n_epochs)


def check_sizes(
    n: int, n_neighbors: int, n_components: int, *,
    names: tuple[str, str] = ("n_neighbors", "n_components"), rows: str = "rows",
) -> None:  # fmt: skip
    """UMAP of ``n`` rows needs fewer neighbours than rows, and ``n_components`` below
    ``n - 1`` (its spectral start); ``names`` are how the caller's parameters are spelt."""
    k_name, dim_name = names
    check_int(k_name, n_neighbors, minimum=2)
    if n_neighbors >= n:
        raise JaxaeError(
            f"{k_name}={n_neighbors} needs more than the {n} {rows}: "
            f"pass {k_name}={max(2, n - 1)} or less, or more {rows}"
        )
    check_int(dim_name, n_components, minimum=1)
    if n_components >= n - 1:
        raise JaxaeError(
            f"{dim_name}={n_components} needs more than the {n} {rows}: "
            f"pass {dim_name}={max(1, n - 2)} or less, or more {rows}"
        )


def fit_umap(
    features: np.ndarray | jax.Array,
    *,
    n_components: int = 10,
    n_neighbors: int = 20,
    min_dist: float = 0.0,
    spread: float = 1.0,
    seed: int = 0,
    n_epochs: int | None = None,
    init: str = "spectral",
    devices: int | str | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
) -> UMAPFit:
    """Embeds ``(N, D)`` features in ``n_components`` dimensions with UMAP.

    Args:
      features: ``(N, D)`` finite floats (computed in float32).
      n_components: C, 1 to N - 2.
      n_neighbors: k, 2 to N - 1 (the row itself counts as the first, as in umap-learn).
      min_dist, spread: the embedding's similarity curve (``0 <= min_dist <= spread``).
      seed: seed of the initial noise and the negative samples.
      n_epochs: layout epochs; ``None`` for umap-learn's 500 (200 above 10,000 rows).
      init: ``"spectral"`` (umap-learn's default) or ``"pca"``.
      devices: the neighbour search and the layout over this many devices (or
        "all"), as :func:`jaxae.fit` trains: the query rows split over them, then
        the edges. The neighbours are the one-device ones bit for bit; the
        embedding sums each epoch's steps in another order, so it agrees with the
        one-device embedding to float32 rounding, which the layout's 500 epochs
        amplify (module docstring). The fit's ``transform`` runs on one device.
      should_stop: polled every couple of seconds (:mod:`jaxae.cluster.umap.drive`):
        between calls of the neighbour search (one device) and of the layout,
        between the host steps, and in the spectral start's eigensolver.
      progress: progress bars over the neighbour search and the layout.

    Returns:
      A :class:`UMAPFit`; ``fit.embedding`` is ``(N, C)`` float32.

    Raises:
      JaxaeError: for features that are not 2-D finite floats, or an option out of
        range, or more ``devices`` than JAX sees.
      jaxae.loop.Stopped: ``should_stop()`` returned True.
    """
    from jaxae.cluster.umap import drive as umap_drive  # it builds on this module's programs

    features = check_rows("features", features, floats_only=True, allow_images=False)
    n = features.shape[0]
    check_sizes(n, n_neighbors, n_components)
    check_real("spread", spread, positive=True)
    check_real("min_dist", min_dist, minimum=0, maximum=spread)
    check_int("seed", seed, minimum=0, maximum=2**31 - 1)
    if n_epochs is not None:
        check_int("n_epochs", n_epochs, minimum=1)
    check_choice("init", init, INITS)
    mesh = make_mesh(devices)

    x = jnp.asarray(features, jnp.float32)
    stop = dict(should_stop=should_stop, progress=progress)
    if mesh is None:
        indices, distances = umap_drive.neighbours(
            x, n_neighbors, rows=min(_KNN_ROWS, n), cols=min(_KNN_COLS, n), **stop
        )
    else:  # one call, split over the devices
        indices, distances = nearest_neighbors(x, x, n_neighbors, self_first=True, devices=devices)
    sigmas, rhos = _smooth_knn_dist(distances, float(n_neighbors), 1.0)
    weights = _memberships(distances, indices, sigmas, rhos, skip_self=True)
    umap_drive.check(should_stop, "after its neighbour search")
    graph = _fuzzy_union(*to_host((indices, weights)), n)
    umap_drive.check(should_stop, "after its fuzzy graph")

    epochs = n_epochs if n_epochs is not None else (500 if n <= 10_000 else 200)
    graph = _prune(graph, epochs if epochs > 10 else (500 if n <= 10_000 else 200))
    a, b = find_ab_params(spread, min_dist)
    rng = np.random.default_rng(seed)
    start = _initial_embedding(
        np.asarray(features, np.float32), graph, n_components, init, rng, should_stop
    )
    umap_drive.check(should_stop, "after its start")
    layout = _pad_edges(_layout_graph(graph), bucket(len(graph.data)))
    shards = 1 if mesh is None else mesh.size
    capacity = layout_capacity(layout, epochs, waves=_WAVES, shards=shards)
    umap_drive.check(should_stop, "after its layout's capacity")
    if mesh is not None:
        layout, start = replicate((to_host(layout), start), mesh)
    program = functools.partial(
        layout_epochs, graph=layout, key=jax.random.key(seed), a=a, b=b, n_epochs=epochs,
        capacity=capacity, waves=_WAVES, mesh=mesh,
    )  # fmt: skip
    embedding = umap_drive.layout(
        lambda y, first, count: program(y, first_epoch=first, count=count),
        jnp.asarray(start), epochs, **stop,
    )  # fmt: skip
    return UMAPFit(
        np.asarray(features, np.float32),
        to_host(embedding),
        a,
        b,
        n_neighbors,
        seed,
        -1 if n_epochs is None else n_epochs,
    )


# ---------------------------------------------------------------- neighbours


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


# ---------------------------------------------------------------- fuzzy graph


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


def _layout_graph(graph: scipy.sparse.coo_matrix) -> LayoutGraph:
    weights = graph.data.astype(np.float64)
    return LayoutGraph(
        jnp.asarray(graph.row, jnp.int32),
        jnp.asarray(graph.col, jnp.int32),
        jnp.asarray(weights.max() / weights, jnp.float32),
    )


def _pad_edges(graph: LayoutGraph, size: int) -> LayoutGraph:
    """``graph`` with edges that never fire added up to ``size``: graphs of nearby
    sizes (another seed's codes, the pixels) then share one compiled layout."""
    pad = size - graph.head.shape[0]
    return LayoutGraph(
        jnp.pad(graph.head, (0, pad)),
        jnp.pad(graph.tail, (0, pad)),
        jnp.pad(graph.epochs_per_sample, (0, pad), constant_values=jnp.inf),
    )


def find_ab_params(spread: float, min_dist: float) -> tuple[float, float]:
    """``a`` and ``b`` of ``1 / (1 + a x^(2b))`` fitted to umap-learn's target curve.

    The target is 1 below ``min_dist`` and ``exp(-(x - min_dist) / spread)`` above,
    on 300 points of ``[0, 3 spread]``, least squares by ``scipy.optimize.curve_fit``
    (umap-learn's ``find_ab_params``).
    """
    x = np.linspace(0, spread * 3, 300)
    y = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    (a, b), _ = scipy.optimize.curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2 * b)), x, y)
    return float(a), float(b)


# ---------------------------------------------------------------- initialisation


def _initial_embedding(
    features, graph, n_components: int, init: str, rng, should_stop=None
) -> np.ndarray:
    """``(N, C)`` float32 start in ``[0, 10]``: spectral or PCA, scaled as umap-learn;
    ``should_stop`` is polled in the eigensolver (:func:`_laplacian_eigenvectors`)."""
    coords = None
    if init == "spectral":
        coords = _spectral(graph, n_components, features, rng, should_stop)
    if coords is None:
        centred = features.astype(np.float64) - features.mean(axis=0)
        # Principal axes by SVD; the sign of each axis fixed by its largest loading.
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        vt = vt[:n_components]
        signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
        coords = centred @ (vt * signs[:, None]).T
    coords = (coords * (10.0 / np.abs(coords).max())).astype(np.float32)
    coords = coords + rng.normal(scale=1e-4, size=coords.shape).astype(np.float32)
    low, high = coords.min(axis=0), coords.max(axis=0)
    return (10.0 * (coords - low) / (high - low)).astype(np.float32)


def _spectral(graph, n_components: int, features, rng, should_stop=None) -> np.ndarray | None:
    """umap-learn's spectral start (``spectral_layout``): ``(N, C)`` float64, or
    ``None`` when the eigensolver does not converge on a connected graph.

    A graph in several pieces is laid out as umap-learn's ``multi_component_layout``
    does: each piece gets a place (``_piece_places``), and its own eigenvectors,
    scaled to half the distance to the nearest other place, around it.
    """
    pieces, labels = scipy.sparse.csgraph.connected_components(graph)
    if pieces == 1:
        return _laplacian_eigenvectors(graph, n_components, should_stop)
    places = _piece_places(features, labels, pieces, n_components, rng)
    graph = graph.tocsr()
    coords = np.empty((graph.shape[0], n_components), np.float64)
    for piece in range(pieces):
        rows = np.flatnonzero(labels == piece)
        gaps = np.linalg.norm(places - places[piece], axis=1)
        reach = gaps[gaps > 0.0].min() / 2.0
        if rows.size < 2 * n_components or rows.size <= n_components + 1:
            local = rng.uniform(-reach, reach, size=(rows.size, n_components))
        else:
            local = _laplacian_eigenvectors(graph[rows][:, rows], n_components, should_stop)
            if local is None:  # umap-learn's fallback for a piece
                local = rng.uniform(-10.0, 10.0, size=(rows.size, n_components))
            local = local * (reach / np.abs(local).max())
        coords[rows] = local + places[piece]
    return coords


def _piece_places(features, labels, pieces: int, n_components: int, rng) -> np.ndarray:
    """``(pieces, C)`` centres of a graph's pieces (umap-learn's ``component_layout``):
    up to ``2 C`` pieces on the axes, ``+e_i`` and ``-e_i``; more by a spectral
    embedding of their centroids' affinities ``exp(-d^2)``, scaled by its maximum."""
    if pieces <= 2 * n_components:
        half = -(-pieces // 2)
        base = np.hstack([np.eye(half), np.zeros((half, n_components - half))])
        return np.vstack([base, -base])[:pieces]
    centroids = np.stack(
        [features[labels == piece].astype(np.float64).mean(axis=0) for piece in range(pieces)]
    )
    gaps = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=2)
    with warnings.catch_warnings():  # far-apart centroids: an affinity graph in pieces
        warnings.simplefilter("ignore")
        places = sklearn.manifold.SpectralEmbedding(
            n_components=n_components,
            affinity="precomputed",
            random_state=int(rng.integers(2**31 - 1)),
        ).fit_transform(np.exp(-(gaps**2)))
    return places / places.max()


def _laplacian_eigenvectors(graph, n_components: int, should_stop=None) -> np.ndarray | None:
    """Eigenvectors 2..C+1 of a connected graph's normalised Laplacian, or ``None``
    when the solver does not converge.

    umap-learn asks ``eigsh`` for the C + 1 smallest eigenpairs and drops the
    smallest, taking it for the trivial one (``sqrt(degree)``, eigenvalue 0). ARPACK
    does not always find that one: on 400 digits, in float64, it returned the next
    five instead, and dropping the smallest lost a real axis. Here the trivial
    vector ``u`` is moved out of the way (``L + 2 u u^T``: eigenvalue 2, the top of
    the spectrum) and ``eigsh``, with umap-learn's settings, asked for the C smallest.
    A graph too small for that many Lanczos vectors is solved densely.
    ``should_stop`` is polled in every product with the Laplacian (ARPACK calls
    back into Python for each), so a stop does not wait for the solver.
    """
    n = graph.shape[0]
    graph = graph.tocsr().astype(np.float64)
    degree = np.sqrt(np.asarray(graph.sum(axis=0)).ravel())
    scale = scipy.sparse.diags(1.0 / degree)
    laplacian = scipy.sparse.identity(n) - scale @ graph @ scale
    trivial = degree / np.linalg.norm(degree)
    k = n_components + 1  # umap-learn's count, for its Lanczos basis size
    lanczos = max(2 * k + 1, int(np.sqrt(n)))
    if lanczos >= n:
        values, vectors = np.linalg.eigh(laplacian.toarray() + 2.0 * np.outer(trivial, trivial))
        return vectors[:, np.argsort(values)[:n_components]]

    def matvec(v):
        check_stop(should_stop, "the UMAP fit stopped in its spectral start")
        return laplacian @ np.ravel(v) + 2.0 * trivial * (trivial @ np.ravel(v))

    deflated = scipy.sparse.linalg.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    try:
        values, vectors = scipy.sparse.linalg.eigsh(
            deflated,
            n_components,
            which="SM",
            ncv=lanczos,
            tol=1e-4,
            v0=np.ones(n),
            maxiter=n * 5,
        )
    except scipy.sparse.linalg.ArpackError:
        return None
    return vectors[:, np.argsort(values)]


# ---------------------------------------------------------------- layout


def _rdist_terms(diff, a, b):
    """``(positive, safe, power)``: where the squared distance ``d2`` over the last
    axis is positive, ``d2`` with 1 in place of 0, and ``safe^b`` as
    ``exp(b log safe)``: XLA's ``pow`` took several times as long on a CPU, and the
    layout evaluates it for every negative sample."""
    d2 = jnp.sum(diff * diff, axis=-1)
    positive = d2 > 0.0
    safe = jnp.where(positive, d2, 1.0)
    return positive, safe, jnp.exp(b * jnp.log(safe))


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


def layout_capacity(
    graph: LayoutGraph,
    n_epochs: int,
    *,
    negative_sample_rate: int = 5,
    waves: int = 1,
    shards: int = 1,
) -> tuple[int, int]:
    """Static sizes that let :func:`layout_step` touch only the edges due.

    Counts, for every epoch ``0 .. n_epochs - 1``, the edges that fire and those of
    them that draw more than ``r + 1`` negative samples (the same :func:`_schedule`
    the layout runs), and returns the largest of each, rounded up to at least 256 and
    to one of eight sizes per power of two (``jaxae._buckets.bucket``: graphs of nearby
    sizes share one compiled layout). Pass the pair as ``capacity=`` to
    :func:`layout_step` or :func:`layout_epochs` for those epochs; a smaller pair
    would drop edges. With ``waves`` or ``shards`` above 1 the counts are per slice
    of the edges, as :func:`layout_epochs` splits them into waves and over a mesh
    of that many devices (the one-slice pair is enough there too, only larger).

    Returns:
      ``(edges, edges_drawing_more_than_r_plus_1)``, each a bucket size of at least 256.
    """
    check_int("n_epochs", n_epochs, minimum=1)
    check_int("waves", waves, minimum=1)
    check_int("shards", shards, minimum=1)
    due, many = to_host(
        _schedule_peaks(
            graph.epochs_per_sample, n_epochs=n_epochs, negative_sample_rate=negative_sample_rate,
            waves=waves, shards=shards,
        )
    )  # fmt: skip
    return bucket(max(256, int(due))), bucket(max(256, int(many)))


def layout_step(
    embedding: jax.Array,
    graph: LayoutGraph,
    key: jax.Array,
    epoch: jax.Array | int,
    *,
    a: float,
    b: float,
    n_epochs: jax.Array | int,
    reference: jax.Array | None = None,
    initial_alpha: float = 1.0,
    gamma: float = 1.0,
    negative_sample_rate: int = 5,
    capacity: tuple[int, int] | None = None,
) -> jax.Array:
    """One epoch of UMAP's layout, every update from the epoch's starting positions.

    Only the edges due in the epoch are computed: their indices are gathered into a
    ``capacity[0]``-long list (ascending, padded) and each draws its negative
    samples into ``r + 1`` slots; the few that draw more (up to ``2 r + 1``: on
    digits 4% of the firings, 2% of the samples) draw the rest into ``r`` more
    slots of a second, ``capacity[1]``-long list. So the shapes are fixed and the
    work follows the edges due (about a quarter on digits), as in umap-learn,
    instead of every edge with ``2 r + 1`` masked slots.

    Pure and jittable (``negative_sample_rate`` and ``capacity`` static); vmap over
    ``embedding`` and ``key`` for several models.

    Args:
      embedding: ``(N, C)`` float32 positions of the rows that move.
      graph: the edges; ``head`` indexes ``embedding``, ``tail`` indexes ``reference``
        (or ``embedding`` when there is none).
      key: the layout's key; epoch ``n`` draws from ``fold_in(key, n)``.
      epoch: n, from 0; the learning rate is ``initial_alpha * (1 - n / n_epochs)``.
      a, b: the similarity curve.
      n_epochs: the schedule's length.
      reference: ``(M, C)`` fixed positions (``transform``); ``None``: the tails are
        rows of ``embedding`` and move too.
      initial_alpha, gamma, negative_sample_rate: umap-learn's learning rate,
        repulsion strength and negative samples per positive one.
      capacity: ``(edges, edges_drawing_more_than_r_plus_1)`` from
        :func:`layout_capacity` for the epochs run; ``None``: room for every edge
        (always enough, slower).

    Returns:
      ``(N, C)`` float32 positions after the epoch.
    """
    steps = _edge_steps(
        embedding, graph, key, epoch, a=a, b=b, n_epochs=n_epochs, reference=reference,
        initial_alpha=initial_alpha, gamma=gamma, negative_sample_rate=negative_sample_rate,
        capacity=capacity,
    )  # fmt: skip
    return embedding + _add_steps(embedding, *steps, move_other=reference is None)


def _edge_steps(
    embedding, graph, key, epoch, *, a, b, n_epochs, reference, initial_alpha, gamma,
    negative_sample_rate: int, capacity, first_edge=0,
):  # fmt: skip
    """What :func:`layout_step` (same arguments) moves, edge by edge, for ``graph``'s
    due edges, which are the edges ``first_edge ..`` of the whole graph (the negative
    samples an edge draws follow its id in the whole graph).

    Returns:
      ``(F,)`` heads and tails of the due edges (ascending, then padding that moves
      nothing), ``(F, C)`` the heads' steps, and ``(F, C)`` the attraction alone,
      which the tails take negated.
    """
    move_other = reference is None
    tail_y = embedding if move_other else reference
    epoch = jnp.asarray(epoch, jnp.int32)
    progress = epoch.astype(jnp.float32) / jnp.asarray(n_epochs, jnp.float32)
    alpha = initial_alpha * (1.0 - progress)
    e = graph.epochs_per_sample
    edges = e.shape[0]
    slots = 2 * negative_sample_rate + 1
    edge_cap, many_cap = (edges, edges) if capacity is None else capacity
    fires, n_neg = _schedule(e, epoch, negative_sample_rate)

    # The due edges, in ascending order; the padding repeats edge 0 with no step.
    (due,) = jnp.nonzero(fires, size=edge_cap, fill_value=edges)
    real = due < edges
    due = jnp.where(real, due, 0)
    head, tail = graph.head[due], graph.tail[due]
    step = jnp.where(real, alpha, 0.0)

    y_head = embedding[head]
    diff = y_head - tail_y[tail]
    positive, safe, power = _rdist_terms(diff, a, b)
    coeff = jnp.where(positive, -2.0 * a * b * (power / safe) / (a * power + 1.0), 0.0)
    pull = jnp.clip(coeff[:, None] * diff, -_CLIP, _CLIP) * step[:, None]

    counts = jnp.where(real, n_neg[due], 0.0).astype(jnp.int32)

    def push(edge, y, count, first: int, width: int):
        """Summed repulsion ``(M, C)`` of M edges (ids ``edge``, head positions ``y``)
        from their samples ``first`` to ``first + width - 1`` below ``count``."""
        rank = jnp.arange(first, first + width, dtype=jnp.int32)[None, :]
        counters = ((first_edge + edge)[:, None] * slots + rank).astype(jnp.uint32)
        samples = _sample_rows(key, epoch, counters, tail_y.shape[0])
        diff_neg = y[:, None, :] - tail_y[samples]
        positive, safe, power = _rdist_terms(diff_neg, a, b)
        used = positive & (rank < count[:, None])
        coeff = jnp.where(used, 2.0 * gamma * b / ((0.001 + safe) * (a * power + 1.0)), 0.0)
        return jnp.sum(jnp.clip(coeff[..., None] * diff_neg, -_CLIP, _CLIP), axis=1)

    # Samples 0 .. r of every due edge, then r + 1 .. 2 r of those drawing more.
    width = negative_sample_rate + 1
    pushed = push(due, y_head, counts, 0, width)
    (many,) = jnp.nonzero(counts > width, size=many_cap, fill_value=edge_cap)
    more = many < edge_cap
    many = jnp.where(more, many, 0)
    extra = push(due[many], y_head[many], jnp.where(more, counts[many], 0), width, slots - width)
    pushed = pushed.at[many].add(extra) * step[:, None]
    return head, tail, pull + pushed, pull


def _add_steps(embedding, head, tail, moved, pull, *, move_other: bool):
    """The ``(N, C)`` sum of :func:`_edge_steps`' steps per row, in their order."""
    delta = jnp.zeros_like(embedding).at[head].add(moved)
    if move_other:
        delta = delta.at[tail].add(-pull)
    return delta


def _arrange_edges(graph: LayoutGraph, waves: int, shards: int) -> LayoutGraph:
    """The edges as ``(waves, shards * M)`` arrays: wave ``w`` holds edges ``w``,
    ``w + waves``, ``w + 2 waves``, ... (so a row's edges, which lie together in
    the head-sorted list, spread over the waves), in ``shards`` equal slices of M;
    padded with edges that never fire (``epochs_per_sample`` infinite). An edge's
    place in this order, ``w * shards * M + j``, is its id for the negative samples."""
    return LayoutGraph(
        _arrange(graph.head, 0, waves, shards),
        _arrange(graph.tail, 0, waves, shards),
        _arrange(graph.epochs_per_sample, jnp.inf, waves, shards),
    )


def _arrange(values: jax.Array, fill, waves: int, shards: int) -> jax.Array:
    """One per-edge array in :func:`_arrange_edges`' order, padded with ``fill``."""
    values = jnp.pad(values, (0, -values.shape[0] % (waves * shards)), constant_values=fill)
    return values.reshape(-1, waves).T


def _layout_epochs(
    embedding,
    graph,
    key,
    first_epoch,
    count,
    *,
    a,
    b,
    n_epochs,
    reference=None,
    initial_alpha=1.0,
    gamma=1.0,
    negative_sample_rate: int = 5,
    capacity: tuple[int, int] | None = None,
    waves: int = 1,
    mesh: Mesh | None = None,
):
    first_epoch = jnp.asarray(first_epoch, jnp.int32)
    count = jnp.asarray(count, jnp.int32)
    options = dict(
        key=key, a=a, b=b, n_epochs=n_epochs, initial_alpha=initial_alpha, gamma=gamma,
        negative_sample_rate=negative_sample_rate, capacity=capacity,
    )  # fmt: skip
    shards = 1 if mesh is None else mesh.size
    arranged = _arrange_edges(graph, waves, shards)
    wave_size = arranged.head.shape[1]

    def epochs(y, arranged, reference, shard):
        """``count`` epochs of one device's slice of every wave: each wave's due edges'
        steps, added up per row (and over the mesh), then the next wave from there."""
        local = arranged.head.shape[1]

        def one_wave(w, y, epoch):
            edges = jax.tree.map(lambda a: a[w], arranged)
            first = w * wave_size + shard() * local
            steps = _edge_steps(
                y, edges, epoch=epoch, reference=reference, first_edge=first, **options
            )
            delta = _add_steps(y, *steps, move_other=reference is None)
            return y + (delta if mesh is None else jax.lax.psum(delta, "data"))

        def one_epoch(i, y):
            epoch = first_epoch + i
            return jax.lax.fori_loop(0, waves, lambda w, y: one_wave(w, y, epoch), y)

        return jax.lax.fori_loop(0, count, one_epoch, y)

    if mesh is None:
        return epochs(embedding, arranged, reference, lambda: 0)
    sharded = functools.partial(epochs, shard=lambda: jax.lax.axis_index("data"))
    specs = (P(), P(None, "data"), P())
    return jax.shard_map(sharded, mesh=mesh, in_specs=specs, out_specs=P())(
        embedding, arranged, reference
    )


layout_epochs = jax.jit(
    _layout_epochs, static_argnames=("negative_sample_rate", "capacity", "waves", "mesh")
)
layout_epochs.__doc__ = """Layout epochs ``first_epoch`` to ``first_epoch + count - 1``, jitted.

``first_epoch`` and ``count`` are traced, so every chunk reuses one program, and
chunks compose exactly: ``count=a`` then ``count=b`` from ``first_epoch + a`` gives
the same bits as ``count=a + b``. The other arguments are those of :func:`layout_step`;
the per-model function is vmappable over ``embedding`` and ``key``.

``waves``: each epoch's edges in this many waves, one after another, each from
the positions the waves before it left (:func:`_arrange_edges` deals a row's edges
out over the waves). One wave is :func:`layout_step`: every update from the
epoch's start. umap-learn moves the points edge by edge; all at once overshoots
(two ends of a close pair, each pulled past the other by both of the pair's
edges, fly apart), and on mnist-5k codes 8 waves recover umap-learn's clusters
where one does not (module docstring).

``mesh``: a ``jax.sharding.Mesh`` with a ``"data"`` axis (:func:`jaxae.parallel.make_mesh`),
or None for one device. On a mesh each wave is split into equal slices (padded
with edges that never fire), one per device; each device computes its edges'
steps from the whole embedding, scatter-adds them into an ``(N, C)`` step, and
the steps are summed over the mesh (``psum``) into the embedding, which every
device holds. The same updates as on one device, summed in another order. Pass
``capacity`` from :func:`layout_capacity` with the same ``waves`` and
``shards=mesh.size``.

Returns:
  ``(N, C)`` float32 positions.
"""
