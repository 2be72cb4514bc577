"""The implementations jaxae's benchmarks time: jaxae itself and its peers, one interface.

Each trains the same ``Recipe`` on the same data and is timed by the same harness
(``jaxae.bench.harness``), so a benchmark reports jaxae's speed as a ratio measured
in one run:

- ``jaxae``, ``jaxae-1chunk``: ``jaxae.train.fit`` (``jaxae_fit``);
- ``jax-python-loop``, ``jax-scan``, ``jax-scan-loss``: plain JAX and optax (``jax_plain``);
- ``torch-eager``, ``torch-compile``: a PyTorch per-batch loop (``torch``);
- ``keras``: ``model.fit`` (``keras``);
- ``clustpy``: ClustPy's autoencoder ``fit``, set up as jaxae's (``clustpy``; a linear
  code only, so DEC's recipe only: ``LINEAR_CODE_ONLY``).

The peers start from the same NumPy weights (``init_params``). torch, tensorflow and
clustpy are imported when a peer is prepared, so this package imports without them.

Example::

    import numpy as np
    from jaxae.bench import peers

    x = np.random.default_rng(0).standard_normal((512, 64), dtype=np.float32)
    for name, reason in peers.available().items():
        if reason is None:
            t = peers.time_peer(name, x, batch_size=64, epochs=1)
            print(f"{name:16} {1e3 * t.seconds_per_step:7.3f} ms/step on {t.device}")
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig

import numpy as np

from jaxae.bench.peers import clustpy, jax_plain, jaxae_fit, keras, torch
from jaxae.bench.peers.common import (
    DEC_RECIPE,
    DTYPES,
    SEED_RECIPE,
    Implementation,
    Recipe,
    Runner,
    Timing,
    Workload,
    check_workload,
    init_params,
    numpy_loss,
)
from jaxae.errors import JaxaeError

__all__ = [
    "DEC_RECIPE",
    "DTYPES",
    "IMPLEMENTATIONS",
    "JAXAE",
    "LINEAR_CODE_ONLY",
    "PEERS",
    "SEED_RECIPE",
    "TORCH_PEERS",
    "Implementation",
    "Recipe",
    "Runner",
    "Timing",
    "Workload",
    "available",
    "init_params",
    "numpy_loss",
    "prepare",
    "time_peer",
]

JAXAE = "jaxae"
PEERS: dict[str, Implementation] = {
    **jax_plain.IMPLEMENTATIONS,
    **torch.IMPLEMENTATIONS,
    **keras.IMPLEMENTATIONS,
    **clustpy.IMPLEMENTATIONS,
}
IMPLEMENTATIONS: dict[str, Implementation] = {**jaxae_fit.IMPLEMENTATIONS, **PEERS}
# Peers that train only a recipe with a linear code (DEC's), never the original recipe.
LINEAR_CODE_ONLY = ("clustpy",)
# Peers that run on PyTorch (on a GPU, JAX must leave them memory; on a CPU, OpenMP spins).
TORCH_PEERS = ("torch-eager", "torch-compile", "clustpy")


def _missing(*modules: str) -> str | None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed"
    return None


def _compiler_missing() -> str | None:
    """What torch.compile's code generation lacks here (inductor and triton build C/C++)."""
    if not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")):
        return "no C++ compiler (g++ or clang++) for torch.compile"
    if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        return "no Python headers (Python.h) for torch.compile"
    return None


def available() -> dict[str, str | None]:
    """Each peer's name -> ``None`` if it can run here, else a short reason.

    Cheap: looks for the packages without importing them. jaxae itself always runs.
    """
    jax = _missing("jax", "optax")
    torch_ = _missing("torch")
    return {
        "jax-python-loop": jax,
        "jax-scan": jax,
        "jax-scan-loss": jax,
        "torch-eager": torch_,
        "torch-compile": torch_ or _compiler_missing(),
        "keras": _missing("tensorflow", "keras"),
        "clustpy": torch_ or _missing("torchvision", "clustpy"),
    }


def prepare(name: str, workload: Workload) -> Runner:
    """Build, compile and warm up implementation ``name`` (a key of ``IMPLEMENTATIONS``).

    Raises:
      JaxaeError: an unknown name or a bad workload.
      RuntimeError: the peer cannot run here (see ``available()``).
    """
    if name not in IMPLEMENTATIONS:
        raise JaxaeError(f"unknown peer {name!r}: use one of {', '.join(IMPLEMENTATIONS)}")
    workload = check_workload(workload)
    reason = available().get(name)
    if reason is not None:
        raise RuntimeError(f"peer {name!r} cannot run here: {reason}")
    return IMPLEMENTATIONS[name](workload)


def time_peer(
    name: str,
    x: np.ndarray,
    *,
    images: np.ndarray | None = None,
    recipe: Recipe = SEED_RECIPE,
    batch_size: int = 100,
    epochs: int = 2,
    warmup_epochs: int = 1,
    seed: int = 0,
    dtype: str = "float32",
) -> Timing:
    """Train ``name`` on ``x``: a warm-up run, then one timed run.

    Args:
      name: a key of ``IMPLEMENTATIONS``.
      x: ``(N, D)`` data, scaled as ``recipe.scaling`` says; converted to float32.
      images: the raw ``(N, D)`` pixels behind ``x``; only jaxae needs them.
      recipe: the model and its optimiser (default: the original recipe).
      batch_size: rows per step; each epoch has ``N // batch_size`` steps.
      epochs: epochs timed.
      warmup_epochs: epochs run first, untimed (jaxae and jax-scan: one identical run).
        With 0, torch-compile and keras compile inside the timed run.
      seed: the initial weights (the same for every peer) and the shuffling.
      dtype: ``"float32"``, or ``"bfloat16"`` compute with float32 parameters.

    Returns:
      A ``Timing``.

    Raises:
      JaxaeError: bad arguments.
      RuntimeError: the peer cannot run here (see ``available()``).
    """
    workload = Workload(
        images=images,
        x=x,
        recipe=recipe,
        batch_size=batch_size,
        epochs=epochs,
        warmup_epochs=warmup_epochs,
        seed=seed,
        dtype=dtype,
    )
    runner = prepare(name, workload)
    seconds = runner.run()
    return Timing(
        name,
        seconds / workload.steps,
        runner.compile_seconds,
        workload.steps,
        runner.final_loss(),
        runner.device,
        (seconds,),
    )
