"""The settings a DEC or IDEC refinement runs with: :class:`RefineConfig`.

What :func:`jaxae.cluster.dec.refine_steps` compiles for (the config is static);
:func:`jaxae.cluster.refine.config_for` builds it from a run's
``ClusterConfig.refine`` options. The defaults are the anchors' for MNIST (see
:mod:`jaxae.cluster.dec`).
"""

from __future__ import annotations

import dataclasses

from jaxae._validate import check_choice, check_int, check_real
from jaxae.augment import AugmentConfig, check_image_shape
from jaxae.cluster_options import REFINE_OPTIMIZERS
from jaxae.errors import JaxaeError

METHODS = tuple(REFINE_OPTIMIZERS)
OPTIMIZERS = ("sgd", "adam")
_DEC = REFINE_OPTIMIZERS["dec"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RefineConfig:
    """Settings of a DEC or IDEC refinement; the defaults are DEC-keras' for MNIST.

    Attributes:
      method: ``"dec"`` (KL only) or ``"idec"`` (reconstruction MSE + gamma * KL).
      clusters: K.
      alpha: degrees of freedom of the Student-t kernel.
      gamma: IDEC's weight of the KL term (unused by DEC).
      update_interval: steps between target updates (T).
      tol: stop when fewer than this fraction of assignments changed between updates.
      max_iter: most optimiser steps.
      batch_size: rows per step, taken in data order.
      optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"`` (with ``eps``).
      lr: learning rate.
      momentum: SGD momentum (0 for plain SGD).
      eps: Adam epsilon.
      kmeans_n_init: KMeans restarts for the starting centres.
      augment: the random shift and rotation of each step's batch (DEC-DA:
        ``AugmentConfig(shift=0.1, rotate=10)``); ``AugmentConfig.none()``, the
        default, is plain DEC/IDEC.
      image_shape: ``(H, W)`` the rows were flattened from; needed when
        ``augment`` is enabled, unused otherwise.
      guard: watch each model's clusters at every target update and stop it when
        they degenerate, and every model when they drift apart
        (:mod:`jaxae.cluster.guard`); :func:`jaxae.cluster.refine` then keeps the
        stopped models' starts. False refines as the anchors do.
    """

    method: str = "dec"
    clusters: int = 10
    alpha: float = 1.0
    gamma: float = 0.1
    update_interval: int = 140
    tol: float = 1e-3
    max_iter: int = 20_000
    batch_size: int = 256
    optimizer: str = _DEC["optimizer"]
    lr: float = _DEC["lr"]
    momentum: float = _DEC["momentum"]
    eps: float = 1e-7
    kmeans_n_init: int = 20
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig.none)
    image_shape: tuple[int, int] | None = None
    guard: bool = True

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_int("clusters", self.clusters, minimum=1)
        check_real("alpha", self.alpha, positive=True)
        check_real("gamma", self.gamma, minimum=0)
        check_int("update_interval", self.update_interval, minimum=1)
        check_real("tol", self.tol, minimum=0, maximum=1)
        check_int("max_iter", self.max_iter, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_real("lr", self.lr, positive=True)
        check_real("momentum", self.momentum, minimum=0, maximum=1)
        check_real("eps", self.eps, positive=True)
        check_int("kmeans_n_init", self.kmeans_n_init, minimum=1, maximum=1000)
        if not isinstance(self.guard, bool):
            raise JaxaeError(f"guard must be True or False, got {self.guard!r}")
        if not isinstance(self.augment, AugmentConfig):
            raise JaxaeError(
                f"augment must be an AugmentConfig, got {type(self.augment).__name__}: pass "
                "augment=AugmentConfig(shift=0.1, rotate=10.0) or AugmentConfig.none()"
            )
        if self.augment.enabled:
            object.__setattr__(self, "image_shape", check_image_shape(self.image_shape))
        elif self.image_shape is not None:  # unused, but kept hashable: the config is static
            if not isinstance(self.image_shape, tuple | list) or len(self.image_shape) != 2:
                raise JaxaeError(f"image_shape must be (H, W) or None, got {self.image_shape!r}")
            shape = tuple(check_int("image_shape", v, minimum=1) for v in self.image_shape)
            object.__setattr__(self, "image_shape", shape)

    @classmethod
    def for_method(cls, method: str, **overrides) -> RefineConfig:
        """The anchor's settings for ``method``, its optimiser ``REFINE_OPTIMIZERS``'
        (IDEC's MNIST optimiser is Adam lr 0.001)."""
        return cls(method=method, **{**REFINE_OPTIMIZERS.get(method, {}), **overrides})

    @classmethod
    def tiny(cls, method: str = "dec") -> RefineConfig:
        return cls.for_method(
            method, clusters=4, update_interval=4, max_iter=24, batch_size=32, kmeans_n_init=2
        )
