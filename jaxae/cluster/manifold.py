"""GaussianMixture clustering of codes, alone (``gmm``) or after UMAP (``umap-gmm``, N2D).

``umap-gmm`` follows N2D (McConville et al., "N2D: (Not Too) Deep Clustering via
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
(umap-learn 0.5.12, numba, this machine).

Nothing here is pickled: :func:`gmm_arrays` and :func:`gmm_from_arrays` carry a
fitted GaussianMixture as plain arrays (for ``np.savez``).
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.mixture import GaussianMixture

from jaxae._validate import check_choice, check_int, check_real, check_rows
from jaxae.cluster.kmeans import check_clusters
from jaxae.config import check_seed
from jaxae.errors import JaxaeError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
UMAP_MISSING = "umap-gmm needs umap-learn: pip install 'jaxae[umap]'"


@dataclasses.dataclass(frozen=True)
class GMMFit:
    """A fitted ``gmm``.

    Attributes:
      labels: ``(N,)`` int32 component of each training row (``model.predict``).
      model: the fitted ``sklearn.mixture.GaussianMixture``.
    """

    labels: np.ndarray
    model: GaussianMixture

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``(N, F)`` new codes -> ``(N,)`` int32 most probable component."""
        features = _check_width(features, self.model.means_.shape[1])
        return self.model.predict(features).astype(np.int32)


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
        features = _check_width(features, self.umap._raw_data.shape[1])
        return self.gmm.predict(self.umap.transform(features))


def fit_gmm(
    features: np.ndarray,
    *,
    clusters: int = 10,
    n_init: int = 1,
    seed: int = 0,
    covariance_type: str = "full",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
) -> GMMFit:
    """GaussianMixture of ``(N, F)`` codes (scikit-learn's, in float64).

    Args:
      features: ``(N, F)`` finite numbers.
      clusters: components, 1 to N.
      n_init: fits from ``n_init`` k-means starts; the highest lower bound wins
        (scikit-learn's choice, no labels involved).
      seed: ``random_state``.
      covariance_type, max_iter, tol, reg_covar: GaussianMixture's options.

    Returns:
      A :class:`GMMFit` whose ``predict`` labels new codes.
    """
    features = np.asarray(check_rows("features", features), np.float64)
    check_clusters(clusters, features.shape[0])
    check_int("n_init", n_init, minimum=1)
    check_seed(seed)
    check_choice("covariance_type", covariance_type, COVARIANCE_TYPES)
    check_int("max_iter", max_iter, minimum=1)
    check_real("tol", tol, minimum=0)
    check_real("reg_covar", reg_covar, minimum=0)
    model = GaussianMixture(
        n_components=clusters,
        covariance_type=covariance_type,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        random_state=seed,
    ).fit(features)
    return GMMFit(model.predict(features).astype(np.int32), model)


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
    check_int("n_neighbors", n_neighbors, minimum=2)
    if n_neighbors >= n:
        raise JaxaeError(
            f"n_neighbors={n_neighbors} needs more than the {n} samples: "
            f"pass n_neighbors={max(2, n - 1)} or less"
        )
    check_int("n_components", n_components, minimum=1)
    if n_components >= n - 1:
        raise JaxaeError(
            f"n_components={n_components} needs more than the {n} samples: "
            f"pass n_components={max(1, n - 2)} or less"
        )
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


def gmm_arrays(model: GaussianMixture) -> dict[str, np.ndarray]:
    """What ``predict`` needs of a fitted GaussianMixture, as arrays for ``np.savez``.

    Returns:
      ``{"weights": (K,), "means": (K, F), "covariances": ..., "covariance_type": str array}``
      (covariances shaped as scikit-learn keeps them for that type).
    """
    return {
        "weights": np.asarray(model.weights_),
        "means": np.asarray(model.means_),
        "covariances": np.asarray(model.covariances_),
        "covariance_type": np.asarray(model.covariance_type),
    }


def gmm_from_arrays(arrays: dict[str, np.ndarray]) -> GaussianMixture:
    """A GaussianMixture that predicts as the one :func:`gmm_arrays` was given.

    The precisions are recomputed from the covariances the way scikit-learn
    computes them (Cholesky factor, then its triangular inverse), so ``predict``
    gives the original's labels.
    """
    covariance_type = check_choice(
        "covariance_type", str(np.asarray(arrays["covariance_type"])), COVARIANCE_TYPES
    )
    weights = np.asarray(arrays["weights"], np.float64)
    means = np.asarray(arrays["means"], np.float64)
    covariances = np.asarray(arrays["covariances"], np.float64)
    if weights.ndim != 1 or means.ndim != 2 or means.shape[0] != weights.shape[0]:
        raise JaxaeError(
            f"mixture arrays do not fit together: weights {weights.shape}, means {means.shape}"
        )
    model = GaussianMixture(n_components=weights.shape[0], covariance_type=covariance_type)
    model.weights_, model.means_, model.covariances_ = weights, means, covariances
    model.precisions_cholesky_ = _precision_cholesky(covariances, covariance_type)
    if covariance_type == "full":
        model.precisions_ = np.einsum(
            "kij,klj->kil", model.precisions_cholesky_, model.precisions_cholesky_
        )
    elif covariance_type == "tied":
        model.precisions_ = model.precisions_cholesky_ @ model.precisions_cholesky_.T
    else:
        model.precisions_ = model.precisions_cholesky_**2
    model.converged_, model.n_iter_, model.lower_bound_ = True, 0, -np.inf
    model.n_features_in_ = means.shape[1]
    return model


def _precision_cholesky(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Upper-triangular factors of the precisions, as scikit-learn's GaussianMixture keeps them."""
    if covariance_type in ("diag", "spherical"):
        if not (covariances > 0).all():
            raise JaxaeError("mixture variances must be positive: the saved arrays are damaged")
        return 1.0 / np.sqrt(covariances)

    def factor(cov):
        try:
            chol = scipy.linalg.cholesky(cov, lower=True)
        except np.linalg.LinAlgError:
            raise JaxaeError(
                "a mixture covariance is not positive definite: the saved arrays are damaged"
            ) from None
        return scipy.linalg.solve_triangular(chol, np.eye(cov.shape[0]), lower=True).T

    if covariance_type == "tied":
        return factor(covariances)
    return np.stack([factor(cov) for cov in covariances])


def _check_width(features, width: int) -> np.ndarray:
    features = np.asarray(check_rows("features", features))
    if features.shape[1] != width:
        raise JaxaeError(
            f"features have {features.shape[1]} columns but the clustering was fitted on "
            f"{width}: pass codes from the same model"
        )
    return features
