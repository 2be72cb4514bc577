"""The host side of DEC and IDEC: starting centres, the loop, the result.

:func:`refine` runs :func:`jaxae.cluster.dec.refine_steps` through the same host
driver as training (:func:`jaxae.loop.drive`): calls of about two seconds, a
progress bar, ``on_chunk`` for checkpoints, ``should_stop`` for signals, and
``initial`` / ``start_step`` to resume from a host copy of the state.

DEC-DA's augmentation keys are derived from the seeds on every call
(:func:`jaxae.cluster.dec.augment_keys`), never stored: a checkpoint holds the same
:class:`RefineState` with augmentation on or off, and resuming with the same seeds
augments each remaining step exactly as the uninterrupted run does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxae._validate import check_int, check_rows
from jaxae.augment import check_image_shape
from jaxae.cluster.dec import (
    RefineState,
    augment_keys,
    build_optimizer,
    encode_models,
    refine_steps,
)
from jaxae.cluster.guard import GUARD_SIGNALS
from jaxae.cluster.kmeans import KMeansFit, check_clusters, fit_kmeans, predict_nearest
from jaxae.cluster.refine_config import RefineConfig
from jaxae.cluster.registry import Method
from jaxae.cluster_options import MAX_PASSES, RefineOptions
from jaxae.config import MAX_STEPS, ModelConfig, check_seed
from jaxae.errors import JaxaeError
from jaxae.loop import Call, Stopped, drive


class RefinementStopped(Stopped):
    """The refinement stopped early (divergence or an interrupt) after ``step`` steps."""

    @property
    def step(self) -> int:
        return self.done


class RefineResult(NamedTuple):
    """What :func:`refine` returns; every array has a leading model axis M.

    Attributes:
      params: the refined autoencoder parameters (Flax tree, leaves ``(M, ...)``).
      centers: ``(M, K, C)`` float32 refined centres.
      labels: ``(M, N)`` int32 final assignments: each code's nearest centre, which
        is the argmax of Q (the Student-t kernel falls with the distance).
      steps: ``(M,)`` int optimiser steps each model took in all.
      converged: ``(M,)`` bool, True where the change of assignments fell below tol
        (or where the guard stopped the model: see ``guard_step``).
      delta: ``(M,)`` float fraction of assignments changed at the last target update.
      state: the final :class:`RefineState` on the host (for a checkpoint).
      guard_step: ``(M,)`` int the step at which the guard stopped each model, -1
        where it did not; such a model's ``params``, ``centers`` and ``labels`` are
        its start's (the pretrained autoencoder and the starting centres), in
        ``state`` too.
      guard_signal: ``(M,)`` str the signal that fired (``GUARD_SIGNALS``), "" where none.
    """

    params: Any
    centers: np.ndarray
    labels: np.ndarray
    steps: np.ndarray
    converged: np.ndarray
    delta: np.ndarray
    state: RefineState
    guard_step: np.ndarray
    guard_signal: np.ndarray


def init_refinement(
    params: Any,
    x: jax.Array | np.ndarray,
    *,
    model_config: ModelConfig,
    config: RefineConfig,
    seeds: Sequence[int],
    start: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> RefineState:
    """The starting state: each model's centres from clusters of its pretrained codes.

    Args:
      params: pretrained autoencoder parameters with a leading model axis M.
      x: ``(N, D)`` scaled float32 inputs (the autoencoder's training input).
      model_config, config: the model and the refinement settings.
      seeds: M seeds, one per model, for its KMeans (``n_init=config.kmeans_n_init``).
      start: ``start(codes, seed)`` -> ``(N,)`` labels in ``[0, config.clusters)``
        of one model's ``(N, C)`` codes, another clustering to start from (the
        centres are then each cluster's mean code); None for DEC's KMeans.

    Returns:
      A :class:`RefineState` on the device, leading axis M, at step 0; its
      ``labels`` are the starting clusters.
    """
    codes = np.asarray(jax.device_get(encode_models(params, x, model_config=model_config)))
    if start is None:
        fits = [
            fit_kmeans(c, clusters=config.clusters, n_init=config.kmeans_n_init, seed=int(seed))
            for c, seed in zip(codes, seeds, strict=True)
        ]
        centers, labels = [f.centers for f in fits], [f.labels for f in fits]
    else:
        labels = [np.asarray(start(c, int(seed))) for c, seed in zip(codes, seeds, strict=True)]
        centers = [cluster_means(c, k, config.clusters) for c, k in zip(codes, labels)]
    centers = jnp.asarray(np.stack(centers), jnp.float32)
    labels = jnp.asarray(np.stack(labels), jnp.int32)
    trainable = {
        "autoencoder": jax.tree.map(jnp.array, params),  # a copy: the state is donated
        "centers": jnp.array(centers),
    }
    m, n = codes.shape[:2]
    return RefineState(
        params=trainable,
        opt_state=jax.vmap(build_optimizer(config).init)(trainable),
        target=jnp.zeros((m, n, config.clusters), jnp.float32),
        labels=jnp.array(labels),
        delta=jnp.ones((m,), jnp.float32),
        step=jnp.zeros((m,), jnp.int32),
        converged=jnp.zeros((m,), bool),
        loss=jnp.zeros((m,), jnp.float32),
        start_labels=labels,
        start_centers=centers,
        guard_step=jnp.full((m,), -1, jnp.int32),
        guard_signal=jnp.zeros((m,), jnp.int32),
        agreement=jnp.zeros((m,), jnp.float32),
    )


def cluster_means(codes: np.ndarray, labels: np.ndarray, clusters: int) -> np.ndarray:
    """``(clusters, C)`` mean code of each cluster of ``labels``.

    A cluster with no code (a mixture may leave one empty) starts at the code
    farthest from its own cluster's mean, as KMeans relocates an empty centre.
    """
    labels = np.asarray(labels)
    if labels.shape != codes.shape[:1] or labels.min() < 0 or labels.max() >= clusters:
        raise JaxaeError(
            f"the starting labels must be {codes.shape[0]} integers in [0, {clusters}), "
            f"got shape {labels.shape} in [{labels.min()}, {labels.max()}]"
        )
    codes = np.asarray(codes, np.float64)
    counts = np.bincount(labels, minlength=clusters)
    sums = np.zeros((clusters, codes.shape[1]))
    np.add.at(sums, labels, codes)
    centers = sums / np.maximum(counts, 1)[:, None]
    far = np.argsort(-np.sum(np.square(codes - centers[labels]), axis=1))
    for k, row in zip(np.flatnonzero(counts == 0), far):
        centers[k] = codes[row]
    return centers.astype(np.float32)


def state_template(params: Any, n: int, *, model_config: ModelConfig, config: RefineConfig):
    """The shapes and dtypes of a :class:`RefineState` for ``params`` (axis M) and n rows."""
    m = {np.shape(leaf)[0] for leaf in jax.tree.leaves(params)}.pop()
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    trainable = {
        "autoencoder": jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), params),
        "centers": f32(m, config.clusters, model_config.code_dim),
    }
    i32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.int32)
    return RefineState(
        params=trainable,
        opt_state=jax.eval_shape(jax.vmap(build_optimizer(config).init), trainable),
        target=f32(m, n, config.clusters),
        labels=i32(m, n),
        delta=f32(m),
        step=i32(m),
        converged=jax.ShapeDtypeStruct((m,), jnp.bool_),
        loss=f32(m),
        start_labels=i32(m, n),
        start_centers=f32(m, config.clusters, model_config.code_dim),
        guard_step=i32(m),
        guard_signal=i32(m),
        agreement=f32(m),
    )


def restore_state(saved: dict, template: RefineState) -> RefineState:
    """A :class:`RefineState` from its saved nested dicts (a checkpoint's ``refine``).

    Raises:
      JaxaeError: the arrays do not have the template's tree, shapes or dtypes.
    """
    from flax import serialization

    try:
        state = serialization.from_state_dict(template, saved)
    except (KeyError, TypeError, ValueError) as e:
        raise JaxaeError(
            f"the saved refinement does not fit this run ({e}): refine again"
        ) from None
    for leaf, want in zip(jax.tree.leaves(state), jax.tree.leaves(template), strict=True):
        if np.shape(leaf) != want.shape or np.asarray(leaf).dtype != want.dtype:
            raise JaxaeError(
                f"the saved refinement has an array of {np.asarray(leaf).dtype}"
                f"{list(np.shape(leaf))} where {want.dtype}{list(want.shape)} belongs: refine again"
            )
    return state


def default_chunk(config: RefineConfig) -> int:
    """Steps per host call: about 20 progress updates, whole update intervals."""
    intervals = -(-config.max_iter // (20 * config.update_interval))
    return min(config.max_iter, intervals * config.update_interval)


def refine(
    x: jax.Array | np.ndarray,
    params: Any,
    *,
    model_config: ModelConfig,
    config: RefineConfig,
    seeds: Sequence[int],
    steps_per_chunk: int | None = None,
    initial: RefineState | None = None,
    start_step: int = 0,
    progress: bool = True,
    on_chunk: Callable[[int, RefineState], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    vectorize_models: bool | None = None,
) -> RefineResult:
    """DEC or IDEC refinement of M pretrained autoencoders at once.

    Args:
      x: ``(N, D)`` scaled float32 inputs, on the device or not.
      params: the pretrained autoencoders, leaves with a leading model axis M.
      model_config: their shape.
      config: the refinement (``config.method`` is ``"dec"`` or ``"idec"``; with
        ``config.augment`` enabled, DEC-DA / IDEC-DA).
      seeds: M seeds, one per model, for the starting KMeans and the augmentation.
      steps_per_chunk: steps between checkpoint chances (default: about 20); the host
        calls the program for about two seconds of steps at a time within them.
      initial, start_step: resume from a host state after ``start_step`` steps
        (the ``state`` given to ``on_chunk``).
      progress: a tqdm bar (after 2 s).
      on_chunk: called after each chunk (and before a stop, and when every model
        converged) with (steps done, host state).
      should_stop: polled after each call; True stops with :class:`RefinementStopped`.
      vectorize_models: ``vmap`` the models (default on GPU and TPU) or run them one
        after another (default on CPU, where each equals its model refined alone).

    Returns:
      A :class:`RefineResult`.

    Raises:
      RefinementStopped: a loss became non-finite, or ``should_stop`` returned True.
      JaxaeError: inputs that do not fit together.

    Example::

        config = RefineConfig.for_method("idec")
        result = refine(x, train_result.state.params, model_config=model_config,
                        config=config, seeds=[0, 1, 2])
    """
    x = check_rows("x", x, floats_only=True, allow_images=False, check_finite=False)
    n, dim = x.shape
    if dim != model_config.input_dim:
        raise JaxaeError(
            f"x has {dim} columns but the model expects {model_config.input_dim}: "
            "pass the inputs the autoencoder was trained on"
        )
    check_clusters(config.clusters, n)
    if config.augment.enabled:
        check_image_shape(config.image_shape, dim)
    if config.batch_size > n:
        raise JaxaeError(
            f"batch_size={config.batch_size} is larger than the {n} rows: "
            f"pass batch_size={n} or less"
        )
    seeds = [check_seed(s) for s in seeds]
    models = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(params)}
    if models != {len(seeds)}:
        raise JaxaeError(
            f"params must have a leading model axis of {len(seeds)} (one per seed), "
            f"got {sorted(models, key=str)}: pass one seed per model"
        )
    start_step = check_int("start_step", start_step, minimum=0, maximum=config.max_iter)
    if steps_per_chunk is not None:
        steps_per_chunk = check_int("steps_per_chunk", steps_per_chunk, minimum=1)
    chunk = min(steps_per_chunk or default_chunk(config), config.max_iter)
    if vectorize_models is None:
        vectorize_models = jax.devices()[0].platform != "cpu"

    x = jnp.asarray(x, jnp.float32)
    if initial is None:
        initial = init_refinement(params, x, model_config=model_config, config=config, seeds=seeds)
    state = jax.tree.map(jnp.array, initial)  # a copy on the device, donated below
    statics = dict(model_config=model_config, config=config, vectorize=bool(vectorize_models))
    # No keys argument at all without augmentation: the program is the one plain DEC compiles.
    keyed = {"keys": jnp.asarray(augment_keys(seeds))} if config.augment.enabled else {}

    def observe(state, ran, done, count):
        host = jax.device_get(state)
        if not np.isfinite(host.loss).all():
            bad = int(np.argmin(np.isfinite(host.loss)))
            message = (
                f"refinement diverged: model {bad}'s loss is {host.loss[bad]} by step "
                f"{done + int(ran)}; pass a smaller lr"
            )
            return Call(int(ran), diverged=message)
        postfix = {"loss": f"{np.mean(host.loss):.4f}", "changed": f"{np.max(host.delta):.4f}"}
        return Call(int(ran), finished=bool(host.converged.all()), postfix=postfix)

    def checkpoint(done, state):
        on_chunk(done, jax.device_get(state))

    if start_step < config.max_iter and not bool(np.all(jax.device_get(state.converged))):
        compiled = refine_steps.lower(state, x, 0, 0, **keyed, **statics).compile()
        state, _ = drive(
            lambda state, first, count: compiled(state, x, first, count, **keyed),
            state, start=start_step, total=config.max_iter, chunk=chunk, observe=observe,
            unit="step", what="refinement", progress=progress, should_stop=should_stop,
            on_chunk=None if on_chunk is None else checkpoint, stop_error=RefinementStopped,
        )  # fmt: skip
    host = keep_start(jax.device_get(state), params)
    ae = host.params["autoencoder"]
    codes = np.asarray(jax.device_get(encode_models(ae, x, model_config=model_config)))
    centers = np.asarray(host.params["centers"])
    labels = np.stack([predict_nearest(c, z) for c, z in zip(centers, codes, strict=True)])
    signals = np.asarray(host.guard_signal)
    return RefineResult(
        params=ae,
        centers=centers,
        labels=labels,
        steps=np.asarray(host.step),
        converged=np.asarray(host.converged),
        delta=np.asarray(host.delta),
        state=host,
        guard_step=np.asarray(host.guard_step),
        guard_signal=np.array([GUARD_SIGNALS[s - 1] if s else "" for s in signals]),
    )


def keep_start(host: RefineState, pretrained: Any) -> RefineState:
    """``host`` with every model the guard stopped put back at its start: the
    ``pretrained`` autoencoder (leading axis M) and the starting centres.

    On the host and idempotent, so a resumed run that finds the guard's decision
    in its checkpoint reaches the same state."""
    fired = np.flatnonzero(np.asarray(host.guard_step) >= 0)
    if not len(fired):
        return host
    ae = jax.tree.map(np.array, host.params["autoencoder"])
    for leaf, start in zip(jax.tree.leaves(ae), jax.tree.leaves(pretrained), strict=True):
        leaf[fired] = np.asarray(start)[fired]
    centers = np.array(host.params["centers"])
    centers[fired] = np.asarray(host.start_centers)[fired]
    return host._replace(params={**host.params, "autoencoder": ae, "centers": centers})


def budget(options: RefineOptions, n: int) -> int:
    """The most steps a refinement of ``n`` rows takes: ``max_steps``, or by default
    ``MAX_PASSES`` passes of ``ceil(n / batch_size)`` batches (at most ``MAX_STEPS``)."""
    if options.max_steps is not None:
        return options.max_steps
    return min(MAX_PASSES * -(-n // min(options.batch_size, n)), MAX_STEPS)


def config_for(cluster_config, n: int, image_shape=None) -> RefineConfig:
    """The DEC/IDEC settings a ``ClusterConfig`` names, for ``n`` rows of images of
    ``image_shape`` (what DEC-DA's augmentation needs)."""
    c, o = cluster_config, cluster_config.refine
    return RefineConfig.for_method(
        c.method, clusters=c.clusters, gamma=o.gamma, update_interval=o.update_interval,
        tol=o.tol, max_iter=budget(o, n), batch_size=min(o.batch_size, n),
        kmeans_n_init=c.n_init, **({} if o.lr is None else {"lr": o.lr}),
        augment=o.augment, image_shape=image_shape if o.augment.enabled else None,
        guard=o.guard,
    )  # fmt: skip


# Fitted over all models at once with their encoders (jaxae.methods); the refined
# centres predict as KMeans' do, by the nearest centre.
DEC = Method("dec", "DEC", fit=None, load=KMeansFit.from_arrays, refines_encoder=True)
IDEC = Method("idec", "IDEC", fit=None, load=KMeansFit.from_arrays, refines_encoder=True)
