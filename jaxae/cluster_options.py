"""Each clustering method's options as a run gives and records them: the sections of
:class:`jaxae.config.ClusterConfig` (``ClusterConfig(method="umap-gmm", umap={"neighbors":
15})`` builds its ``umap`` section as a :class:`UMAPOptions`).

They live here, apart from their methods in :mod:`jaxae.cluster`, because
:mod:`jaxae.config` builds them when a config is made and every method imports
:mod:`jaxae.config`: this module imports neither, so both import it and neither
imports the other. A method reads its options from the config it is given
(``RefineOptions`` becomes the :class:`jaxae.cluster.refine_config.RefineConfig` a
refinement runs with in :func:`jaxae.cluster.refine.config_for`). A method with
options of its own adds its dataclass here, an entry of ``OPTION_SECTIONS`` and a
field of ``ClusterConfig``; its flags are mapped in ``jaxae.cli.run.PRESET_FIELDS``.
"""

from __future__ import annotations

import dataclasses
import re

from jaxae._validate import MAX_STEPS, check_choice, check_int, check_real
from jaxae.augment import AugmentConfig
from jaxae.errors import JaxaeError

# The clustering methods by name, in the order of jaxae.cluster.METHODS (their records;
# a test holds the two equal): what ClusterConfig.method may be.
METHOD_NAMES = ("kmeans", "gmm", "dec", "idec", "umap-gmm")
KMEANS_BACKENDS = ("sklearn", "jax")
GMM_BACKENDS = ("sklearn", "jax")
UMAP_BACKENDS = ("umap-learn", "jax")
UMAP_SPREAD = 1.0  # UMAP's spread: umap-learn's default, which neither backend changes
# The optimiser each method that refines the encoder runs with, as its anchor refines
# MNIST: DEC-keras' SGD, IDEC's Adam (jaxae.cluster.dec). RefineConfig.for_method starts
# from it; RefineOptions.lr=None stands for its rate.
REFINE_OPTIMIZERS = {
    "dec": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9},
    "idec": {"optimizer": "adam", "lr": 1e-3, "momentum": 0.0},
}
# What a refinement can start from (RefineOptions.start): clusters of the pretrained codes.
STARTS = ("kmeans", "umap-gmm")
# The default budget of a refinement, in passes over the data (RefineOptions.max_steps):
# IDEC-DA from N2D's clusters converged within 53-90 passes on the MNIST test digits and
# mnist-5k (docs/results-mnist.md).
MAX_PASSES = 100


@dataclasses.dataclass(frozen=True, kw_only=True)
class KMeansOptions:
    """KMeans' options (``ClusterConfig.kmeans``): the ``kmeans`` method, the centres
    DEC and IDEC start from, and the KMeans pixel baseline.

    Attributes:
      max_iter, tol: scikit-learn's (the original recipe's: 300, 1e-4).
      backend: ``"sklearn"`` or ``"jax"`` (on the device) for the codes; the pixel
        baseline always uses scikit-learn.
    """

    max_iter: int = 300
    tol: float = 1e-4
    backend: str = "sklearn"

    def __post_init__(self):
        # The JAX backend counts iterations in int32 on the device.
        check_int("kmeans.max_iter", self.max_iter, minimum=1, maximum=MAX_STEPS)
        check_real("kmeans.tol", self.tol, minimum=0.0)
        check_choice("kmeans.backend", self.backend, KMEANS_BACKENDS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GMMOptions:
    """The Gaussian mixture's options (``ClusterConfig.gmm``), for ``gmm``, the mixture
    of ``umap-gmm`` and their pixel baselines.

    Attributes:
      backend: ``"jax"`` (the default: EM on the device,
        :func:`jaxae.cluster.jax_gmm.fit_gmm_jax`; its k-means starts differ from
        scikit-learn's, so the same seed gives another, equally likely, mixture) or
        ``"sklearn"`` (scikit-learn's GaussianMixture, the reference).
      reg_covar: added to each covariance's diagonal. scikit-learn's is in the
        features' units; the JAX backend's in units of their mean variance, and at
        least one float32 epsilon per feature (:mod:`jaxae.cluster.jax_gmm`).
    """

    backend: str = "jax"
    reg_covar: float = 1e-6

    def __post_init__(self):
        check_choice("gmm.backend", self.backend, GMM_BACKENDS)
        check_real("gmm.reg_covar", self.reg_covar, minimum=0.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class UMAPOptions:
    """UMAP's options (``ClusterConfig.umap``); N2D's: 10 dimensions, 20 neighbours,
    ``min_dist`` 0.

    Attributes:
      dim: the embedding's dimensions (umap-learn's ``n_components``).
      neighbors: umap-learn's ``n_neighbors``.
      min_dist: umap-learn's ``min_dist``, from 0 to its ``spread`` (1).
      backend: ``"jax"`` (the default: on the device; the run folder keeps it and
        predicts new images) or ``"umap-learn"`` (the reference).
      epochs: layout epochs (umap-learn's ``n_epochs``); ``None`` for umap-learn's
        default, 500 up to 10,000 rows and 200 above. Fewer are quicker and coarser.
    """

    dim: int = 10
    neighbors: int = 20
    min_dist: float = 0.0
    backend: str = "jax"
    epochs: int | None = None

    def __post_init__(self):
        check_choice("umap.backend", self.backend, UMAP_BACKENDS)
        check_int("umap.dim", self.dim, minimum=1)
        check_int("umap.neighbors", self.neighbors, minimum=2)
        # Both backends fit UMAP's curve with spread 1, which min_dist may not pass.
        check_real("umap.min_dist", self.min_dist, minimum=0.0, maximum=UMAP_SPREAD)
        if self.epochs is not None:  # the layout's epoch counter is int32 on the device
            check_int("umap.epochs", self.epochs, minimum=1, maximum=MAX_STEPS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RefineOptions:
    """DEC and IDEC's options (``ClusterConfig.refine``); DEC-keras' for MNIST.

    Attributes:
      update_interval: steps between updates of the target P (140).
      tol: stop once fewer than this fraction of assignments changed between two
        updates (0.001).
      max_steps: the most optimiser steps; None (the default) for ``MAX_PASSES``
        passes over the data, so the budget scales with it (the anchors' fixed
        20,000 steps are 73 passes of 70,000 images but 512 of 10,000).
      gamma: IDEC's weight of the KL loss (0.1).
      lr: DEC's SGD learning rate; None (the default) for the method's own, which
        ``ClusterConfig`` fills in (:meth:`for_method`): SGD 0.01 for DEC, Adam
        0.001 for IDEC. IDEC's rate is fixed at its MNIST setting; another is refused.
      batch_size: rows per step, taken in data order (256).
      shift, rotate: DEC-DA (Guo et al. 2018): each step's batch moved by up to
        ``shift`` of the width and height and turned by up to ``rotate`` degrees
        (their 0.1 and 10) before Q is computed from it, while the target P comes
        from the clean images; 0 and 0 (the default) refine on the images as they are.
      start: the clusters of the pretrained codes that the refinement starts from,
        their centres being each cluster's mean code: ``"kmeans"`` (DEC's, the
        default; ``n_init`` starts) or ``"umap-gmm"`` (N2D's UMAP and Gaussian
        mixture, with the run's ``umap`` and ``gmm`` options and ``n_init``).
      guard: stop a model whose clusters degenerate, or every model when the seeds
        drift apart, and keep the start (:mod:`jaxae.cluster.guard`; True).
    """

    update_interval: int = 140
    tol: float = 0.001
    max_steps: int | None = None
    gamma: float = 0.1
    lr: float | None = None
    batch_size: int = 256
    shift: float = 0.0
    rotate: float = 0.0
    start: str = "kmeans"
    guard: bool = True

    def for_method(self, method: str) -> RefineOptions:
        """These options as ``method`` refines with them: for DEC and IDEC, ``lr``
        filled in with the rate their optimiser uses (``REFINE_OPTIMIZERS``),
        what a run's record says (``ClusterConfig.to_dict``); unchanged for a method
        that does not refine.

        Raises:
          JaxaeError: ``lr`` set for IDEC to another rate than its Adam's, or ``gamma``
            changed for DEC, which has no reconstruction loss for it to weigh against.
        """
        if method not in REFINE_OPTIMIZERS:
            return self
        if method == "dec" and self.gamma != RefineOptions.gamma:
            raise JaxaeError(
                f"refine.gamma={self.gamma} weighs IDEC's clustering loss against its "
                "reconstruction loss, which DEC does not have: leave refine.gamma unset for dec"
            )
        own = REFINE_OPTIMIZERS[method]["lr"]
        if method == "idec" and self.lr not in (None, own):
            raise JaxaeError(
                f"refine.lr={self.lr} sets DEC's SGD rate, but IDEC refines with Adam at "
                f"{own}, its MNIST setting: leave refine.lr unset for idec"
            )
        return self if self.lr is not None else dataclasses.replace(self, lr=own)

    @staticmethod
    def recorded_lr(method: str, lr: float | None) -> float | None:
        """A record's ``lr`` (:meth:`for_method`'s) as these options take it: None where
        it is the method's own rate, and always for IDEC, whose Adam ran at 0.001 even
        where a record from before the rate was recorded says DEC's 0.01."""
        if method == "idec" or (method == "dec" and lr == REFINE_OPTIMIZERS["dec"]["lr"]):
            return None
        return lr

    @property
    def augment(self) -> AugmentConfig:
        return AugmentConfig(shift=self.shift, rotate=self.rotate, scale=0.0, shear=0.0)

    def __post_init__(self):
        try:
            _ = self.augment  # its own checks of shift and rotate, named as here
        except JaxaeError as e:
            raise JaxaeError(re.sub(r"(?<![\w.])(shift|rotate)\b", r"refine.\1", str(e))) from None
        check_int("refine.update_interval", self.update_interval, minimum=1, maximum=MAX_STEPS)
        check_real("refine.tol", self.tol, minimum=0.0, maximum=1.0)
        if self.max_steps is not None:
            check_int("refine.max_steps", self.max_steps, minimum=1, maximum=MAX_STEPS)
        check_real("refine.gamma", self.gamma, minimum=0.0)
        if self.lr is not None:
            check_real("refine.lr", self.lr, positive=True)
        check_int("refine.batch_size", self.batch_size, minimum=1)
        check_choice("refine.start", self.start, STARTS)
        if not isinstance(self.guard, bool):
            raise JaxaeError(f"refine.guard must be True or False, got {self.guard!r}")


# ClusterConfig's sections: field -> its options dataclass.
OPTION_SECTIONS = {
    "kmeans": KMeansOptions,
    "gmm": GMMOptions,
    "umap": UMAPOptions,
    "refine": RefineOptions,
}
