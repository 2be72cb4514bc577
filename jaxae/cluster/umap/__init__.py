"""UMAP in JAX: :func:`fit_umap` and the fit's row-wise ``transform``."""

from jaxae.cluster.umap.fit import UMAPFit, check_sizes, fit_umap, nearest_neighbors
from jaxae.cluster.umap.transform import transform_block, transform_epochs, transform_fn

__all__ = [
    "UMAPFit",
    "check_sizes",
    "fit_umap",
    "nearest_neighbors",
    "transform_block",
    "transform_epochs",
    "transform_fn",
]
