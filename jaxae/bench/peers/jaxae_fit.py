"""jaxae itself, timed as one implementation among the rest: ``jaxae.train.fit`` as users call it.

- ``jaxae``: ``fit`` with its default chunks (one host call per chunk of epochs);
- ``jaxae-1chunk``: ``fit`` with the whole run in one chunk, where that differs.

Each timed run is one more ``fit`` call on the raw images: its ``train_seconds``
(compilation excluded, as ``fit`` reports it apart). ``prepare`` warms up with one
identical call.
"""

from __future__ import annotations

import numpy as np

from jaxae.bench.peers.common import Recipe, Workload
from jaxae.config import ModelConfig, TrainConfig
from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError
from jaxae.train import fit


def model_config_for(recipe: Recipe, input_dim: int, *, dtype: str = "float32") -> ModelConfig:
    """The jaxae ``ModelConfig`` of ``recipe``."""
    return ModelConfig(
        input_dim=input_dim,
        hidden=tuple(recipe.hidden),
        code_dim=recipe.code_dim,
        code_activation=recipe.code_activation,
        scaling=recipe.scaling,
        dtype=dtype,
    )


def train_config_for(recipe: Recipe, *, epochs: int, batch_size: int, seed: int) -> TrainConfig:
    """The jaxae ``TrainConfig`` of ``recipe``: Adam with the recipe's rate and epsilon."""
    return TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer="adam",
        lr=recipe.lr,
        eps=recipe.eps,
        seed=seed,
    )


class _Fit:
    def __init__(self, workload: Workload, *, one_chunk: bool):
        if workload.images is None:
            raise JaxaeError("jaxae trains on raw pixels: pass images= as well as x=")
        self.w = workload
        self.model_config = model_config_for(
            workload.recipe, workload.x.shape[1], dtype=workload.dtype
        )
        self._train_config = train_config_for(
            workload.recipe,
            epochs=workload.epochs,
            batch_size=workload.batch_size,
            seed=workload.seed,
        )
        self._chunk = workload.epochs if one_chunk else None
        self._result = None
        self.compile_seconds = None
        self.device = None
        if workload.warmup_epochs:
            self.run()

    def run(self) -> float:
        import jax

        result = fit(
            self.w.images,
            model_config=self.model_config,
            train_config=self._train_config,
            epochs_per_chunk=self._chunk,
            progress=False,
        )
        if self.compile_seconds is None:  # the first call's: later ones compile the same again
            self.compile_seconds = result.compile_seconds
            self.device = jax.devices()[0].device_kind
        self._result = result
        return result.train_seconds

    def final_loss(self) -> float:
        if self._result is None:
            self.run()
        result = self._result
        recon = Encoder(result.state.params, result.model_config).reconstruct(self.w.images)
        return float(np.mean((np.asarray(recon, np.float64) - self.w.x) ** 2))


IMPLEMENTATIONS = {
    "jaxae": lambda workload: _Fit(workload, one_chunk=False),
    "jaxae-1chunk": lambda workload: _Fit(workload, one_chunk=True),
}
