"""What every implementation shares: the recipe it trains, its first weights, how it is timed.

An implementation (jaxae itself, or a peer written as people would write it without
jaxae) is a function ``prepare(workload) -> Runner``: ``prepare`` builds the model,
compiles and warms up; ``Runner.run()`` then trains ``workload.epochs`` more epochs and
returns the seconds they took, the device synchronised. The harness calls ``run`` many
times, alternating implementations, so every one is timed by the same code.

This module imports no framework: ``import jaxae.bench.peers`` works without torch or
tensorflow, and the frameworks are imported by the peers that need them.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Protocol

import numpy as np

from jaxae._validate import check_choice, check_int, check_rows
from jaxae.errors import JaxaeError

DTYPES = ("float32", "bfloat16")
CODE_ACTIVATIONS = ("relu", "linear")
SCALINGS = ("standardize", "unit")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    """An MLP autoencoder ``D-hidden-code-reversed(hidden)-D`` and how it is trained.

    ReLU on the hidden layers, ``code_activation`` on the code, a linear output;
    Glorot-uniform kernels and zero biases; MSE over all elements; Adam(``lr``,
    betas 0.9/0.999, ``eps``); each epoch a fresh permutation cut into ``N // batch``
    full batches.
    """

    name: str
    hidden: tuple[int, ...]
    code_dim: int
    code_activation: str = "relu"
    scaling: str = "standardize"
    lr: float = 1e-3
    eps: float = 1e-7
    batch_size: int = 256

    def widths(self, input_dim: int) -> tuple[int, ...]:
        """Layer widths from input to output, e.g. (784, 256, 100, 256, 784)."""
        return (input_dim, *self.hidden, self.code_dim, *self.hidden[::-1], input_dim)

    def activations(self) -> tuple[str, ...]:
        """Each layer's activation: "relu", the code's, ..., "linear" for the output."""
        hidden = ("relu",) * len(self.hidden)
        return (*hidden, self.code_activation, *hidden, "linear")

    def flops_per_sample(self, input_dim: int) -> int:
        """Training FLOPs per sample by the usual rule: 6 x the kernel weights."""
        return 6 * sum(a * b for a, b in itertools.pairwise(self.widths(input_dim)))


# The original recipe: 784-256-100-256-784, ReLU code, standardised images, Adam 0.01,
# epsilon 1e-7 (Keras' default), batch 100.
SEED_RECIPE = Recipe(name="seed", hidden=(256,), code_dim=100, lr=0.01, batch_size=100)
# DEC's and N2D's autoencoder, d-500-500-2000-10 with a linear code on pixels / 255 (Xie et
# al. 2016; XifengGuo/DEC-keras; rymc/n2d), trained as N2D pretrains it: Adam 1e-3, batch 256.
DEC_RECIPE = Recipe(
    name="dec",
    hidden=(500, 500, 2000),
    code_dim=10,
    code_activation="linear",
    scaling="unit",
    lr=1e-3,
    batch_size=256,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Workload:
    """What one implementation trains on, and for how long.

    Attributes:
      images: (N, D) raw pixels, float32; jaxae's ``fit`` scales them itself.
      x: (N, D) float32 the peers train on: ``images`` scaled by ``recipe.scaling``.
      recipe: the model and its training.
      batch_size: rows per step; ``N // batch_size`` steps per epoch.
      epochs: epochs per timed ``Runner.run()``.
      warmup_epochs: epochs trained by ``prepare`` before any timing.
      seed: the first weights and the shuffling.
      dtype: "float32", or "bfloat16" compute with float32 parameters.
    """

    images: np.ndarray | None
    x: np.ndarray
    recipe: Recipe = SEED_RECIPE
    batch_size: int = 100
    epochs: int = 1
    warmup_epochs: int = 1
    seed: int = 0
    dtype: str = "float32"

    @property
    def steps(self) -> int:
        """Training steps in one timed run."""
        return self.epochs * (len(self.x) // self.batch_size)


class Runner(Protocol):
    """A prepared implementation: compiled and warmed up, ready to be timed."""

    compile_seconds: float  # compilation, or the warm-up's wall time where they are one
    device: str  # where it runs, e.g. "cpu" or "NVIDIA H200"

    def run(self) -> float:
        """Train ``workload.epochs`` more epochs; the seconds they took, device synchronised."""

    def final_loss(self) -> float:
        """MSE over all of ``workload.x`` with the weights as they are now."""


Implementation = Callable[[Workload], Runner]


@dataclasses.dataclass(frozen=True)
class Timing:
    """One implementation's measurement.

    Attributes:
      name: the implementation.
      seconds_per_step: the median over ``seconds``, per step.
      compile_seconds: compilation (JAX: ``lower().compile()``), or the wall time
        of the warm-up run for torch-compile and keras; 0 for eager peers.
      steps: training steps in each timed run.
      final_loss: MSE over all of ``x`` after warm-up and every timed run,
        computed in float64 NumPy from the weights where a peer has them.
      device: where it ran.
      seconds: the wall time of each timed run, in the order they ran.
      cpu_seconds: the process's CPU time over each of those runs (all threads).
    """

    name: str
    seconds_per_step: float
    compile_seconds: float
    steps: int
    final_loss: float
    device: str
    seconds: tuple[float, ...] = ()
    cpu_seconds: tuple[float, ...] = ()


def init_params(widths: tuple[int, ...], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Glorot-uniform kernels ``(fan_in, fan_out)`` and zero biases, float32, from NumPy.

    Every peer starts from these, so that they do the same arithmetic.
    """
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in itertools.pairwise(widths):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
        params.append((w, np.zeros(fan_out, np.float32)))
    return params


def numpy_loss(params, x: np.ndarray, activations: tuple[str, ...] | None = None) -> float:
    """Reference MSE of the autoencoder ``params`` (a list of (W, b)) on ``x``, in float64.

    ``activations`` per layer (``Recipe.activations()``); default: ReLU on every layer
    but the last.
    """
    if activations is None:
        activations = ("relu",) * (len(params) - 1) + ("linear",)
    h = x = np.asarray(x, np.float64)
    for (w, b), act in zip(params, activations, strict=True):
        h = h @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        if act == "relu":
            h = np.maximum(h, 0.0)
    return float(np.mean((h - x) ** 2))


def check_workload(workload: Workload) -> Workload:
    """The workload with ``x`` as contiguous float32, or a ``JaxaeError`` naming the bad field."""
    check_choice("dtype", workload.dtype, DTYPES)
    check_choice("code_activation", workload.recipe.code_activation, CODE_ACTIVATIONS)
    check_choice("scaling", workload.recipe.scaling, SCALINGS)
    x = check_rows("x", workload.x, allow_images=False)
    check_int("batch_size", workload.batch_size, minimum=1, maximum=len(x))
    check_int("epochs", workload.epochs, minimum=1)
    check_int("warmup_epochs", workload.warmup_epochs, minimum=0)
    if workload.images is not None and np.shape(workload.images) != x.shape:
        raise JaxaeError(
            f"images has shape {np.shape(workload.images)} but x has {x.shape}: "
            "pass x=scaled images of the same shape"
        )
    return dataclasses.replace(workload, x=np.ascontiguousarray(x, dtype=np.float32))


def first_line(e: BaseException) -> str:
    """``Type: first line of the message``, for a report's list of failures."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
