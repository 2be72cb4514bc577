"""``umap-gmm``: N2D's clustering, UMAP then a Gaussian mixture.

It follows N2D (McConville et al., "N2D: (Not Too) Deep Clustering via
Clustering the Local Manifold of an Autoencoded Embedding", 2020; rymc/n2d at
6c35936, ``n2d.py`` ``cluster_manifold_in_embedding`` and ``run.sh``): UMAP with
``n_components=10, n_neighbors=20, min_dist=0.0``, Euclidean, seeded, on the
autoencoder's codes, then a full-covariance Gaussian mixture whose most probable
component labels each point (N2D takes ``predict_proba(...).argmax(1)``, the same).
N2D fits one mixture; ``n_init`` > 1 fits several from seeded starts and keeps the
one with the highest likelihood lower bound, so no label is used to choose.

Two UMAP backends (``UMAPOptions.backend``); the JAX one is the default, as it
clusters as umap-learn does (docs/jax-umap.md):

- ``"umap-learn"``: the reference, the optional extra ``jaxae[umap]``, imported
  only when asked for. Seeded, it runs on one thread and is reproducible bit for
  bit. A fitted ``umap.UMAP`` can only be pickled, so such a run folder keeps no
  clusterer and predicts only in the process that fitted it.
- ``"jax"``: :mod:`jaxae.cluster.umap`, on the device, needing no extra. Its fit
  is plain arrays (training codes, embedding, a and b), so the run folder keeps it
  and ``jaxae predict`` / ``jaxae.load(run).predict`` assign new images. A new
  image's label depends on that image and the run alone, bit for bit on one CPU,
  whatever else is in the call (:mod:`jaxae.cluster.umap.transform`).

The mixture's backend is ``ClusterConfig.gmm`` (:mod:`jaxae.cluster.gmm`).

Identical rows get one label: UMAP and the mixture are fitted on the distinct
rows (in the order they first appear, so data without duplicates gives the fit it
always gave), and each copy takes its row's embedding and label, as umap-learn's
``unique=True`` gives duplicates one embedding. The mixture counts each distinct
row once: copies of one image are one point of the embedding, and counted by
their number they would be a point mass that a full-covariance component can
collapse onto (its likelihood grows without bound but for ``reg_covar``), which a
choice among starts by likelihood would then prefer.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxae._rowwise import map_blocks
from jaxae._validate import check_choice, check_int, check_real, check_rows
from jaxae.cluster import jax_gmm
from jaxae.cluster.gmm import GMMFit, check_width, fit_mixture, option_names
from jaxae.cluster.kmeans import check_clusters
from jaxae.cluster.registry import Method
from jaxae.cluster.umap import UMAPFit, check_sizes, fit_umap, transform_block, transform_epochs
from jaxae.cluster_options import UMAP_BACKENDS, UMAP_SPREAD
from jaxae.config import check_seed
from jaxae.errors import JaxaeError
from jaxae.loop import check_stop

UMAP_MISSING = "umap-gmm needs umap-learn: pip install 'jaxae[umap]', or pass umap.backend=jax"


@dataclasses.dataclass(frozen=True)
class UMAPGMMFit:
    """A fitted ``umap-gmm``.

    Attributes:
      labels: ``(N,)`` int32 component of each training row.
      embedding: ``(N, n_components)`` float32 UMAP embedding of the training codes.
      umap: the fitted ``umap.UMAP``, or the JAX backend's :class:`UMAPFit`; its
        ``transform`` embeds new codes.
      gmm: the :class:`GMMFit` on the embedding of the distinct rows.
      unique_labels: ``(U,)`` int32 label of each distinct training row, in the
        order of umap-learn's ``_raw_data`` (umap-learn's backend: ``predict`` hands
        them back for training rows); None for the JAX backend, whose transform
        keeps a training row's embedding itself.
    """

    labels: np.ndarray
    embedding: np.ndarray
    umap: Any
    gmm: GMMFit
    unique_labels: np.ndarray | None = None

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``(N, F)`` new codes -> ``(N,)`` int32: UMAP's ``transform`` then the mixture.

        A row equal to a training row gets that row's label (``self.labels``), with
        either backend. Other rows are placed among their nearest training codes
        and optimised against them. With the JAX backend each row's label depends
        on the row alone (its bits on one CPU; :mod:`jaxae.cluster.umap.transform`),
        so any split of the rows into calls gives the same labels. umap-learn's
        ``transform`` does not promise that: its schedule follows the largest
        membership of the batch, its epochs the batch's size (100 up to 10,000
        rows, 30 above), its random draws the rows' order. So with umap-learn's
        backend jaxae promises the training rows' labels and, seeded, the same
        labels for the same call again; a new row's label can change with the other
        new rows of the call.
        """
        if isinstance(self.umap, UMAPFit):
            features = np.asarray(check_width(features, self.umap.features.shape[1]), np.float32)
            labels, arrays = self.labels_program()
            return np.asarray(labels(arrays, jnp.asarray(features)))
        features = np.asarray(check_width(features, self.umap._raw_data.shape[1]), np.float32)
        index = {} if self.unique_labels is None else _row_index(self.umap._raw_data)
        known = np.array([index.get(_row_key(row), -1) for row in features], np.int64)
        labels = np.where(known >= 0, self.unique_labels[known], 0).astype(np.int32)
        new = known < 0
        if new.any():
            labels[new] = self.gmm.predict(self.umap.transform(features[new]))
        return labels

    def labels_fn(self):
        """The JAX backend's pure ``labels(codes)`` function, else None.

        ``(Q, F)`` codes -> ``(Q,)`` int32: their neighbours among the training codes,
        the embedding (:func:`jaxae.cluster.umap.transform.transform_fn`), then the
        most probable mixture component (:func:`jaxae.cluster.jax_gmm.predict`), in
        one jitted program, in blocks of rows, each row's label from that row alone.
        ``n_epochs=`` (static) overrides the transform's epochs
        (:func:`~jaxae.cluster.umap.transform.transform_epochs` of the fit's).
        Compose it with ``jaxae.encode_fn`` inside your own ``jax.jit`` to go from
        pixels to labels in one program::

            fit = jaxae.load(run).clusterer.fitted
            labels = fit.labels_fn()
            program = jax.jit(lambda p, x: labels(jaxae.encode_fn(p, x, cfg)))

        ``jaxae.load(run).predict`` compiles the same program itself
        (:meth:`labels_program`), with the encoder in the same blocks of rows, so
        an image's codes too are its own bits whatever its batch (``encode_fn`` on
        a whole batch may round a row by the batch's size).
        """
        if not isinstance(self.umap, UMAPFit):
            return None
        return functools.partial(_labels, self._label_arrays(), **self._options())

    def labels_program(self) -> tuple[Callable, tuple[jax.Array, ...]] | None:
        """``(labels, arrays)``, or None for umap-learn's UMAP.

        ``labels(arrays, codes)`` is :meth:`labels_fn`'s function with its options
        bound in a hashable value, so a ``jax.jit`` taking it static compiles once
        per shape, and the arrays (training codes, embedding, mixture) traced.
        ``Encoder.predict`` jits the encoder and this as one program per size
        bucket. Each row's label depends on that row alone, so the rows the encoder
        pads with leave the others' labels unchanged.
        """
        if not isinstance(self.umap, UMAPFit):
            return None
        return _Labels(**self._options()), self._label_arrays()

    def _options(self) -> dict[str, Any]:
        u = self.umap
        return dict(
            n_neighbors=u.n_neighbors, a=u.a, b=u.b, seed=u.seed,
            n_epochs=transform_epochs(u.n_epochs),
        )  # fmt: skip

    def _label_arrays(self) -> tuple[jax.Array, ...]:
        u, m = self.umap, self.gmm.model
        return tuple(
            jnp.asarray(a, jnp.float32)
            for a in (u.features, u.embedding, m.weights_, m.means_, m.covariances_)
        )

    def arrays(self) -> dict[str, np.ndarray] | None:
        """The JAX backend's UMAP and the mixture as plain arrays; None for umap-learn's
        UMAP, which can only be pickled."""
        if not isinstance(self.umap, UMAPFit):
            return None
        return {
            **{f"umap_{k}": v for k, v in self.umap.arrays().items()},
            **{f"gmm_{k}": v for k, v in self.gmm.arrays().items()},
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> UMAPGMMFit:
        """The fit back from :meth:`arrays` (no labels: they are the run's)."""
        umap = UMAPFit.from_arrays({k[5:]: v for k, v in arrays.items() if k.startswith("umap_")})
        gmm = GMMFit.from_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("gmm_")})
        if gmm.model.covariance_type != "full":  # what umap-gmm fits, and labels_fn reads
            raise JaxaeError(
                f"the saved mixture has {gmm.model.covariance_type!r} covariances, not the "
                "'full' ones umap-gmm fits: the saved arrays are damaged"
            )
        if gmm.model.means_.shape[1] != umap.embedding.shape[1]:
            raise JaxaeError(
                f"the mixture has {gmm.model.means_.shape[1]} dimensions but the UMAP "
                f"embedding {umap.embedding.shape[1]}: the saved arrays are damaged"
            )
        return cls(np.zeros(0, np.int32), umap.embedding, umap, gmm)


@dataclasses.dataclass(frozen=True)
class _Labels:
    """:func:`_labels` with its static options bound; hashable by value."""

    n_neighbors: int
    a: float
    b: float
    seed: int
    n_epochs: int

    def __call__(self, arrays, codes):
        return _labels(arrays, codes, **dataclasses.asdict(self))


@functools.partial(jax.jit, static_argnames=("n_neighbors", "a", "b", "seed", "n_epochs"))
def _labels(arrays, codes, *, n_neighbors, a, b, seed, n_epochs):
    features, embedding, weights, means, covariances = arrays

    def block(rows):
        moved = transform_block(
            rows, features=features, embedding=embedding, n_neighbors=n_neighbors, a=a,
            b=b, seed=seed, n_epochs=n_epochs,
        )  # fmt: skip
        return jax_gmm.predict(moved, weights, means, covariances)

    return map_blocks(block, jnp.asarray(codes, jnp.float32))


@jax.jit
def _mixture_labels(embedding, weights, means, covariances):
    """``(N,)`` labels of training embeddings, in the blocks :func:`_labels` uses, so
    a training row predicted later gets these very labels."""
    return map_blocks(lambda rows: jax_gmm.predict(rows, weights, means, covariances), embedding)


def unique_rows(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``(N, F)`` features, in the order they first appear.

    Returns:
      ``(U,)`` index of each distinct row's first copy (ascending), and ``(N,)`` the
      distinct row of each row: ``features[first][inverse]`` equals ``features``.
    """
    _, first, inverse = np.unique(features, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order], rank[inverse.reshape(-1)]


def _row_key(row: np.ndarray) -> bytes:
    return (row + np.float32(0.0)).tobytes()  # + 0: -0.0 and 0.0 are one value


def _row_index(rows: np.ndarray) -> dict[bytes, int]:
    """Each of ``(U, F)`` distinct float32 rows' place, by its values."""
    rows = np.asarray(rows, np.float32)
    return {_row_key(row): i for i, row in enumerate(rows)}


def fit_umap_gmm(
    features: np.ndarray,
    *,
    clusters: int = 10,
    n_init: int = 1,
    seed: int = 0,
    n_components: int = 10,
    n_neighbors: int = 20,
    min_dist: float = 0.0,
    metric: str = "euclidean",
    n_epochs: int | None = None,
    backend: str = "jax",
    gmm_backend: str = "jax",
    devices: int | str | None = None,
    gmm_reg_covar: float = 1e-6,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
) -> UMAPGMMFit:
    """N2D's clustering: UMAP of ``(N, F)`` codes to ``n_components`` dims, then a full GMM.

    Args:
      features: ``(N, F)`` finite numbers (float32 is what UMAP computes in); UMAP
        and the mixture are fitted on the distinct rows, each copy labelled as its row.
      clusters: mixture components, 1 to N.
      n_init: mixture initialisations (N2D: 1); the highest lower bound wins.
      seed: the random state of both UMAP and the mixture.
      n_components, n_neighbors, min_dist, metric: UMAP's options (N2D's values;
        the JAX backend is Euclidean only).
      n_epochs: UMAP's layout epochs; ``None`` for umap-learn's default (500 up to
        10,000 rows, 200 above).
      backend: ``"umap-learn"`` or ``"jax"`` (:func:`jaxae.cluster.umap.fit_umap`).
      gmm_backend: ``"sklearn"`` or ``"jax"`` (:func:`jaxae.cluster.gmm.fit_mixture`).
      devices: the JAX UMAP's neighbour search and layout over this many devices
        (or "all"), as ``fit_umap`` takes them; umap-learn and the mixture ignore it.
      gmm_reg_covar: the mixture's ``reg_covar`` (:class:`jaxae.cluster.gmm.GMMOptions`).
      should_stop, progress: polled, and shown, every couple of seconds of the JAX
        UMAP and the JAX mixture (``jaxae.loop.drive``); umap-learn's fit is one call.

    Returns:
      A :class:`UMAPGMMFit`.

    Raises:
      JaxaeError: umap-learn is not installed (its backend), or an option is out of range.
      jaxae.loop.Stopped: ``should_stop()`` returned True.
    """
    features = np.asarray(check_rows("features", features), np.float32)
    n = features.shape[0]
    check_clusters(clusters, n)
    check_int("n_init", n_init, minimum=1)
    check_seed(seed)
    check_sizes(n, n_neighbors, n_components, rows="samples")
    check_real("min_dist", min_dist, minimum=0, maximum=UMAP_SPREAD)
    check_choice("backend", backend, UMAP_BACKENDS)
    if n_epochs is not None:
        check_int("n_epochs", n_epochs, minimum=1)
    if not isinstance(metric, str):
        raise JaxaeError(f"metric must be a name such as 'euclidean', got {metric!r}")
    if backend == "jax" and metric != "euclidean":
        raise JaxaeError(
            f"metric {metric!r} needs backend='umap-learn': the jax backend is Euclidean only"
        )
    first, inverse = unique_rows(features)
    distinct = features[first]
    if distinct.shape[0] < clusters:
        raise JaxaeError(
            f"{clusters} clusters is more than the {distinct.shape[0]} distinct samples: "
            f"pass clusters={distinct.shape[0]} or less, or more distinct samples"
        )
    check_sizes(distinct.shape[0], n_neighbors, n_components, rows="distinct samples")
    if backend == "jax":
        reducer = fit_umap(
            distinct, n_components=n_components, n_neighbors=n_neighbors,
            min_dist=min_dist, n_epochs=n_epochs, seed=seed, devices=devices,
            should_stop=should_stop, progress=progress,
        )  # fmt: skip
        embedding = reducer.embedding
    else:
        reducer = import_umap().UMAP(
            n_components=n_components,
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            metric=metric,
            n_epochs=n_epochs,
            random_state=seed,
            n_jobs=1,  # what random_state implies; said, so umap-learn does not warn
        )
        embedding = np.asarray(reducer.fit_transform(distinct), np.float32)
    check_stop(should_stop, "umap-gmm stopped after its UMAP")  # umap-learn's is not stoppable
    gmm = fit_mixture(
        embedding, clusters=clusters, n_init=n_init, seed=seed, backend=gmm_backend,
        reg_covar=gmm_reg_covar, should_stop=should_stop, progress=progress,
    )  # fmt: skip
    if backend == "jax":  # labels as predict gives them: the posterior on the device
        labels = np.asarray(_mixture_labels(*(jnp.asarray(a, jnp.float32) for a in (
            embedding, gmm.model.weights_, gmm.model.means_, gmm.model.covariances_))))  # fmt: skip
        return UMAPGMMFit(labels[inverse], embedding[inverse], reducer, gmm)
    labels = np.asarray(gmm.labels, np.int32)
    return UMAPGMMFit(labels[inverse], embedding[inverse], reducer, gmm, unique_labels=labels)


def import_umap():
    """The ``umap`` module, or a one-line ``JaxaeError`` naming the extra to install."""
    try:
        with warnings.catch_warnings():
            # umap-learn warns at import when TensorFlow (for ParametricUMAP) is absent.
            warnings.simplefilter("ignore", ImportWarning)
            return importlib.import_module("umap")
    except ImportError:
        raise JaxaeError(UMAP_MISSING) from None


def _fit(features: np.ndarray, config, *, devices=None, should_stop=None, progress=False):
    o = config.umap
    with option_names():
        return fit_umap_gmm(
            features, clusters=config.clusters, n_init=config.n_init, seed=config.seed,
            n_components=o.dim, n_neighbors=o.neighbors, min_dist=o.min_dist,
            n_epochs=o.epochs, backend=o.backend, gmm_backend=config.gmm.backend,
            devices=devices, gmm_reg_covar=config.gmm.reg_covar, should_stop=should_stop,
            progress=progress,
        )  # fmt: skip


def _check(cluster_config, n: int) -> None:
    """Before training: UMAP's neighbours and dimensions fit in ``n`` images (named as
    the config does), and umap-learn is installed where it is the backend."""
    o = cluster_config.umap
    check_sizes(n, o.neighbors, o.dim, names=("umap.neighbors", "umap.dim"), rows="images")
    if o.backend == "umap-learn":
        import_umap()


METHOD = Method(
    "umap-gmm", "UMAP + GMM", fit=_fit, load=UMAPGMMFit.from_arrays, pixel_baseline=True,
    check=_check, save_with="refit with umap.backend=jax, or predict",
)  # fmt: skip
