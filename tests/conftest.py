"""Makes JAX stricter for every test, as equinox does: implicit rank promotion in
library code is a bug, so it raises instead of passing silently.

Strict dtype promotion is not switched on: optax's Adam itself relies on
standard promotion (``decay ** count`` with an int32 count).
"""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")


import pytest  # noqa: E402

from jaxae.config import ModelConfig, TrainConfig  # noqa: E402
from jaxae.data import load_dataset  # noqa: E402
from jaxae.train import fit  # noqa: E402


@pytest.fixture(scope="session")
def trained():
    """A tiny autoencoder trained on 256 real digits: (dataset, model_config, TrainResult)."""
    ds = load_dataset("digits", n=256)
    model_config = ModelConfig.tiny()
    result = fit(
        ds.images, model_config=model_config, train_config=TrainConfig.tiny(), progress=False
    )
    return ds, model_config, result
