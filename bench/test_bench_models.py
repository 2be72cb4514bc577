"""Many models in one vmapped program against one model, at the recipe's batch of 100.

  pytest bench/test_bench_models.py       # K = 1, 8 (and 64 on a GPU) models, 3,000 images

Reports seconds per model-step and the cost of K models relative to one.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import QUICK

from jaxae.config import ModelConfig, TrainConfig
from jaxae.train import fit

ROWS = 300 if QUICK else 3000
EPOCHS = 1 if QUICK else (50 if jax.default_backend() == "gpu" else 5)
COUNTS = [1, 2] if QUICK else ([1, 8, 64] if jax.default_backend() == "gpu" else [1, 8])
_single = {}


@pytest.mark.benchmark(group="many-models")
@pytest.mark.parametrize("k", COUNTS)
def test_models_together(benchmark, record, images, k):
    model_config = ModelConfig(input_dim=images.shape[1], hidden=256, code_dim=100)
    train = TrainConfig(epochs=EPOCHS, batch_size=100)
    run = lambda: fit(images[:ROWS], model_config=model_config, train_config=train,
                      seeds=range(k), progress=False)  # fmt: skip
    results = benchmark.pedantic(run, rounds=1 if QUICK else 3, warmup_rounds=0, iterations=1)
    per_step = results.train_seconds / results.steps  # compilation excluded by fit
    if k == 1:
        _single[1] = per_step
    info = {"models": k, "seconds_per_step": per_step, "seconds_per_model_step": per_step / k}
    if 1 in _single:
        info["time_vs_one_model"] = per_step / _single[1]
    record(**info)
    assert np.isfinite(results.loss_history).all()
