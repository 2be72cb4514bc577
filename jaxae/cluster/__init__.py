"""Clustering of codes and its scores.

Methods: ``kmeans`` (scikit-learn's, or :func:`kmeans_jax` on the device), ``gmm``
(GaussianMixture), ``umap-gmm`` (N2D: UMAP then GaussianMixture; needs the extra
``jaxae[umap]``), and ``dec`` / ``idec`` (the encoder and centres refined together
on the device, :func:`refine`). Every fitted method predicts new codes.
"""

from jaxae.cluster.dec import (
    RefineConfig,
    RefineState,
    refine_steps,
    soft_assignment,
    target_distribution,
)
from jaxae.cluster.jax_kmeans import KMeansResult, kmeans_jax
from jaxae.cluster.kmeans import (
    KMeansFit,
    check_clusters,
    fit_kmeans,
    kmeans,
    kmeans_fit,
    predict_nearest,
)
from jaxae.cluster.manifold import (
    GMMFit,
    UMAPGMMFit,
    fit_gmm,
    fit_umap_gmm,
    gmm_arrays,
    gmm_from_arrays,
)
from jaxae.cluster.refine import (
    RefinementStopped,
    RefineResult,
    init_refinement,
    refine,
)
from jaxae.cluster.scores import cluster_accuracy, scores

__all__ = [
    "GMMFit",
    "KMeansFit",
    "KMeansResult",
    "RefineConfig",
    "RefineResult",
    "RefineState",
    "RefinementStopped",
    "UMAPGMMFit",
    "check_clusters",
    "cluster_accuracy",
    "fit_gmm",
    "fit_kmeans",
    "fit_umap_gmm",
    "gmm_arrays",
    "gmm_from_arrays",
    "init_refinement",
    "kmeans",
    "kmeans_fit",
    "kmeans_jax",
    "predict_nearest",
    "refine",
    "refine_steps",
    "scores",
    "soft_assignment",
    "target_distribution",
]
