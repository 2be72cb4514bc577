"""Frozen configuration, one dataclass per concern.

Defaults reproduce the original recipe: 784-256-100-256-784, Adam lr 0.01
(epsilon 1e-7), batch 100, 500 epochs, KMeans into 10 clusters (n_init 3).
Each class has a ``tiny()`` variant for tests.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from jaxae.errors import JaxaeError

DTYPES = ("float32", "bfloat16")
# Two billion float32 parameters (8 GB, 24 GB with Adam's state): far above any
# model this recipe needs, and far below what a typo like --hidden 2147483648 asks for.
MAX_PARAMETERS = 2**31
SEED_LIMIT = 2**32  # seeds are uint32, as scikit-learn's random_state requires
MAX_N_INIT = 1000  # KMeans restarts; each one reruns KMeans from scratch


def _check_ints(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise JaxaeError(f"{name} must be an integer, got {value!r}")


def _check_reals(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise JaxaeError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise JaxaeError(f"{name} must be finite, got {value}")


def _check_seed(seed: int) -> None:
    if not 0 <= seed < SEED_LIMIT:
        raise JaxaeError(
            f"seed must be between 0 and 2**32-1, got {seed}: pass --seed 0 to {SEED_LIMIT - 1}"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The autoencoder's shape and compute dtype.

    Attributes:
      input_dim: pixels per image (784 for MNIST, 64 for scikit-learn digits).
      hidden: width of the hidden layer on each side of the code.
      code_dim: size of the code.
      dtype: compute dtype, ``"float32"`` or ``"bfloat16"``; parameters are
        always float32.
    """

    input_dim: int = 784
    hidden: int = 256
    code_dim: int = 100
    dtype: str = "float32"

    def __post_init__(self):
        _check_ints(self, "input_dim", "hidden", "code_dim")
        for name in ("input_dim", "hidden", "code_dim"):
            if getattr(self, name) < 1:
                raise JaxaeError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.dtype not in DTYPES:
            raise JaxaeError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        if self.parameter_count > MAX_PARAMETERS:
            raise JaxaeError(
                f"a {self.input_dim}-{self.hidden}-{self.code_dim} autoencoder has "
                f"{self.parameter_count:,} parameters, over jaxae's limit of {MAX_PARAMETERS:,}: "
                "pass a smaller --hidden or --code-dim"
            )

    @property
    def parameter_count(self) -> int:
        d, h, c = self.input_dim, self.hidden, self.code_dim
        return 2 * (d * h + h * c) + d + 2 * h + c

    @classmethod
    def tiny(cls, input_dim: int = 64) -> ModelConfig:
        return cls(input_dim=input_dim, hidden=16, code_dim=8)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How the autoencoder is trained.

    Attributes:
      epochs: passes over the data.
      batch_size: images per step. Each epoch is shuffled and cut into
        ``n // batch_size`` full batches; the remainder of that epoch's
        permutation is dropped (a different remainder every epoch).
      lr: Adam learning rate.
      eps: Adam epsilon (Keras' default, 1e-7).
      seed: seeds initialisation and shuffling.
    """

    epochs: int = 500
    batch_size: int = 100
    lr: float = 0.01
    eps: float = 1e-7
    seed: int = 0

    def __post_init__(self):
        _check_ints(self, "epochs", "batch_size", "seed")
        if not isinstance(self.lr, numbers.Real) or isinstance(self.lr, bool):
            raise JaxaeError(f"learning rate must be a number, got {self.lr!r}")
        _check_reals(self, "eps")
        if self.epochs < 1:
            raise JaxaeError(
                f"epochs must be at least 1, got {self.epochs}: pass --epochs 1 or more"
            )
        if self.batch_size < 1:
            raise JaxaeError(
                f"batch size must be at least 1, got {self.batch_size}: pass --batch-size 1 or more"
            )
        if not 0 < self.lr < math.inf:
            raise JaxaeError(
                f"learning rate must be positive and finite, got {self.lr}: pass --lr 0.01 or so"
            )
        _check_seed(self.seed)

    @classmethod
    def tiny(cls) -> TrainConfig:
        return cls(epochs=3, batch_size=32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """KMeans settings (scikit-learn's k-means++ with the original's options)."""

    clusters: int = 10
    n_init: int = 3
    max_iter: int = 300
    tol: float = 1e-4
    seed: int = 0

    def __post_init__(self):
        _check_ints(self, "clusters", "n_init", "max_iter", "seed")
        _check_reals(self, "tol")
        if self.clusters < 1:
            raise JaxaeError(f"clusters must be at least 1, got {self.clusters}")
        if not 1 <= self.n_init <= MAX_N_INIT:
            raise JaxaeError(
                f"n_init must be between 1 and {MAX_N_INIT}, got {self.n_init}: "
                f"pass --n-init 1 to {MAX_N_INIT}"
            )
        _check_seed(self.seed)

    @classmethod
    def tiny(cls) -> ClusterConfig:
        return cls(n_init=1)
