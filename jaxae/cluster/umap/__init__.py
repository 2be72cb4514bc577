"""UMAP in JAX: exact neighbours, umap-learn's fuzzy graph, a synchronous layout.

It follows umap-learn 0.5.12 (``umap_.py``, ``layouts.py``, ``spectral.py``) step by
step, for the Euclidean metric only, one module per step:

1. :mod:`~jaxae.cluster.umap.neighbors`: the ``k = n_neighbors`` nearest neighbours
   of every row, the row itself first; exact, by blocked matrix products.
2. :mod:`~jaxae.cluster.umap.graph`: the fuzzy simplicial set, each row's ``rho``
   and ``sigma``, its memberships and their fuzzy union, pruned for the epochs.
3. :mod:`~jaxae.cluster.umap.spectral`: the start, the graph's spectral embedding
   (or the features' principal components).
4. :mod:`~jaxae.cluster.umap.layout`: the layout's epochs, synchronous in waves,
   which edge fires when and what it draws coming in closed form from the epoch
   (:mod:`~jaxae.cluster.umap.schedule`).

:mod:`~jaxae.cluster.umap.fit` runs them (:func:`fit_umap`), its long loops through
:mod:`~jaxae.cluster.umap.drive` so that a stop is seen within seconds;
:mod:`~jaxae.cluster.umap.transform` embeds new rows among a fit, row by row, with
the layout's terms. Each module says where and why it differs from umap-learn; on
several devices the search and the layout split over them (``devices=``).

Example:
  >>> import numpy as np
  >>> from jaxae.cluster.umap import fit_umap
  >>> x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
  >>> x[:150] += 6.0
  >>> fit = fit_umap(x, n_components=2, n_neighbors=10, n_epochs=50)
  >>> fit.embedding.shape, fit.transform(x[:5]).shape
  ((300, 2), (5, 2))
"""

from jaxae.cluster.umap.fit import UMAPFit, check_sizes, fit_umap
from jaxae.cluster.umap.layout import (
    LayoutGraph,
    find_ab_params,
    layout_capacity,
    layout_epochs,
    layout_step,
)
from jaxae.cluster.umap.neighbors import nearest_neighbors
from jaxae.cluster.umap.spectral import INITS
from jaxae.cluster.umap.transform import transform_block, transform_epochs, transform_fn

__all__ = [
    "INITS",
    "LayoutGraph",
    "UMAPFit",
    "check_sizes",
    "find_ab_params",
    "fit_umap",
    "layout_capacity",
    "layout_epochs",
    "layout_step",
    "nearest_neighbors",
    "transform_block",
    "transform_epochs",
    "transform_fn",
]
