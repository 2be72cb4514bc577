"""Checkpoints: one msgpack file per run, written atomically, never pickled.

``checkpoint.msgpack`` holds the parameters, Adam's state, the configuration,
the loss history and the jaxae version, serialised with
``flax.serialization`` (msgpack; arrays as raw bytes with dtype and shape).
It is written to a temporary file and renamed, so a crash never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import serialization

from jaxae.config import ModelConfig, TrainConfig
from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError
from jaxae.io import atomic_write
from jaxae.train import TrainState, create_train_state

FILENAME = "checkpoint.msgpack"
FORMAT = "jaxae-checkpoint"
FORMAT_VERSION = 1


class Checkpoint(NamedTuple):
    state: TrainState
    model_config: ModelConfig
    train_config: TrainConfig
    loss_history: np.ndarray
    epoch: int
    version: str


def save_checkpoint(
    run_dir: str | os.PathLike,
    state: TrainState,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    loss_history: np.ndarray,
    epoch: int,
) -> Path:
    """Save a training state to ``run_dir/checkpoint.msgpack``; returns the path."""
    from jaxae import __version__

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jaxae_version": __version__,
        "model": dataclasses.asdict(model_config),
        "train": dataclasses.asdict(train_config),
        "epoch": epoch,
    }
    host_state = jax.device_get(state)
    payload = {
        "meta": json.dumps(meta),
        "loss_history": np.asarray(loss_history, np.float32),
        "state": serialization.to_state_dict(host_state),
    }
    path = Path(run_dir) / FILENAME
    atomic_write(path, serialization.msgpack_serialize(payload))
    return path


def load_checkpoint(run_dir: str | os.PathLike) -> Checkpoint:
    """Read and check ``run_dir/checkpoint.msgpack`` (or the file itself)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / FILENAME
    try:
        data = path.read_bytes()
    except OSError as e:
        raise JaxaeError(
            f"cannot read checkpoint {path}: {e.strerror or e}; "
            "pass a run folder written by jaxae run"
        ) from None
    try:
        payload = serialization.msgpack_restore(data)
        meta = json.loads(payload["meta"])
        if meta.get("format") != FORMAT:
            raise ValueError("not a jaxae checkpoint")
    except Exception:  # msgpack raises many types on garbage
        raise JaxaeError(
            f"{path} is not a jaxae checkpoint: pass a run folder written by jaxae run"
        ) from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise JaxaeError(
            f"{path} has checkpoint format {meta.get('format_version')!r}; this jaxae reads "
            f"format {FORMAT_VERSION}: use the jaxae version that wrote it "
            f"({meta.get('jaxae_version')})"
        )
    try:
        model_config = ModelConfig(**meta["model"])
        train_config = TrainConfig(**meta["train"])
        epoch = int(meta["epoch"])
        history = np.asarray(payload["loss_history"], np.float32)
        template = jax.eval_shape(create_train_state, jax.random.key(0), model_config, train_config)
        state = serialization.from_state_dict(template, payload["state"])
    except (KeyError, TypeError, ValueError) as e:
        raise JaxaeError(f"{path} is damaged ({e}): train again with jaxae run") from None
    _check_like(path, state, template)
    return Checkpoint(state, model_config, train_config, history, epoch, meta["jaxae_version"])


def _check_like(path: Path, state: Any, template: Any) -> None:
    for (key, leaf), want in zip(
        jax.tree_util.tree_leaves_with_path(state), jax.tree_util.tree_leaves(template)
    ):
        leaf = np.asarray(leaf)
        if leaf.shape != want.shape or leaf.dtype != want.dtype:
            raise JaxaeError(
                f"{path} is damaged: {jax.tree_util.keystr(key)} is "
                f"{leaf.dtype}{list(leaf.shape)}, "
                f"expected {want.dtype}{list(want.shape)}: train again with jaxae run"
            )


def load(run_dir: str | os.PathLike) -> Encoder:
    """Load a trained run's encoder.

    Example::

        ae = jaxae.load("runs/my-run")
        codes = ae.encode(images)   # (N, 784) -> (N, 100) float32
    """
    ckpt = load_checkpoint(run_dir)
    return Encoder(ckpt.state.params, ckpt.model_config)
