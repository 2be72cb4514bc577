"""``umap-gmm``: N2D's clustering, umap-learn's UMAP then a Gaussian mixture.

It follows N2D (McConville et al., "N2D: (Not Too) Deep Clustering via
Clustering the Local Manifold of an Autoencoded Embedding", 2020; rymc/n2d at
6c35936, ``n2d.py`` ``cluster_manifold_in_embedding`` and ``run.sh``): umap-learn's
``UMAP(n_components=10, n_neighbors=20, min_dist=0.0, metric="euclidean",
random_state=seed)`` on the autoencoder's codes, then scikit-learn's
``GaussianMixture(covariance_type="full", n_components=clusters, random_state=seed)``,
whose ``predict`` labels the points (N2D takes ``predict_proba(...).argmax(1)``, the
same). N2D fits one GaussianMixture; ``n_init`` > 1 fits several from seeded starts
and keeps the one with the highest likelihood lower bound (GaussianMixture's own
choice), so no label is used to choose.

umap-learn is the optional extra ``jaxae[umap]``, imported only when ``umap-gmm``
is asked for. With ``random_state`` set it runs on one thread (``n_jobs=1``), and
is then reproducible: two fits on the same codes give the same embedding bit for bit
(umap-learn 0.5.12, numba, this machine). A fitted UMAP can only be pickled, so a
``umap-gmm`` run folder keeps no clusterer and predicts only in the process that
fitted it (``METHOD.unsaved()`` says so).
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from typing import Any

import numpy as np

from jaxae._validate import check_int, check_real, check_rows
from jaxae.cluster.gmm import GMMFit, check_width, fit_gmm
from jaxae.cluster.jax_umap import check_sizes
from jaxae.cluster.kmeans import check_clusters
from jaxae.cluster.registry import Method
from jaxae.config import check_seed
from jaxae.errors import JaxaeError

UMAP_MISSING = "umap-gmm needs umap-learn: pip install 'jaxae[umap]'"


@dataclasses.dataclass(frozen=True, kw_only=True)
class UMAPOptions:
    """UMAP's options (``ClusterConfig.umap``); N2D's: 10 dimensions, 20 neighbours,
    ``min_dist`` 0.

    Attributes:
      dim: the embedding's dimensions (umap-learn's ``n_components``).
      neighbors: umap-learn's ``n_neighbors``.
      min_dist: umap-learn's ``min_dist``.
    """

    dim: int = 10
    neighbors: int = 20
    min_dist: float = 0.0

    def __post_init__(self):
        check_int("umap.dim", self.dim, minimum=1)
        check_int("umap.neighbors", self.neighbors, minimum=2)
        check_real("umap.min_dist", self.min_dist, minimum=0.0)


@dataclasses.dataclass(frozen=True)
class UMAPGMMFit:
    """A fitted ``umap-gmm``.

    Attributes:
      labels: ``(N,)`` int32 component of each training row.
      embedding: ``(N, n_components)`` float32 UMAP embedding of the training codes.
      umap: the fitted ``umap.UMAP`` (its ``transform`` embeds new codes).
      gmm: the :class:`GMMFit` on the embedding.
    """

    labels: np.ndarray
    embedding: np.ndarray
    umap: Any
    gmm: GMMFit

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``(N, F)`` new codes -> ``(N,)`` int32: ``UMAP.transform`` then the mixture.

        On the training codes themselves umap-learn returns the training
        embedding, so the labels are the fit's own; on other codes ``transform``
        places each point among its nearest training points and optimises it
        against them (a perturbation of 1e-7 of the training codes of
        scikit-learn's digits moved 0.2% of the labels).
        """
        features = check_width(features, self.umap._raw_data.shape[1])
        return self.gmm.predict(self.umap.transform(features))

    def arrays(self) -> dict[str, np.ndarray]:
        raise JaxaeError(METHOD.unsaved())


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
) -> UMAPGMMFit:
    """N2D's clustering: UMAP of ``(N, F)`` codes to ``n_components`` dims, then a full GMM.

    Args:
      features: ``(N, F)`` finite numbers (float32 is what UMAP computes in).
      clusters: mixture components, 1 to N.
      n_init: GaussianMixture initialisations (N2D: 1); the highest lower bound wins.
      seed: ``random_state`` of both UMAP and the mixture.
      n_components, n_neighbors, min_dist, metric: UMAP's options (N2D's values).

    Returns:
      A :class:`UMAPGMMFit`.

    Raises:
      JaxaeError: umap-learn is not installed, or an option is out of range.
    """
    features = np.asarray(check_rows("features", features), np.float32)
    n = features.shape[0]
    check_clusters(clusters, n)
    check_int("n_init", n_init, minimum=1)
    check_seed(seed)
    check_sizes(n, n_neighbors, n_components, rows="samples")
    check_real("min_dist", min_dist, minimum=0)
    if not isinstance(metric, str):
        raise JaxaeError(f"metric must be a name such as 'euclidean', got {metric!r}")
    reducer = import_umap().UMAP(
        n_components=n_components,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        random_state=seed,
        n_jobs=1,  # what random_state implies; said, so umap-learn does not warn
    )
    embedding = np.asarray(reducer.fit_transform(features), np.float32)
    gmm = fit_gmm(embedding, clusters=clusters, n_init=n_init, seed=seed)
    return UMAPGMMFit(gmm.labels, embedding, reducer, gmm)


def import_umap():
    """The ``umap`` module, or a one-line ``JaxaeError`` naming the extra to install."""
    try:
        with warnings.catch_warnings():
            # umap-learn warns at import when TensorFlow (for ParametricUMAP) is absent.
            warnings.simplefilter("ignore", ImportWarning)
            return importlib.import_module("umap")
    except ImportError:
        raise JaxaeError(UMAP_MISSING) from None


def _fit(features: np.ndarray, config) -> UMAPGMMFit:
    o = config.umap
    return fit_umap_gmm(
        features, clusters=config.clusters, n_init=config.n_init, seed=config.seed,
        n_components=o.dim, n_neighbors=o.neighbors, min_dist=o.min_dist,
    )  # fmt: skip


def _check(cluster_config, n: int) -> None:
    """Before training: umap-learn is installed, and UMAP's neighbours and dimensions fit
    in ``n`` images (named as the config does)."""
    o = cluster_config.umap
    check_sizes(n, o.neighbors, o.dim, names=("umap.neighbors", "umap.dim"), rows="images")
    import_umap()


METHOD = Method("umap-gmm", "UMAP + GMM", fit=_fit, load=None, pixel_baseline=True, check=_check)
