"""The training loop: a pure optax step, scanned over steps and epochs on device.

The host calls one compiled program per chunk of epochs. Inside it, each epoch
draws a permutation with ``jax.random.permutation``, cuts it into full batches
and scans the step over them; the data stays on the device and the state is
donated. Epoch ``e`` is shuffled with ``fold_in(shuffle_key, e)``, so a run
depends only on its seed, however it is cut into chunks.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxae.config import ModelConfig, TrainConfig
from jaxae.data import standardize
from jaxae.errors import JaxaeError
from jaxae.model import AutoEncoder


class TrainState(NamedTuple):
    """Everything a step updates: parameters and Adam's state."""

    params: Any
    opt_state: Any


class TrainResult(NamedTuple):
    """What ``fit`` returns.

    Attributes:
      state: the final ``TrainState`` (on the device).
      loss_history: (epochs,) float32, mean training loss of each epoch.
      compile_seconds: time to compile the chunk program.
      train_seconds: time for all epochs, compilation excluded.
      steps: optimiser steps taken.
    """

    state: TrainState
    loss_history: np.ndarray
    compile_seconds: float
    train_seconds: float
    steps: int


def build_model(config: ModelConfig) -> AutoEncoder:
    return AutoEncoder(
        input_dim=config.input_dim,
        hidden=config.hidden,
        code_dim=config.code_dim,
        dtype=jnp.dtype(config.dtype),
    )


def build_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    return optax.adam(config.lr, eps=config.eps)


def split_seed(seed: int) -> tuple[jax.Array, jax.Array]:
    """The run's two keys: (init_key, shuffle_key)."""
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    return init_key, shuffle_key


@functools.partial(jax.jit, static_argnums=(1, 2))
def create_train_state(
    key: jax.Array, model_config: ModelConfig, train_config: TrainConfig
) -> TrainState:
    """Fresh parameters and Adam state; jitted, since eager Flax init compiles op by op."""
    params = build_model(model_config).init(key, jnp.zeros((1, model_config.input_dim)))
    return TrainState(params, build_optimizer(train_config).init(params))


def loss_fn(params: Any, model: AutoEncoder, batch: jax.Array) -> jax.Array:
    """Mean squared reconstruction error of a (B, D) batch, in float32."""
    recon = model.apply(params, batch).astype(jnp.float32)
    return optax.losses.squared_error(recon, batch).mean()


def train_step(
    state: TrainState,
    batch: jax.Array,
    *,
    model: AutoEncoder,
    optimizer: optax.GradientTransformation,
) -> tuple[TrainState, jax.Array]:
    """One Adam step on a (B, D) batch of standardised images: (new state, loss)."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, model, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), loss


def epoch_batches(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """Row indices of one epoch, (n // batch_size, batch_size) int32.

    A fresh permutation of the n rows cut into full batches; the last
    ``n % batch_size`` rows of the permutation are dropped, a different set
    each epoch.
    """
    steps = n // batch_size
    return jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)


def epoch_key(shuffle_key: jax.Array, epoch: jax.Array | int) -> jax.Array:
    return jax.random.fold_in(shuffle_key, epoch)


@functools.partial(
    jax.jit, static_argnames=("model_config", "train_config", "chunk"), donate_argnums=0
)
def run_epochs(
    state: TrainState,
    x: jax.Array,
    shuffle_key: jax.Array,
    first_epoch: jax.Array,
    count: jax.Array,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    chunk: int,
) -> tuple[TrainState, jax.Array]:
    """Train ``count`` (<= chunk) epochs from ``first_epoch`` in one program.

    ``x`` is (N, D) standardised float32 on the device. Returns the new state
    and a (chunk,) array of epoch losses, NaN past ``count``. ``count`` is
    traced, so a shorter last chunk does not compile again.
    """
    step = functools.partial(
        train_step, model=build_model(model_config), optimizer=build_optimizer(train_config)
    )

    def batch_step(state, idx):
        return step(state, x.at[idx].get(mode="promise_in_bounds"))

    def epoch(i, carry):
        state, losses = carry
        idx = epoch_batches(
            epoch_key(shuffle_key, first_epoch + i), x.shape[0], train_config.batch_size
        )
        state, step_losses = jax.lax.scan(batch_step, state, idx)
        return state, losses.at[i].set(step_losses.mean())

    losses = jnp.full((chunk,), jnp.nan, jnp.float32)
    return jax.lax.fori_loop(0, count, epoch, (state, losses))


def default_chunk(epochs: int, steps_per_epoch: int) -> int:
    """Epochs per host call: about 20 progress updates, at least ~2,000 steps each."""
    return max(1, min(epochs, max(math.ceil(epochs / 20), math.ceil(2000 / steps_per_epoch))))


def fit(
    images: np.ndarray | jax.Array,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    epochs_per_chunk: int | None = None,
    progress: bool = True,
    on_chunk: Callable[[int, TrainState, np.ndarray], None] | None = None,
) -> TrainResult:
    """Train an autoencoder on raw images.

    Args:
      images: (N, D) pixels, uint8 or float; standardised per image on the device.
      model_config: the model; ``input_dim`` must equal D.
      train_config: epochs, batch size, learning rate, seed.
      epochs_per_chunk: epochs per compiled call (default: about 20 calls).
      progress: show a tqdm bar (after 2 s) advanced once per chunk.
      on_chunk: called after each chunk with (epochs done, state, losses so far).

    Returns:
      A ``TrainResult``; ``loss_history[e]`` is the mean loss of epoch ``e``.

    Example::

        result = fit(images, model_config=ModelConfig(input_dim=64),
                     train_config=TrainConfig(epochs=10))
    """
    n, dim = images.shape
    if dim != model_config.input_dim:
        raise JaxaeError(f"images have {dim} pixels but the model expects {model_config.input_dim}")
    if train_config.batch_size > n:
        raise JaxaeError(
            f"batch size {train_config.batch_size} is larger than the {n} images: "
            f"pass --batch-size {n} or less"
        )
    epochs = train_config.epochs
    steps_per_epoch = n // train_config.batch_size
    chunk = epochs_per_chunk or default_chunk(epochs, steps_per_epoch)
    chunk = min(chunk, epochs)

    init_key, shuffle_key = split_seed(train_config.seed)
    x = jax.jit(standardize)(jax.device_put(images))
    state = create_train_state(init_key, model_config, train_config)
    statics = dict(model_config=model_config, train_config=train_config, chunk=chunk)

    start = time.perf_counter()
    compiled = run_epochs.lower(state, x, shuffle_key, 0, 0, **statics).compile()
    compile_seconds = time.perf_counter() - start

    history = np.full(epochs, np.nan, np.float32)
    start = time.perf_counter()
    with tqdm(total=epochs, unit="epoch", delay=2, disable=not progress, leave=False) as bar:
        for first in range(0, epochs, chunk):
            count = min(chunk, epochs - first)
            state, losses = compiled(state, x, shuffle_key, first, count)
            history[first : first + count] = np.asarray(losses)[:count]
            bar.set_postfix(loss=f"{history[first + count - 1]:.4f}", refresh=False)
            bar.update(count)
            if on_chunk is not None:
                on_chunk(first + count, state, history[: first + count])
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - start
    return TrainResult(state, history, compile_seconds, train_seconds, epochs * steps_per_epoch)
