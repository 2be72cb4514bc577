"""DEC and IDEC's options as a run gives them (``ClusterConfig.refine``).

:class:`RefineOptions` is what a user sets and a run records; ``jaxae.cluster.refine``
turns it into the :class:`jaxae.cluster.refine_config.RefineConfig` a refinement runs with.
This module imports neither :mod:`jaxae.config` nor :mod:`jaxae.cluster`, so that
both can import it.
"""

from __future__ import annotations

import dataclasses
import re

from jaxae._validate import MAX_STEPS, check_choice, check_int, check_real
from jaxae.augment import AugmentConfig
from jaxae.errors import JaxaeError

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
