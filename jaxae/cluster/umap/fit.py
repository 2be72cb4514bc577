"""UMAP's fit: :func:`fit_umap` runs the stages, :class:`UMAPFit` holds what it found.

The neighbours (:mod:`jaxae.cluster.umap.neighbors`), the fuzzy graph
(:mod:`~jaxae.cluster.umap.graph`) pruned for the layout's epochs (umap-learn's 500
up to 10,000 rows and 200 above), the start (:mod:`~jaxae.cluster.umap.spectral`)
and the layout (:mod:`~jaxae.cluster.umap.layout`). The one-device neighbour search
and the layout's epochs run as loops of :mod:`~jaxae.cluster.umap.drive`, which
polls for a stop. On several devices the search and the layout split over them;
the fuzzy graph and the start are computed once, as on one device, and the fit's
``transform`` (:mod:`~jaxae.cluster.umap.transform`) runs on one device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxae._buckets import bucket
from jaxae._validate import check_choice, check_int, check_real, check_rows
from jaxae.cluster.umap import drive
from jaxae.cluster.umap.graph import _fuzzy_union, _memberships, _prune, _smooth_knn_dist
from jaxae.cluster.umap.layout import (
    _WAVES,
    _layout_graph,
    _pad_edges,
    find_ab_params,
    layout_capacity,
    layout_epochs,
)
from jaxae.cluster.umap.neighbors import _KNN_COLS, _KNN_ROWS, nearest_neighbors
from jaxae.cluster.umap.spectral import INITS, _initial_embedding
from jaxae.cluster.umap.transform import transform
from jaxae.errors import JaxaeError
from jaxae.parallel import make_mesh, replicate, to_host


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
        amplify (:mod:`jaxae.cluster.umap.layout`). The fit's ``transform`` runs on one device.
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
        indices, distances = drive.neighbours(
            x, n_neighbors, rows=min(_KNN_ROWS, n), cols=min(_KNN_COLS, n), **stop
        )
    else:  # one call, split over the devices
        indices, distances = nearest_neighbors(x, x, n_neighbors, self_first=True, devices=devices)
    sigmas, rhos = _smooth_knn_dist(distances, float(n_neighbors), 1.0)
    weights = _memberships(distances, indices, sigmas, rhos, skip_self=True)
    drive.check(should_stop, "after its neighbour search")
    graph = _fuzzy_union(*to_host((indices, weights)), n)
    drive.check(should_stop, "after its fuzzy graph")

    epochs = n_epochs if n_epochs is not None else (500 if n <= 10_000 else 200)
    graph = _prune(graph, epochs if epochs > 10 else (500 if n <= 10_000 else 200))
    a, b = find_ab_params(spread, min_dist)
    rng = np.random.default_rng(seed)
    start = _initial_embedding(
        np.asarray(features, np.float32), graph, n_components, init, rng, should_stop
    )
    drive.check(should_stop, "after its start")
    layout = _pad_edges(_layout_graph(graph), bucket(len(graph.data)))
    shards = 1 if mesh is None else mesh.size
    capacity = layout_capacity(layout, epochs, waves=_WAVES, shards=shards)
    drive.check(should_stop, "after its layout's capacity")
    if mesh is not None:
        layout, start = replicate((to_host(layout), start), mesh)
    program = functools.partial(
        layout_epochs, graph=layout, key=jax.random.key(seed), a=a, b=b, n_epochs=epochs,
        capacity=capacity, waves=_WAVES, mesh=mesh,
    )  # fmt: skip
    embedding = drive.layout(
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
