"""Clustering of codes and its scores.

``METHODS`` is the one list of clustering methods, each a module here with its
:class:`~jaxae.cluster.registry.Method` record: ``kmeans`` (scikit-learn's, or
:func:`kmeans_jax` on the device), ``gmm`` (GaussianMixture), ``umap-gmm`` (N2D:
UMAP then GaussianMixture; needs the extra ``jaxae[umap]``), and ``dec`` / ``idec``
(the encoder and centres refined together on the device, :func:`refine`). Every
fitted method predicts new codes.
"""

from jaxae.cluster import gmm as _gmm
from jaxae.cluster import kmeans as _kmeans
from jaxae.cluster import refine as _refine
from jaxae.cluster import umap_gmm as _umap_gmm
from jaxae.cluster.dec import RefineState, refine_steps, soft_assignment, target_distribution
from jaxae.cluster.gmm import GMMFit, fit_gmm, gmm_arrays, gmm_from_arrays
from jaxae.cluster.jax_kmeans import KMeansResult, kmeans_jax
from jaxae.cluster.kmeans import (
    KMeansFit,
    check_clusters,
    fit_kmeans,
    kmeans,
    predict_nearest,
)
from jaxae.cluster.refine import (
    RefinementStopped,
    RefineResult,
    init_refinement,
    refine,
)
from jaxae.cluster.refine_config import RefineConfig
from jaxae.cluster.registry import Method
from jaxae.cluster.scores import cluster_accuracy, scores
from jaxae.cluster.umap_gmm import UMAPGMMFit, fit_umap_gmm
from jaxae.cluster_options import KMeansOptions, RefineOptions, UMAPOptions

# Name -> method. A new method is a module of its own, one entry here and its name in
# jaxae.cluster_options.METHOD_NAMES (what ClusterConfig accepts; a test holds them equal).
METHODS: dict[str, Method] = {
    m.name: m for m in (_kmeans.METHOD, _gmm.METHOD, _refine.DEC, _refine.IDEC, _umap_gmm.METHOD)
}

__all__ = [
    "METHODS",
    "GMMFit",
    "KMeansFit",
    "KMeansOptions",
    "KMeansResult",
    "Method",
    "RefineConfig",
    "RefineOptions",
    "RefineResult",
    "RefineState",
    "RefinementStopped",
    "UMAPGMMFit",
    "UMAPOptions",
    "check_clusters",
    "cluster_accuracy",
    "fit_gmm",
    "fit_kmeans",
    "fit_umap_gmm",
    "gmm_arrays",
    "gmm_from_arrays",
    "init_refinement",
    "kmeans",
    "kmeans_jax",
    "predict_nearest",
    "refine",
    "refine_steps",
    "scores",
    "soft_assignment",
    "target_distribution",
]
