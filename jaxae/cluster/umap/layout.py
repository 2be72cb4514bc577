"""UMAP's layout: epochs of attraction along the graph's edges and repulsion from
negative samples, the embedding of every row moving at once.

As umap-learn's ``optimize_layout_euclidean`` (``layouts.py``): per epoch every edge
"due" (:mod:`jaxae.cluster.umap.schedule`) pulls its two ends together and pushes
its head away from negative samples (5 per edge, uniform over the rows), the
gradients clipped at 4, with the learning rate ``1 - epoch / n_epochs``. The curve
``1 / (1 + a d^(2b))`` of the embedding's similarities has ``a`` and ``b`` fitted to
``min_dist`` and ``spread`` (:func:`find_ab_params`); an edge fires about once every
``epochs_per_sample = max / weight`` epochs (:func:`_layout_graph`).

What differs from umap-learn, on purpose: the updates are synchronous in waves.
Each epoch's edges are dealt out into 16 waves (a row's edges spread over them);
within a wave every gradient is computed from the positions the wave starts from
and summed with scatter-adds, and the next wave starts from there. umap-learn
moves points edge by edge (Hogwild on several threads). Fixed shapes, and one seed
gives the same embedding bit for bit, on one device (on a mesh, bit for bit for
that number of devices). One wave per epoch (every update from the epoch's start,
as cuML's seeded mode buffers them) overshoots: at a learning rate near 1 an edge
pulls each end of a close pair past the other, umap-learn's next update of the
pair pulls them back, but both of the pair's edges at once throw them apart. On
the codes of five mnist-5k models, one wave clustered 1.4 points of ACC below
umap-learn on the same codes and fell to 0.78 on one layout seed of one model; 16
waves matched umap-learn's layout from the same graph and start (model 0, three
seeds: 0.884 against 0.885; one wave 0.831).

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

On several devices (``mesh``) the layout splits each wave's edges into P equal
slices, each device finding its due edges (O(E / P) an epoch) and computing their
steps (O(F (r + 2) C / P), memory F (r + 1) C / P: ``layout_capacity(..., waves=W,
shards=P)`` sizes each slice), adding them up into an ``(N, C)`` step that is
summed over the devices (``psum``, N C floats each wave) into the embedding every
device holds. The same steps as on one device, summed in another order: the
embeddings agree to float32 rounding after an epoch or two, but the layout
amplifies rounding (at a learning rate near 1, moves clipped at 4), so after
hundreds of epochs points sit up to a tenth of the embedding's range apart, as
they do when one input row moves by one ulp; the clusters stay about as good (on
400 digits, three layout seeds, KMeans labels of the one- and four-device
embeddings agreed at adjusted Rand indices of 1.0, 1.0 and 0.89, a mixture's at
0.77 to 0.88).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.sparse
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxae._buckets import bucket
from jaxae._validate import check_int
from jaxae.cluster.umap.schedule import _arrange, _sample_rows, _schedule, _schedule_peaks
from jaxae.parallel import to_host

_CLIP = 4.0
# Each layout epoch in this many waves of edges, one after another (layout_epochs).
_WAVES = 16


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


def _rdist_terms(diff, a, b):
    """``(positive, safe, power)``: where the squared distance ``d2`` over the last
    axis is positive, ``d2`` with 1 in place of 0, and ``safe^b`` as
    ``exp(b log safe)``: XLA's ``pow`` took several times as long on a CPU, and the
    layout evaluates it for every negative sample."""
    d2 = jnp.sum(diff * diff, axis=-1)
    positive = d2 > 0.0
    safe = jnp.where(positive, d2, 1.0)
    return positive, safe, jnp.exp(b * jnp.log(safe))


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
where one does not (the module's docstring).

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
