"""The training loop: a pure optax step, scanned over steps and epochs on device.

The host calls one compiled program per chunk of epochs. Inside it, each epoch
draws a permutation with ``jax.random.permutation``, cuts it into full batches
and scans the step over them; the data stays on the device and the state is
donated. Epoch ``e`` of a model is shuffled with ``fold_in(shuffle_key, e)``,
so a run depends only on its seed, however it is cut into chunks, which is what
makes resuming exact.

Every state carries a leading model axis M (M = 1 for one model); ``fit``
squeezes it for a single model, at the public surface. Many models (seeds,
learning rates) train together in one program: ``vmap``-ed on GPU and TPU,
where batching the small matmuls is what makes K models cheap; one after
another (``lax.map``) on CPU, where that is faster and gives each model bit for
bit the result of training it alone. The learning rate lives in the optimiser
state (``optax.inject_hyperparams``), so a grid of rates is one more model axis
and is saved with the checkpoint. Many devices share each batch over a
``jax.sharding.Mesh`` axis ``"data"`` (batch sharded, parameters replicated,
gradients reduced by XLA).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding

from jaxae._validate import check_rows
from jaxae.augment import augment as augment_batch
from jaxae.augment import check_image_shape
from jaxae.config import MAX_STEPS, ModelConfig, TrainConfig
from jaxae.errors import JaxaeError
from jaxae.loop import Call, Stopped, default_chunk, drive
from jaxae.model import AutoEncoder, build_model
from jaxae.parallel import (
    add_model_axis,
    batch_sharding,
    first_device,
    make_mesh,
    replicate,
    squeeze_model_axis,
    to_host,
)
from jaxae.preprocess import fit_scaling, scale
from jaxae.train_state import TrainState, build_optimizer, create_train_state, split_seed

# Loss-history values one run may hold (models x epochs): 512 MB of float32.
MAX_HISTORY = 2**27


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
      model_config: the model as trained: ``data_range`` fitted where the
        ``"unit"`` scaling needs it; build the ``Encoder`` with this one.
    """

    state: TrainState
    loss_history: np.ndarray
    compile_seconds: float
    train_seconds: float
    steps: int
    models: list[tuple[int, float]]
    model_config: ModelConfig | None = None


class TrainingStopped(Stopped):
    """Training stopped early (divergence or an interrupt) at ``epoch`` epochs done."""

    @property
    def epoch(self) -> int:
        return self.done


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
    """One optimiser step on a (B, D) batch of scaled images: (new state, loss)."""
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
    state, x, shuffle_key, first_epoch, count, *, step, batch_size, chunk, sharding, augment
):
    def batch_step(state, rows_and_key):
        rows, key = rows_and_key
        batch = x.at[rows].get(mode="promise_in_bounds")
        if sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, sharding)
        if augment is not None:  # the augmented batch is input and target, as in DEC-DA
            batch = augment(key, batch)
        return step(state, batch)

    def epoch(i, carry):
        state, losses = carry
        key = epoch_key(shuffle_key, first_epoch + i)
        idx = epoch_batches(key, x.shape[0], batch_size)
        # A key per step from the epoch's own, apart from the shuffle's: a function of
        # seed, epoch and step, so a resumed run augments exactly as a whole one.
        keys = None if augment is None else jax.random.split(jax.random.fold_in(key, 1), len(idx))
        state, step_losses = jax.lax.scan(batch_step, state, (idx, keys))
        return state, losses.at[i].set(step_losses.mean())

    losses = jnp.full((chunk,), jnp.nan, jnp.float32)
    return jax.lax.fori_loop(0, count, epoch, (state, losses))


@functools.partial(
    jax.jit,
    static_argnames=(
        "model_config",
        "train_config",
        "total_steps",
        "chunk",
        "vectorize",
        "batch_sharding",
    ),
    donate_argnums=0,
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
    total_steps: int,
    chunk: int,
    vectorize: bool = True,
    batch_sharding: NamedSharding | None = None,
) -> tuple[TrainState, jax.Array]:
    """Train M models ``count`` (<= chunk) epochs from ``first_epoch`` in one program.

    Args:
      state: the ``TrainState`` (donated), every leaf with a leading model axis M;
        each model's learning rate is in its optimiser state.
      x: (N, D) scaled float32 images on the device, shared by all models.
      shuffle_key: (M, 2) raw uint32 key data.
      first_epoch, count: traced ints, so a shorter last chunk or a resumed
        run does not compile again.
      total_steps: steps of the whole run (a cosine schedule's length).
      vectorize: ``vmap`` the models (True) or run them one after another with
        ``lax.map`` (False).
      batch_sharding: where to place each batch (data parallelism), or None.

    Returns:
      The new state and the epoch losses, (M, chunk), NaN past ``count``.
    """
    step = functools.partial(
        train_step,
        model=build_model(model_config),
        optimizer=build_optimizer(train_config, total_steps),
    )
    augment = None
    if train_config.augment.enabled:
        config, shape = train_config.augment, model_config.image_shape
        augment = lambda key, batch: augment_batch(key, batch, config, shape)
    one = functools.partial(
        _train_epochs, step=step, batch_size=train_config.batch_size, chunk=chunk,
        sharding=batch_sharding, augment=augment,
    )  # fmt: skip
    if shuffle_key.shape[0] == 1:  # one model: no batching or loop around it
        squeezed = jax.tree.map(lambda a: a[0], (state, shuffle_key))
        out = one(squeezed[0], x, squeezed[1], first_epoch, count)
        return jax.tree.map(lambda a: a[None], out)
    if vectorize:
        return jax.vmap(one, in_axes=(0, None, 0, None, None))(
            state, x, shuffle_key, first_epoch, count
        )
    return jax.lax.map(lambda m: one(m[0], x, m[1], first_epoch, count), (state, shuffle_key))


def check_batch(batch_size: int, n: int) -> None:
    """A batch of ``batch_size`` must fit in ``n`` images."""
    if batch_size > n:
        raise JaxaeError(
            f"batch_size={batch_size} is larger than the {n} images: pass batch_size={n} or less"
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
    keep_model_axis: bool = False,
) -> TrainResult:
    """Train one autoencoder, or several at once, on raw images.

    Args:
      images: (N, D) pixels, uint8 or float; scaled (``model_config.scaling``)
        on the device.
      model_config: the model; ``input_dim`` must equal D.
      train_config: epochs, batch size, optimiser, learning rate, seed.
      seeds, lrs: train one model per (seed, lr) pair of these (default: the
        config's seed and lr) in one program; each model is initialised
        and shuffled by its own seed exactly as if trained alone.
      devices: data-parallel over this many local devices (or "all"); the batch
        size must divide evenly. Under ``jax.distributed``, the global devices.
      epochs_per_chunk: epochs between checkpoint chances (``on_chunk``; default:
        about 20 per run). The host calls the compiled program for about
        ``jaxae.loop.CALL_SECONDS`` of epochs at a time within them, so
        ``should_stop`` is polled every couple of seconds however long a chunk is.
      initial, start_epoch, history: resume from a saved state after
        ``start_epoch`` epochs with that loss history.
      progress: show a tqdm bar (after 2 s).
      on_chunk: called after each chunk (and before a stop) with (epochs done, host state,
        loss history so far), e.g. to save a checkpoint.
      should_stop: polled after each call; True stops with ``TrainingStopped``.
      vectorize_models: several models are ``vmap``-ed into one batched program
        (True) or run one after another inside it (False: on CPU each then
        equals its model trained alone, bit for bit). Default: True on GPU and
        TPU, where K=8 models cost about 2x one; False on CPU, where vmap is
        slower than K single models and long vmapped runs drift from single ones.
      keep_model_axis: keep the leading model axis for one model too (M = 1), as
        ``run_experiment`` does; by default one model comes back without it.

    Returns:
      A ``TrainResult``. One model: ``loss_history[e]`` is the mean loss of
      epoch ``e``. Several (or ``keep_model_axis``): leading model axis
      everywhere (``initial`` and ``history`` take the same shapes).

    Raises:
      TrainingStopped: a single model's loss became non-finite (the state
        passed to the last ``on_chunk`` is the last finite one), or
        ``should_stop`` returned True.

    Example::

        result = fit(images, model_config=ModelConfig(input_dim=64),
                     train_config=TrainConfig(epochs=10), seeds=range(8))
    """
    seeds = None if seeds is None else list(seeds)  # read once: a generator is used up
    lrs = None if lrs is None else list(lrs)
    if not keep_model_axis and len(seeds or [0]) * len(lrs or [0]) == 1:
        initial = None if initial is None else add_model_axis(initial)
        history = None if history is None else add_model_axis(history)
        if on_chunk is not None:
            on_model = on_chunk
            on_chunk = lambda done, state, hist: on_model(done, squeeze_model_axis(state), hist[0])
        result = fit(
            images, model_config=model_config, train_config=train_config, seeds=seeds, lrs=lrs,
            devices=devices, epochs_per_chunk=epochs_per_chunk, initial=initial,
            start_epoch=start_epoch, history=history, progress=progress, on_chunk=on_chunk,
            should_stop=should_stop, vectorize_models=vectorize_models, keep_model_axis=True,
        )  # fmt: skip
        return result._replace(
            state=squeeze_model_axis(result.state), loss_history=result.loss_history[0]
        )
    images = check_rows("images", images, width=model_config.input_dim)
    model_config = fit_scaling(model_config, images)
    if train_config.augment.enabled:  # before anything compiles
        check_image_shape(model_config.image_shape, model_config.input_dim)
    n = images.shape[0]
    batch_size, epochs = train_config.batch_size, train_config.epochs
    check_batch(batch_size, n)
    models = list(itertools.product(seeds or [train_config.seed], lrs or [train_config.lr]))
    for seed, lr in models:  # TrainConfig's own checks, for every model of the batch
        dataclasses.replace(train_config, seed=seed, lr=lr)
    steps_per_epoch = n // batch_size
    total_steps = epochs * steps_per_epoch
    if total_steps > MAX_STEPS:
        raise JaxaeError(
            f"epochs={epochs} of {steps_per_epoch} steps are {total_steps:,} steps, over the "
            f"{MAX_STEPS:,} a run can count: pass epochs={MAX_STEPS // steps_per_epoch} or fewer"
        )
    if epochs * len(models) > MAX_HISTORY:
        raise JaxaeError(
            f"epochs={epochs} for {len(models)} model(s) would keep {epochs * len(models):,} "
            f"loss values, over jaxae's {MAX_HISTORY:,}: pass epochs="
            f"{MAX_HISTORY // len(models)} or fewer"
        )
    mesh = make_mesh(devices)
    if vectorize_models is None:
        vectorize_models = first_device(mesh).platform != "cpu"
    if mesh is not None and batch_size % mesh.size:
        raise JaxaeError(
            f"batch_size={batch_size} does not divide over {mesh.size} devices: "
            f"pass a batch_size that is a multiple of {mesh.size}"
        )
    chunk = min(epochs_per_chunk or default_chunk(epochs, steps_per_epoch), epochs)

    keys = np.stack([np.stack(split_seed(seed)) for seed, _ in models])  # (M, 2, 2)
    init_keys, shuffle_keys = keys[:, 0], keys[:, 1]
    if initial is None:
        lr = np.asarray([lr for _, lr in models], np.float32)
        create = jax.vmap(create_train_state, in_axes=(0, 0, None, None))
        initial = create(jnp.asarray(init_keys), jnp.asarray(lr), model_config, train_config)
    full_history = np.full((len(models), epochs), np.nan, np.float32)
    if history is not None:
        full_history[:, :start_epoch] = np.asarray(history)[:, :start_epoch]
    if start_epoch >= epochs:  # pretraining is done (a resumed run): nothing to compile
        return TrainResult(to_host(initial), full_history, 0.0, 0.0, 0, models, model_config)
    x = jax.device_put(images) if mesh is None else np.asarray(images)
    x = jax.jit(scale, static_argnums=(1, 2))(x, model_config.scaling, model_config.data_range)
    if mesh is not None:
        x = replicate(to_host(x), mesh)
    state = replicate(to_host(initial), mesh)
    shuffle_keys = replicate(shuffle_keys, mesh)
    statics = dict(
        model_config=model_config, train_config=train_config, total_steps=total_steps,
        chunk=chunk, vectorize=bool(vectorize_models), batch_sharding=batch_sharding(mesh),
    )  # fmt: skip

    start = time.perf_counter()
    compiled = run_epochs.lower(state, x, shuffle_keys, 0, 0, **statics).compile()
    compile_seconds = time.perf_counter() - start
    # The scaling and the copies above run asynchronously: finish them before the clock
    # starts, or train_seconds counts them as training.
    jax.block_until_ready((state, x, shuffle_keys))

    hint = " or use dtype=float32" if model_config.dtype != "float32" else ""

    def observe(state, losses, done, count):
        losses = to_host(losses)[:, :count]
        full_history[:, done : done + count] = losses
        finite = np.isfinite(losses)
        if not finite[:, -1].any():  # every model diverged: nothing left to train
            bad = int(np.argmin(finite.all(axis=0)))
            value = losses[0, bad] if len(models) == 1 else "non-finite for every model"
            why = f"the loss of epoch {done + bad + 1} is {value}"
            return Call(
                count, diverged=f"training diverged: {why}; lower the learning rate (lr=){hint}"
            )
        return Call(count, postfix={"loss": f"{np.nanmean(losses[:, -1]):.4f}"})

    def checkpoint(done, state):
        on_chunk(done, to_host(state), full_history[:, :done])

    start = time.perf_counter()
    state, _ = drive(
        lambda state, first, count: compiled(state, x, shuffle_keys, first, count),
        state, start=start_epoch, total=epochs, chunk=chunk, observe=observe, unit="epoch",
        what="training", progress=progress, should_stop=should_stop,
        on_chunk=None if on_chunk is None else checkpoint, stop_error=TrainingStopped,
    )  # fmt: skip
    state = to_host(state)
    train_seconds = time.perf_counter() - start
    steps = (epochs - start_epoch) * steps_per_epoch
    return TrainResult(
        state, full_history, compile_seconds, train_seconds, steps, models, model_config
    )
