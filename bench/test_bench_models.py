"""Many models in one program against one model, at the recipe's batch of 100.

  pytest bench/test_bench_models.py       # K = 1, 8 (and 64 on a GPU) models, 3,000 images

K models run vmapped ("vmap", the GPU/TPU default) or one after another inside
the program ("map", the CPU default). Reports seconds per model-step, the cost
of K models relative to one, and of "map" relative to "vmap" at the same K.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from jaxae.config import ModelConfig, TrainConfig
from jaxae.train import fit

QUICK = os.environ.get("JAXAE_BENCH_QUICK") == "1"
ROWS = 300 if QUICK else 3000
EPOCHS = 1 if QUICK else (50 if jax.default_backend() == "gpu" else 5)
GPU = jax.default_backend() == "gpu"
CASES = [(1, "one")] + [(k, how) for k in ([2] if QUICK else [8]) for how in ("vmap", "map")]
CASES += [] if QUICK or not GPU else [(64, "vmap")]
_seen = {}


@pytest.mark.benchmark(group="many-models")
@pytest.mark.parametrize(("k", "how"), CASES, ids=[f"{k}-{how}" for k, how in CASES])
def test_models_together(benchmark, record, images, k, how):
    model_config = ModelConfig(input_dim=images.shape[1], hidden=256, code_dim=100)
    train = TrainConfig(epochs=EPOCHS, batch_size=100)
    run = lambda: fit(images[:ROWS], model_config=model_config, train_config=train,
                      seeds=range(k), progress=False,
                      vectorize_models=how == "vmap")  # fmt: skip
    results = benchmark.pedantic(run, rounds=1 if QUICK else 3, warmup_rounds=0, iterations=1)
    per_step = results.train_seconds / results.steps  # compilation excluded by fit
    _seen[k, how] = per_step
    info = {"models": k, "how": how, "seconds_per_step": per_step,
            "seconds_per_model_step": per_step / k}  # fmt: skip
    if (1, "one") in _seen:
        info["time_vs_one_model"] = per_step / _seen[1, "one"]
    if how == "map" and (k, "vmap") in _seen:
        info["time_vs_vmap"] = per_step / _seen[k, "vmap"]
    record(**info)
    assert np.isfinite(results.loss_history).all()
