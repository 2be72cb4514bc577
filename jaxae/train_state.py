"""A model's training state: its parameters and its optimiser's state, made from a seed.

What the training loop (:mod:`jaxae.train`) updates and a checkpoint
(:mod:`jaxae.checkpoint`) saves and restores: :class:`TrainState`, the optax
optimiser a ``TrainConfig`` names (:func:`build_optimizer`), and the fresh state of
a seed (:func:`split_seed`, :func:`create_train_state`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxae.config import ModelConfig, TrainConfig
from jaxae.model import build_model


class TrainState(NamedTuple):
    """Everything a step updates: parameters and the optimiser's state."""

    params: Any
    opt_state: Any


# Only the learning rate is injected: Adam's betas and epsilon stay Python floats,
# whose float32 rounding (1 - 0.9 in double, then cast) the original recipe has.
_ADAM_STATIC = ("b1", "b2", "eps", "eps_root")


def build_optimizer(
    config: TrainConfig, total_steps: int = 1, lr: float | jax.Array | None = None
) -> optax.GradientTransformation:
    """The optax optimiser a ``TrainConfig`` names, its learning rate injected into its state.

    The rate in the state is what the update uses, so models initialised with
    different rates share one update function. ``total_steps`` sets the length of
    a cosine schedule, applied as a factor after the optimiser; ``lr`` (a traced
    rate, when initialising a grid) overrides ``config.lr``.
    """
    lr = config.lr if lr is None else lr
    if config.optimizer == "adam":
        opt = optax.inject_hyperparams(optax.adam, static_args=_ADAM_STATIC)(
            learning_rate=lr, eps=config.eps
        )
    else:
        opt = optax.inject_hyperparams(optax.sgd, static_args=("momentum", "nesterov"))(
            learning_rate=lr, momentum=config.momentum or None
        )
    if config.schedule == "cosine":
        factor = optax.cosine_decay_schedule(1.0, max(total_steps, 1))
        opt = optax.chain(opt, optax.scale_by_schedule(factor))
    return opt


def split_seed(seed: int) -> tuple[jax.Array, jax.Array]:
    """A run's two keys as raw uint32 key data: (init_key, shuffle_key)."""
    keys = jax.random.split(jax.random.key(seed))
    return jax.random.key_data(keys[0]), jax.random.key_data(keys[1])


@functools.partial(jax.jit, static_argnums=(2, 3))
def create_train_state(
    key: jax.Array, lr: jax.Array, model_config: ModelConfig, train_config: TrainConfig
) -> TrainState:
    """Fresh parameters and optimiser state (learning rate ``lr``) from raw key data;
    jitted, since eager Flax init compiles op by op. Vmap it over keys and rates."""
    params = build_model(model_config).init(
        jax.random.wrap_key_data(key), jnp.zeros((1, model_config.input_dim))
    )
    return TrainState(params, build_optimizer(train_config, lr=lr).init(params))
