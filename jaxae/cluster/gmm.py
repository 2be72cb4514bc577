"""``gmm``: a Gaussian mixture of the codes (scikit-learn's GaussianMixture, or
the EM of :mod:`jaxae.cluster.jax_gmm` on the device: ``GMMOptions.backend``).

``n_init`` > 1 fits several from seeded starts and keeps the one with the highest
likelihood lower bound (GaussianMixture's own choice), so no label is used to
choose. Nothing here is pickled: :func:`gmm_arrays` and :func:`gmm_from_arrays`
carry a fitted GaussianMixture as plain arrays (for ``np.savez``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import numpy as np
import scipy.linalg
from sklearn.mixture import GaussianMixture

from jaxae._validate import check_choice, check_int, check_real, check_rows
from jaxae.cluster.kmeans import check_clusters
from jaxae.cluster.registry import Method
from jaxae.cluster_options import GMM_BACKENDS
from jaxae.config import check_seed
from jaxae.errors import JaxaeError
from jaxae.loop import polled

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


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
        features = check_width(features, self.model.means_.shape[1])
        return self.model.predict(features).astype(np.int32)

    def arrays(self) -> dict[str, np.ndarray]:
        """The mixture as plain arrays (:func:`gmm_arrays`)."""
        return gmm_arrays(self.model)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> GMMFit:
        """The fitted mixture back from :meth:`arrays` (no labels: they are the run's)."""
        return cls(np.zeros(0, np.int32), gmm_from_arrays(arrays))


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


def check_width(features, width: int) -> np.ndarray:
    features = np.asarray(check_rows("features", features))
    if features.shape[1] != width:
        raise JaxaeError(
            f"features have {features.shape[1]} columns but the clustering was fitted on "
            f"{width}: pass codes from the same model"
        )
    return features


def fit_mixture(
    features: np.ndarray, *, clusters: int, n_init: int, seed: int, backend: str = "jax",
    reg_covar: float = 1e-6, should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
) -> GMMFit:  # fmt: skip
    """A full-covariance mixture of ``(N, F)`` features with scikit-learn or on the device.

    The JAX backend (:func:`jaxae.cluster.jax_gmm.fit_gmm_jax`) is carried as a
    GaussianMixture built from its arrays, and its labels are that model's
    ``predict``, so what a run saves predicts the labels it reports. ``reg_covar``:
    see :class:`GMMOptions`. ``should_stop`` and ``progress`` reach the JAX
    backend's EM; scikit-learn's fit, one call, runs beside a poll
    (:func:`jaxae.loop.polled`).
    """
    check_choice("backend", backend, GMM_BACKENDS)
    if backend == "sklearn":  # one call: waited for beside a poll
        fit = lambda: fit_gmm(features, clusters=clusters, n_init=n_init, seed=seed,
                              reg_covar=reg_covar)  # fmt: skip
        return polled(fit, should_stop, "scikit-learn's mixture stopped")
    from jaxae.cluster.jax_gmm import fit_gmm_jax

    features = np.asarray(check_rows("features", features), np.float32)
    check_clusters(clusters, features.shape[0])
    check_seed(seed)
    result = fit_gmm_jax(
        features, clusters=clusters, n_init=n_init, seed=seed, reg_covar=reg_covar,
        should_stop=should_stop, progress=progress,
    )  # fmt: skip
    arrays = {
        "weights": result.weights,
        "means": result.means,
        "covariances": result.covariances,
        "covariance_type": np.asarray("full"),
    }
    model = gmm_from_arrays(arrays)
    return GMMFit(model.predict(features).astype(np.int32), model)


@contextlib.contextmanager
def option_names():
    """A mixture's failure inside names the option (``gmm.reg_covar``), as a
    ``ClusterConfig`` spells it, not the library parameter."""
    from jaxae.cluster.jax_gmm import NotPositiveDefinite

    try:
        yield
    except NotPositiveDefinite as e:
        raise NotPositiveDefinite(str(e).replace("reg_covar", "gmm.reg_covar")) from None


def _fit(features: np.ndarray, config, *, devices=None, should_stop=None, progress=False):
    """:func:`fit_mixture` with a ``ClusterConfig``'s options, on one device."""
    with option_names():
        return fit_mixture(
            features, clusters=config.clusters, n_init=config.n_init, seed=config.seed,
            backend=config.gmm.backend, reg_covar=config.gmm.reg_covar,
            should_stop=should_stop, progress=progress,
        )  # fmt: skip


METHOD = Method("gmm", "GMM", fit=_fit, load=GMMFit.from_arrays, pixel_baseline=True)
