"""DEC and IDEC: the autoencoder's encoder and cluster centres refined together, on device.

DEC (Xie, Girshick and Farhadi, ICML 2016) as XifengGuo/DEC-keras (at 2438070,
``DEC.py``) writes it, and IDEC (Guo, Gao, Liu and Yin, IJCAI 2017) as
XifengGuo/IDEC (at 4a661c2, ``IDEC.py``):

- soft assignment of code ``z_i`` to centre ``mu_j``, a Student-t kernel
  ``q_ij ∝ (1 + |z_i - mu_j|^2 / alpha)^(-(alpha + 1) / 2)``, normalised over j
  (``ClusteringLayer.call``), alpha 1;
- target ``p_ij = (q_ij^2 / f_j)`` normalised over j, ``f_j = sum_i q_ij``
  (``DEC.target_distribution``), recomputed on the whole data every
  ``update_interval`` steps (140 for MNIST) and held fixed in between;
- loss: Keras' ``kld``, ``sum_j p log(p / q)`` with both clipped to [1e-7, 1],
  averaged over the batch; IDEC adds the reconstruction MSE with the KL weighted by
  ``gamma`` 0.1 (``loss_weights=[gamma, 1]``);
- centres start at scikit-learn KMeans (``n_init=20``) on the pretrained codes;
- stop at a target update when the fraction of assignments that changed since the
  previous update is below ``tol`` (0.001), or after ``max_iter`` steps (2e4);
- batches of 256 taken in data order, no shuffling, the last one shorter
  (``index_array[index * batch_size: ...]``); DEC's optimiser SGD lr 0.01
  momentum 0.9, IDEC's for MNIST Adam (Keras' defaults, lr 0.001).

One difference: when N is a multiple of the batch size both anchors run one step on
an empty batch per pass (their index wraps one step late); here a pass is exactly
``ceil(N / batch_size)`` batches.

DEC-DA and IDEC-DA (Guo, Zhu, Liu and Yin, ACML 2018), as XifengGuo/DEC-DA
(``FcDEC.py``, ``FcIDEC.py``) writes them, are the same loop with
``RefineConfig.augment`` on: the batch of each step is randomly shifted (up to 10%
of the width and height) and rotated (up to 10 degrees) before the encoder sees
it (``x_batch = self.random_transform(x[idx])``), and IDEC-DA's reconstruction
target is that augmented batch too (``train_on_batch(x, [y, x])``); the target P
and the assignments are still computed on the clean images (``self.predict(x)``).
Their transforms come from Keras' ``ImageDataGenerator`` on the host; here
:func:`jaxae.augment.augment` draws them on the device from the key
``fold_in(model_key, step)``, where ``model_key`` comes from the model's seed
(:func:`augment_keys`), so a refinement is a function of its seed and resumes
from any step exactly.

The whole refinement runs as one jitted program per chunk of steps, with the state
donated and the first step and count traced (so chunks and resumes never compile
again), as :func:`jaxae.train.run_epochs` does. Every leaf of the state carries a
leading model axis M (one model per seed); the per-model work is vmapped on GPU and
TPU and runs one model after another (``lax.map``) on CPU, where each then equals its
model refined alone, bit for bit.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxae.augment import augment
from jaxae.cluster.guard import GUARD_AGREEMENT, GUARD_SIGNALS, degeneration, mean_agreement
from jaxae.cluster.refine_config import RefineConfig
from jaxae.config import ModelConfig
from jaxae.errors import JaxaeError
from jaxae.model import build_model

# Keras' K.epsilon(): its kld clips p and q to [1e-7, 1].
KLD_EPSILON = 1e-7
# Folded into key(seed) for the refinement's augmentation: a stream of its own,
# apart from pretraining's split(key(seed)) (whose two keys are fold_in 0 and 1).
AUGMENT_STREAM = 0x44454441  # "DEDA"


class RefineState(NamedTuple):
    """Everything a refinement step reads and writes; each leaf has a leading model axis M.

    Attributes:
      params: ``{"autoencoder": Flax params, "centers": (K, C) float32}``.
      opt_state: the optimiser's state for ``params``.
      target: ``(N, K)`` float32 target P of the last update.
      labels: ``(N,)`` int32 argmax of Q at the last update (KMeans' before the first).
      delta: ``()`` float32 fraction of labels changed at the last update.
      step: ``()`` int32 optimiser steps taken.
      converged: ``()`` bool, set at the update that found ``delta < tol`` (or at
        which the guard fired); no step after.
      loss: ``()`` float32 loss of the last step.
      start_labels: ``(N,)`` int32 the clusters the refinement started from.
      start_centers: ``(K, C)`` float32 the centres it started from.
      guard_step: ``()`` int32 the step at which the guard fired, -1 while it has not.
      guard_signal: ``()`` int32 which signal fired: 1 + its index in
        ``GUARD_SIGNALS``, 0 while none has.
      agreement: ``()`` float32 the models' mean agreement after the first target
        update, the ``disagree`` signal's reference (the same for every model; 0
        before it, 1 for one model alone).
    """

    params: Any
    opt_state: Any
    target: jax.Array
    labels: jax.Array
    delta: jax.Array
    step: jax.Array
    converged: jax.Array
    loss: jax.Array
    start_labels: jax.Array
    start_centers: jax.Array
    guard_step: jax.Array
    guard_signal: jax.Array
    agreement: jax.Array


def soft_assignment(codes: jax.Array, centers: jax.Array, alpha: float = 1.0) -> jax.Array:
    """Student-t soft assignment Q of ``(N, C)`` codes to ``(K, C)`` centres: ``(N, K)``.

    Rows sum to 1. Distances are taken as differences, as DEC-keras does.
    """
    d2 = jnp.sum(jnp.square(codes[:, None, :] - centers[None, :, :]), axis=2)
    q = (1.0 + d2 / alpha) ** (-(alpha + 1.0) / 2.0)
    return q / jnp.sum(q, axis=1, keepdims=True)


def target_distribution(q: jax.Array) -> jax.Array:
    """DEC's sharpened target P of ``(N, K)`` soft assignments: ``q^2 / f`` row-normalised."""
    weight = jnp.square(q) / jnp.sum(q, axis=0, keepdims=True)
    return weight / jnp.sum(weight, axis=1, keepdims=True)


def kl_divergence(p: jax.Array, q: jax.Array) -> jax.Array:
    """Keras' ``kld`` per row: ``sum_j p log(p / q)``, both clipped to [1e-7, 1]: ``(N,)``."""
    p = jnp.clip(p, KLD_EPSILON, 1.0)
    q = jnp.clip(q, KLD_EPSILON, 1.0)
    return jnp.sum(p * jnp.log(p / q), axis=1)


def build_optimizer(config: RefineConfig) -> optax.GradientTransformation:
    if config.optimizer == "adam":
        return optax.adam(config.lr, eps=config.eps)
    # optax's trace (t = g + m t, update -lr t) is Keras' momentum (v = m v - lr g) for a fixed lr.
    return optax.sgd(config.lr, momentum=config.momentum or None)


def encode(params: Any, x: jax.Array, model_config: ModelConfig) -> jax.Array:
    """``(N, D)`` scaled inputs -> ``(N, C)`` float32 codes of one model."""
    model = build_model(model_config)
    return model.apply(params, x, method=model.encode).astype(jnp.float32)


def refine_loss(
    params: Any,
    batch: jax.Array,
    target: jax.Array,
    mask: jax.Array,
    *,
    model_config: ModelConfig,
    config: RefineConfig,
) -> jax.Array:
    """The loss of one ``(B, D)`` batch against its ``(B, K)`` target rows.

    ``mask`` ``(B,)`` float32 marks the real rows (the last batch of a pass is
    shorter); the mean runs over those only, as Keras' mean over the short batch.
    """
    model = build_model(model_config)
    codes = model.apply(params["autoencoder"], batch, method=model.encode).astype(jnp.float32)
    q = soft_assignment(codes, params["centers"], config.alpha)
    rows = jnp.sum(mask)
    kl = jnp.sum(mask * kl_divergence(target, q)) / rows
    if config.method == "dec":
        return kl
    recon = model.apply(params["autoencoder"], codes, method=model.decode).astype(jnp.float32)
    mse = jnp.sum(mask * jnp.mean(jnp.square(recon - batch), axis=1)) / rows
    return mse + config.gamma * kl


def batch_rows(step: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Row indices ``(B,)`` and mask ``(B,)`` float32 of the batch of ``step``, in data order.

    A pass is ``ceil(n / batch_size)`` batches; the last one's missing rows point at
    row n - 1 with mask 0.
    """
    batches = -(-n // batch_size)
    rows = (step % batches) * batch_size + jnp.arange(batch_size)
    return jnp.minimum(rows, n - 1), (rows < n).astype(jnp.float32)


def augment_keys(seeds) -> np.ndarray:
    """The raw ``(M, 2)`` uint32 keys of M models' augmentation, one per seed.

    Derived from the seed alone, so nothing about them is stored: a resumed
    refinement given the same seeds augments as the whole one did.
    """
    seeds = np.asarray(seeds, np.uint32).reshape(-1)
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), AUGMENT_STREAM))(seeds)
    return np.asarray(jax.random.key_data(keys))


def _step_key(key: jax.Array, step: jax.Array) -> jax.Array:
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    return jax.random.fold_in(key, step)


def refine_step(
    state: RefineState,
    x: jax.Array,
    *,
    model_config: ModelConfig,
    config: RefineConfig,
    key: jax.Array | None = None,
) -> RefineState:
    """One optimiser step of one model (no model axis) on the batch of ``state.step``.

    Pure: loss, gradient and optax update. A converged state is returned unchanged.
    With ``config.augment`` enabled the batch is augmented with the key
    ``fold_in(key, state.step)`` before the loss, which sees only the augmented
    batch (Q, and IDEC's reconstruction and its target); ``key`` is the model's
    (a typed key or raw ``(2,)`` uint32 data, see :func:`augment_keys`) and is
    ignored otherwise.
    """
    optimizer = build_optimizer(config)
    if config.augment.enabled and key is None:
        raise JaxaeError(
            "config.augment is enabled but key=None: pass the model's key "
            "(jaxae.cluster.dec.augment_keys(seeds)), or augment=AugmentConfig.none()"
        )

    def step(state):
        rows, mask = batch_rows(state.step, x.shape[0], config.batch_size)
        batch = x.at[rows].get(mode="promise_in_bounds")
        if config.augment.enabled:
            batch = augment(_step_key(key, state.step), batch, config.augment, config.image_shape)
        target = state.target.at[rows].get(mode="promise_in_bounds")
        loss, grads = jax.value_and_grad(refine_loss)(
            state.params, batch, target, mask, model_config=model_config, config=config
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return state._replace(
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            step=state.step + 1,
            loss=loss,
        )

    return jax.lax.cond(state.converged, lambda s: s, step, state)


def update_target(
    state: RefineState, x: jax.Array, *, model_config: ModelConfig, config: RefineConfig
) -> RefineState:
    """Recompute P and the assignments of one model on all of ``x``; set ``converged``.

    As DEC-keras, the first update (step 0) never stops the refinement by ``tol``.
    ``x`` is the clean data even when the steps augment their batches, as in
    DEC-DA. With ``config.guard``, the new labels are checked against the start
    (:func:`degeneration`) after the first step: a signal stops the model and
    records the step and the signal.
    """

    def update(state):
        codes = encode(state.params["autoencoder"], x, model_config)
        q = soft_assignment(codes, state.params["centers"], config.alpha)
        labels = jnp.argmax(q, axis=1).astype(jnp.int32)
        delta = jnp.mean((labels != state.labels).astype(jnp.float32))
        signal = jnp.int32(0)
        if config.guard:
            signal = jnp.where(
                state.step > 0, degeneration(labels, state.start_labels, config.clusters), 0
            )
        fired = signal > 0
        return state._replace(
            target=target_distribution(q),
            labels=labels,
            delta=delta,
            converged=((state.step > 0) & (delta < config.tol)) | fired,
            guard_step=jnp.where(fired, state.step, state.guard_step),
            guard_signal=jnp.where(fired, signal, state.guard_signal),
        )

    return jax.lax.cond(state.converged, lambda s: s, update, state)


def _compare_models(state: RefineState, clusters: int) -> RefineState:
    """After a target update of every model: the ``disagree`` signal.

    The reference is the models' mean agreement after the first update (step 0),
    when their labels are already the nearest centres in code space, as every
    later update's are, and not yet refined (the start's own labels, a mixture's in
    UMAP space, can agree more or less than that for reasons of their own). When
    the agreement falls more than ``GUARD_AGREEMENT`` below it, every model the
    guard has not stopped yet stops. A model already stopped counts with its
    start's labels, which it keeps.
    """
    stopped = state.guard_step >= 0
    labels = jnp.where(stopped[:, None], state.start_labels, state.labels)
    now = mean_agreement(labels, clusters) if labels.shape[0] > 1 else jnp.float32(1.0)
    first = state.step == 0
    reference = jnp.where(first, now, state.agreement)
    fired = ~first & ~stopped & (now < reference - GUARD_AGREEMENT)
    return state._replace(
        converged=state.converged | fired,
        guard_step=jnp.where(fired, state.step, state.guard_step),
        guard_signal=jnp.where(fired, GUARD_SIGNALS.index("disagree") + 1, state.guard_signal),
        agreement=reference,
    )


def _per_model(fn, vectorize: bool):
    """``fn(state, x, key)`` of one model over the leading model axis of ``state`` and
    ``keys`` (``None``, an empty tree, when nothing is augmented)."""
    if vectorize:
        return jax.vmap(fn, in_axes=(0, None, 0))
    return lambda state, x, keys: jax.lax.map(lambda one: fn(one[0], x, one[1]), (state, keys))


@functools.partial(
    jax.jit, static_argnames=("model_config", "config", "vectorize"), donate_argnums=0
)
def refine_steps(
    state: RefineState,
    x: jax.Array,
    first_step: jax.Array,
    count: jax.Array,
    *,
    model_config: ModelConfig,
    config: RefineConfig,
    vectorize: bool = False,
    keys: jax.Array | None = None,
) -> tuple[RefineState, jax.Array]:
    """Run steps ``first_step .. first_step + count - 1`` of every model in one program.

    Before step s with ``s % update_interval == 0`` every model's target is
    recomputed (one ``lax.cond`` on the shared step, not per model). The loop ends
    early once every model has converged.

    Args:
      state: a :class:`RefineState` with leading model axis M (donated).
      x: ``(N, D)`` scaled float32 inputs on the device, shared by all models.
      first_step, count: traced ints, so chunks and resumes reuse the program.
      model_config, config: static.
      vectorize: ``vmap`` the models (GPU, TPU) or ``lax.map`` them (CPU).
      keys: ``(M, 2)`` raw uint32 keys, one per model (:func:`augment_keys`), when
        ``config.augment`` is enabled; step s of model m augments its batch with
        ``fold_in(keys[m], s)``. ``None`` otherwise.

    Returns:
      The new state and the number of steps run (``count`` unless all converged).
    """
    statics = dict(model_config=model_config, config=config)
    # The target sees the clean x and no key; only the steps augment.
    clean_update = functools.partial(update_target, **statics)
    update = _per_model(lambda state, x, key: clean_update(state, x), vectorize)
    step = _per_model(lambda state, x, key: refine_step(state, x, key=key, **statics), vectorize)
    if not config.augment.enabled:
        keys = None  # nothing of them enters the program
    elif keys is None or keys.shape != (state.step.shape[0], 2):
        raise JaxaeError(
            f"config.augment is enabled, so keys must be ({state.step.shape[0]}, 2) raw key "
            f"data, one per model, got {None if keys is None else keys.shape}: pass "
            "keys=augment_keys(seeds)"
        )

    def update_all(state):
        state = update(state, x, keys)
        return _compare_models(state, config.clusters) if config.guard else state

    def body(carry):
        i, state = carry
        due = (first_step + i) % config.update_interval == 0
        state = jax.lax.cond(due, update_all, lambda s: s, state)
        return i + 1, step(state, x, keys)

    def more(carry):
        i, state = carry
        return (i < count) & ~jnp.all(state.converged)

    steps, state = jax.lax.while_loop(more, body, (jnp.int32(0), state))
    return state, steps


@functools.partial(jax.jit, static_argnames=("model_config",))
def encode_models(params: Any, x: jax.Array, *, model_config: ModelConfig) -> jax.Array:
    """``(M, N, C)`` codes of M models (leading axis of ``params``), one model at a time."""
    return jax.lax.map(lambda p: encode(p, x, model_config), params)
