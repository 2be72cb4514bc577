"""The training loop: a pure optax step, scanned over steps and epochs on device.

The host calls one compiled program per chunk of epochs. Inside it, each epoch
draws a permutation with ``jax.random.permutation``, cuts it into full batches
and scans the step over them; the data stays on the device and the state is
donated. Epoch ``e`` of a model is shuffled with ``fold_in(shuffle_key, e)``,
so a run depends only on its seed, however it is cut into chunks, which is what
makes resuming exact.

Many models (seeds, learning rates) train together in one program: ``vmap``-ed
on GPU and TPU, where batching the small matmuls is what makes K models cheap;
one after another (``lax.map``) on CPU, where that is faster and gives each
model bit for bit the result of training it alone. Many devices share each
batch over a ``jax.sharding.Mesh`` axis ``"data"`` (batch sharded, parameters
replicated, gradients reduced by XLA).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from jaxae.config import ModelConfig, TrainConfig
from jaxae.errors import JaxaeError
from jaxae.model import AutoEncoder
from jaxae.preprocess import standardize


class TrainState(NamedTuple):
    """Everything a step updates: parameters and Adam's state."""

    params: Any
    opt_state: Any


class TrainResult(NamedTuple):
    """What ``fit`` returns.

    Attributes:
      state: the final ``TrainState`` on the host; with several models every
        leaf has a leading model axis.
      loss_history: (epochs,) float32 mean training loss per epoch, or
        (models, epochs) with several models.
      compile_seconds: time to compile the chunk program.
      train_seconds: time for the epochs run in this call, compilation excluded.
      steps: optimiser steps per model in this call.
      models: the (seed, lr) of each model, in order.
    """

    state: TrainState
    loss_history: np.ndarray
    compile_seconds: float
    train_seconds: float
    steps: int
    models: list[tuple[int, float]]


class TrainingStopped(JaxaeError):
    """Training stopped early (divergence or an interrupt) at ``epoch`` epochs done."""

    def __init__(self, message: str, *, epoch: int):
        super().__init__(message)
        self.epoch = epoch


def build_model(config: ModelConfig) -> AutoEncoder:
    return AutoEncoder(
        input_dim=config.input_dim,
        hidden=config.hidden,
        code_dim=config.code_dim,
        dtype=jnp.dtype(config.dtype),
    )


def build_optimizer(lr: float | jax.Array, eps: float = 1e-7) -> optax.GradientTransformation:
    return optax.adam(lr, eps=eps)


def split_seed(seed: int) -> tuple[jax.Array, jax.Array]:
    """A run's two keys as raw uint32 key data: (init_key, shuffle_key)."""
    keys = jax.random.split(jax.random.key(seed))
    return jax.random.key_data(keys[0]), jax.random.key_data(keys[1])


@functools.partial(jax.jit, static_argnums=(1,))
def create_train_state(key: jax.Array, model_config: ModelConfig) -> TrainState:
    """Fresh parameters and Adam state from raw key data; jitted, since eager Flax init
    compiles op by op. Vmap it over keys for several models."""
    params = build_model(model_config).init(
        jax.random.wrap_key_data(key), jnp.zeros((1, model_config.input_dim))
    )
    return TrainState(params, build_optimizer(0.0).init(params))


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
    """The typed key that shuffles ``epoch``, from raw shuffle-key data."""
    return jax.random.fold_in(jax.random.wrap_key_data(shuffle_key), epoch)


def _train_epochs(
    state,
    x,
    shuffle_key,
    lr,
    first_epoch,
    count,
    *,
    model_config,
    batch_size,
    eps,
    chunk,
    batch_sharding,
):
    step = functools.partial(
        train_step, model=build_model(model_config), optimizer=build_optimizer(lr, eps)
    )

    def batch_step(state, idx):
        batch = x.at[idx].get(mode="promise_in_bounds")
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        return step(state, batch)

    def epoch(i, carry):
        state, losses = carry
        idx = epoch_batches(epoch_key(shuffle_key, first_epoch + i), x.shape[0], batch_size)
        state, step_losses = jax.lax.scan(batch_step, state, idx)
        return state, losses.at[i].set(step_losses.mean())

    losses = jnp.full((chunk,), jnp.nan, jnp.float32)
    return jax.lax.fori_loop(0, count, epoch, (state, losses))


@functools.partial(
    jax.jit,
    static_argnames=(
        "model_config",
        "batch_size",
        "eps",
        "chunk",
        "stacked",
        "vectorize",
        "batch_sharding",
    ),
    donate_argnums=0,
)
def run_epochs(
    state: TrainState,
    x: jax.Array,
    shuffle_key: jax.Array,
    lr: jax.Array,
    first_epoch: jax.Array,
    count: jax.Array,
    *,
    model_config: ModelConfig,
    batch_size: int,
    eps: float,
    chunk: int,
    stacked: bool = False,
    vectorize: bool = True,
    batch_sharding: NamedSharding | None = None,
) -> tuple[TrainState, jax.Array]:
    """Train ``count`` (<= chunk) epochs from ``first_epoch`` in one program.

    Args:
      state: the ``TrainState`` (donated); with ``stacked``, leaves have a
        leading model axis M.
      x: (N, D) standardised float32 images on the device, shared by all models.
      shuffle_key: raw uint32 key data, (2,) or (M, 2).
      lr: learning rate, () or (M,) float32.
      first_epoch, count: traced ints, so a shorter last chunk or a resumed
        run does not compile again.
      vectorize: with ``stacked``, ``vmap`` the models (True) or run them one
        after another with ``lax.map`` (False).
      batch_sharding: where to place each batch (data parallelism), or None.

    Returns:
      The new state and the epoch losses, (chunk,) or (M, chunk), NaN past ``count``.
    """
    train = functools.partial(
        _train_epochs,
        model_config=model_config,
        batch_size=batch_size,
        eps=eps,
        chunk=chunk,
        batch_sharding=batch_sharding,
    )
    if stacked and vectorize:
        train = jax.vmap(train, in_axes=(0, None, 0, 0, None, None))
    elif stacked:
        one = train
        train = lambda state, x, key, lr, first, count: jax.lax.map(
            lambda m: one(m[0], x, m[1], m[2], first, count), (state, key, lr)
        )
    return train(state, x, shuffle_key, lr, first_epoch, count)


def default_chunk(epochs: int, steps_per_epoch: int) -> int:
    """Epochs per host call: about 20 progress updates, at least ~2,000 steps each."""
    return max(1, min(epochs, max(math.ceil(epochs / 20), math.ceil(2000 / steps_per_epoch))))


def make_mesh(devices: int | Sequence[jax.Device] | None) -> Mesh | None:
    """A 1-D ``"data"`` mesh over the first ``devices`` devices ("all": every one).

    None for a single device in a single process.
    """
    if devices is None and jax.process_count() == 1:
        return None
    available = jax.devices()
    if devices is None:  # under jax.distributed: every process's devices
        devices = "all"
    if devices == "all":
        devices = len(available)
    if isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise JaxaeError(
                f"--devices {devices}: JAX sees {len(available)} device(s); "
                f"pass 1 to {len(available)} or all"
            )
        devices = available[:devices]
    if len(devices) == 1 and jax.process_count() == 1:
        return None
    return Mesh(np.asarray(devices), ("data",))


def to_host(tree: Any) -> Any:
    """Copy a pytree of (possibly replicated, multi-process) arrays to NumPy, once."""

    def get(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            a = a.addressable_data(0)  # replicated: every shard holds it all
        return np.asarray(a)

    return jax.tree.map(get, jax.device_get(tree) if _addressable(tree) else tree)


def _addressable(tree: Any) -> bool:
    return all(
        not isinstance(a, jax.Array) or a.is_fully_addressable for a in jax.tree.leaves(tree)
    )


def _replicate(tree: Any, mesh: Mesh | None) -> Any:
    if mesh is None:
        return jax.device_put(tree)
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda i: np.asarray(a)[i]),
        tree,
    )


def fit(
    images: np.ndarray | jax.Array,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    seeds: Sequence[int] | None = None,
    lrs: Sequence[float] | None = None,
    devices: int | str | Sequence[jax.Device] | None = None,
    epochs_per_chunk: int | None = None,
    initial: TrainState | None = None,
    start_epoch: int = 0,
    history: np.ndarray | None = None,
    progress: bool = True,
    on_chunk: Callable[[int, TrainState, np.ndarray], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    vectorize_models: bool | None = None,
) -> TrainResult:
    """Train one autoencoder, or several at once, on raw images.

    Args:
      images: (N, D) pixels, uint8 or float; standardised per image on the device.
      model_config: the model; ``input_dim`` must equal D.
      train_config: epochs, batch size, learning rate, seed.
      seeds, lrs: train one model per (seed, lr) pair of these (default: the
        config's seed and lr) in one vmapped program; each model is initialised
        and shuffled by its own seed exactly as if trained alone.
      devices: data-parallel over this many local devices (or "all"); the batch
        size must divide evenly. Under ``jax.distributed``, the global devices.
      epochs_per_chunk: epochs per compiled call (default: about 20 calls).
      initial, start_epoch, history: resume from a saved state after
        ``start_epoch`` epochs with that loss history.
      progress: show a tqdm bar (after 2 s) advanced once per chunk.
      on_chunk: called after each finite chunk with (epochs done, host state,
        loss history so far), e.g. to save a checkpoint.
      should_stop: polled after each chunk; True stops with ``TrainingStopped``.
      vectorize_models: several models are ``vmap``-ed into one batched program
        (True) or run one after another inside it (False: on CPU each then
        equals its model trained alone, bit for bit). Default: True on GPU and TPU, where
        K=8 models cost about 2x one; False on CPU, where vmap is slower than
        K single models and long vmapped runs drift from single ones.

    Returns:
      A ``TrainResult``. One model: ``loss_history[e]`` is the mean loss of
      epoch ``e``. Several: leading model axis everywhere.

    Raises:
      TrainingStopped: a single model's loss became non-finite (the state
        passed to the last ``on_chunk`` is the last finite one), or
        ``should_stop`` returned True.

    Example::

        result = fit(images, model_config=ModelConfig(input_dim=64),
                     train_config=TrainConfig(epochs=10), seeds=range(8))
    """
    n, dim = images.shape
    if dim != model_config.input_dim:
        raise JaxaeError(f"images have {dim} pixels but the model expects {model_config.input_dim}")
    batch_size, epochs = train_config.batch_size, train_config.epochs
    if batch_size > n:
        raise JaxaeError(
            f"batch size {batch_size} is larger than the {n} images: pass --batch-size {n} or less"
        )
    models = list(itertools.product(seeds or [train_config.seed], lrs or [train_config.lr]))
    for seed, lr in models:  # TrainConfig's own checks, for every model of the batch
        dataclasses.replace(train_config, seed=seed, lr=lr)
    stacked = len(models) > 1
    mesh = make_mesh(devices)
    if vectorize_models is None:
        device = jax.devices()[0] if mesh is None else mesh.devices.flat[0]
        vectorize_models = device.platform != "cpu"
    if mesh is not None and batch_size % mesh.size:
        raise JaxaeError(
            f"batch size {batch_size} does not divide over {mesh.size} devices: "
            f"pass a batch size that is a multiple of {mesh.size}"
        )
    steps_per_epoch = n // batch_size
    chunk = min(epochs_per_chunk or default_chunk(epochs, steps_per_epoch), epochs)

    keys = np.stack([np.stack(split_seed(seed)) for seed, _ in models])  # (M, 2, 2)
    init_keys, shuffle_keys = keys[:, 0], keys[:, 1]
    lr = np.asarray([lr for _, lr in models], np.float32)
    if not stacked:
        init_keys, shuffle_keys, lr = init_keys[0], shuffle_keys[0], lr[0]
    if initial is None:
        create = jax.vmap(create_train_state, in_axes=(0, None)) if stacked else create_train_state
        initial = create(jnp.asarray(init_keys), model_config)
    x = jax.jit(standardize)(jax.device_put(images) if mesh is None else np.asarray(images))
    if mesh is not None:
        x = _replicate(to_host(x), mesh)
    state = _replicate(to_host(initial), mesh)
    shuffle_keys, lr = _replicate((shuffle_keys, lr), mesh)
    statics = dict(
        model_config=model_config,
        batch_size=batch_size,
        eps=train_config.eps,
        chunk=chunk,
        stacked=stacked,
        vectorize=bool(vectorize_models),
        batch_sharding=None if mesh is None else NamedSharding(mesh, PartitionSpec("data")),
    )

    start = time.perf_counter()
    compiled = run_epochs.lower(state, x, shuffle_keys, lr, 0, 0, **statics).compile()
    compile_seconds = time.perf_counter() - start

    shape = (len(models), epochs) if stacked else (epochs,)
    full_history = np.full(shape, np.nan, np.float32)
    if history is not None:
        full_history[..., :start_epoch] = np.asarray(history)[..., :start_epoch]
    start = time.perf_counter()
    with tqdm(
        total=epochs, initial=start_epoch, unit="epoch", delay=2, disable=not progress, leave=False
    ) as bar:
        for first in range(start_epoch, epochs, chunk):
            count = min(chunk, epochs - first)
            state, losses = compiled(state, x, shuffle_keys, lr, first, count)
            losses = to_host(losses)[..., :count]
            full_history[..., first : first + count] = losses
            done = first + count
            if not stacked and not np.isfinite(losses).all():
                bad = first + int(np.argmin(np.isfinite(losses)))
                raise TrainingStopped(
                    f"training diverged: the loss of epoch {bad + 1} is {losses[bad - first]}; "
                    "lower the learning rate (--lr) or use --dtype float32",
                    epoch=first,
                )
            bar.set_postfix(loss=f"{np.nanmean(losses[..., -1]):.4f}", refresh=False)
            bar.update(count)
            if on_chunk is not None:
                on_chunk(done, to_host(state), full_history[..., :done])
            if should_stop is not None and done < epochs and should_stop():
                raise TrainingStopped(f"training stopped after epoch {done}", epoch=done)
    state = to_host(state)
    train_seconds = time.perf_counter() - start
    steps = (epochs - start_epoch) * steps_per_epoch
    return TrainResult(state, full_history, compile_seconds, train_seconds, steps, models)
