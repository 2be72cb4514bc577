"""``kmeans``: KMeans on codes (scikit-learn's, or the on-device one), and
nearest-centre prediction, which DEC and IDEC's refined centres use too."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.cluster import KMeans

from jaxae._validate import check_choice, check_int, check_real, check_rows
from jaxae.cluster.registry import Method
from jaxae.cluster_options import KMEANS_BACKENDS
from jaxae.config import ClusterConfig, check_seed
from jaxae.errors import JaxaeError


class KMeansFit(NamedTuple):
    """Clusters given by centres: a fitted KMeans (or DEC/IDEC's refined centres).

    Attributes:
      labels: ``(N,)`` int32 index of each row's nearest centre.
      centers: ``(K, F)`` float64 centres.
      inertia: sum of squared distances of rows to their centre (NaN where unknown).
    """

    labels: np.ndarray
    centers: np.ndarray
    inertia: float = float("nan")

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``(N, F)`` new features -> ``(N,)`` int32 index of the nearest centre."""
        return predict_nearest(self.centers, features)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"centers": np.asarray(self.centers, np.float64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> KMeansFit:
        """The centres back from :meth:`arrays` (no labels: they are the run's)."""
        centers = np.asarray(arrays["centers"], np.float64)
        if centers.ndim != 2 or not len(centers) or not np.isfinite(centers).all():
            raise JaxaeError(f"the saved centres are damaged (shape {centers.shape})")
        return cls(np.zeros(0, np.int32), centers)


def check_clusters(clusters: int, n: int) -> None:
    """A ``JaxaeError`` unless 1 <= ``clusters`` <= ``n`` samples."""
    check_int("clusters", clusters, minimum=1)
    if clusters > n:
        raise JaxaeError(
            f"{clusters} clusters is more than the {n} samples: pass clusters={n} or less"
        )


def fit_kmeans(
    features: np.ndarray,
    *,
    clusters: int = 10,
    n_init: int = 3,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    backend: str = "sklearn",
) -> KMeansFit:
    """k-means++ KMeans of ``(N, F)`` features, keeping the centres for ``predict``.

    Args:
      features: ``(N, F)`` finite numbers.
      clusters, n_init, max_iter, tol, seed: scikit-learn's ``n_clusters``,
        ``n_init``, ``max_iter``, ``tol`` and ``random_state``.
      backend: ``"sklearn"`` (float64 on the host) or ``"jax"`` (the jitted
        on-device k-means of :mod:`jaxae.cluster.jax_kmeans`, for many codes on a GPU).

    Returns:
      A :class:`KMeansFit`; its labels are each row's nearest centre.
    """
    check_choice("backend", backend, KMEANS_BACKENDS)
    features = check_rows("features", features)
    check_clusters(clusters, features.shape[0])
    check_int("n_init", n_init, minimum=1)
    check_int("max_iter", max_iter, minimum=1)
    check_real("tol", tol, minimum=0)
    check_seed(seed)
    if backend == "jax":
        from jaxae.cluster.jax_kmeans import kmeans_jax

        result = kmeans_jax(
            features,
            clusters=clusters,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            seed=seed,
        )
        return KMeansFit(result.labels, result.centers.astype(np.float64), result.inertia)
    model = KMeans(
        n_clusters=clusters,
        init="k-means++",
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        random_state=seed,
    ).fit(np.asarray(features, np.float64))
    return KMeansFit(model.labels_.astype(np.int32), model.cluster_centers_, float(model.inertia_))


def kmeans(
    features: np.ndarray, config: ClusterConfig | None = None, *, backend: str = "sklearn"
) -> np.ndarray:
    """Cluster (N, F) features with k-means++ KMeans: (N,) int labels.

    ``config`` gives the options (default: ``ClusterConfig()``, the original
    recipe's); ``backend`` "sklearn" uses scikit-learn's KMeans, "jax" the jitted
    on-device k-means of ``jaxae.cluster.jax_kmeans`` (for many codes, on a GPU).
    """
    return _fit(features, config or ClusterConfig(), backend=backend).labels


def _fit(
    features: np.ndarray, config: ClusterConfig, *, backend: str | None = None, devices=None,
    should_stop=None, progress=False,
) -> KMeansFit:  # fmt: skip
    """:func:`fit_kmeans` with a ``ClusterConfig``'s options (its backend unless given);
    on one device whatever ``devices`` says, in one call (``should_stop`` and
    ``progress`` are for the methods that drive a loop)."""
    c, o = config, config.kmeans
    return fit_kmeans(
        features, clusters=c.clusters, n_init=c.n_init, max_iter=o.max_iter, tol=o.tol,
        seed=c.seed, backend=backend or o.backend,
    )  # fmt: skip


def predict_nearest(centers: np.ndarray, features: np.ndarray) -> np.ndarray:
    """``(N,)`` int32 index of the nearest of ``(K, F)`` centres for ``(N, F)`` features.

    Squared distances in float64, computed as differences (not the expanded
    ``|x|^2 - 2 x.c + |c|^2``), so points near a boundary go where scikit-learn's
    labels put them.
    """
    centers = np.asarray(centers, np.float64)
    features = np.asarray(check_rows("features", features), np.float64)
    if features.shape[1] != centers.shape[1]:
        raise JaxaeError(
            f"features have {features.shape[1]} columns but the centres {centers.shape[1]}: "
            "pass codes from the model the clusters were fitted on"
        )
    labels = np.empty(features.shape[0], np.int32)
    step = max(1, 2**22 // max(1, centers.size))  # rows per block: ~32 MB of differences
    for start in range(0, features.shape[0], step):
        block = features[start : start + step]
        d2 = ((block[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        labels[start : start + step] = d2.argmin(axis=1)
    return labels


METHOD = Method("kmeans", "KMeans", fit=_fit, load=KMeansFit.from_arrays)
