"""Shared test data: a small slice of real digits, and the mnist-5k sample."""

from pathlib import Path

import pytest

from jaxae.checkpoint import save_checkpoint
from jaxae.config import TrainConfig
from jaxae.data import load_dataset

MNIST_5K = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-5k"


def mnist_5k() -> Path:
    if not (MNIST_5K / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST sample not found at {MNIST_5K}")
    return MNIST_5K


# `jaxae run` flags for a tiny model that trains in a second on digits.
TINY_MODEL = "--hidden 16 --code-dim 8 --n-init 1 --no-progress".split()


def digits(n: int = 256):
    return load_dataset("digits", n=n)


def save_trained(folder: Path, trained) -> Path:
    """Checkpoint the session's ``trained`` tiny model into ``folder`` (as after 3 epochs)."""
    _, model_config, result = trained
    save_checkpoint(
        folder,
        result.state,
        model_config=model_config,
        train_config=TrainConfig.tiny(),
        loss_history=result.loss_history,
        epoch=3,
    )
    return folder
