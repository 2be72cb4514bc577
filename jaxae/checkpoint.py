"""Checkpoints: one msgpack file per run, written atomically, never pickled.

``checkpoint.msgpack`` holds the parameters and optimiser state of every model
(always with a leading model axis), the configuration, the loss history, the
stage the run reached (``STAGES``), once a DEC/IDEC refinement has begun its state
beside the pretrained one, and the jaxae version, serialised with
``flax.serialization`` (msgpack; arrays as raw bytes with dtype and shape) with a
SHA-256 of the arrays, checked on load, so flipped bits are refused rather than
loaded. It is written to a temporary file and renamed, so a crash never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import serialization

from jaxae._files import RUN_MARKER, atomic_write
from jaxae.config import ModelConfig, TrainConfig
from jaxae.errors import JaxaeError
from jaxae.train_state import TrainState, create_train_state

FILENAME = "checkpoint.msgpack"
FORMAT = "jaxae-checkpoint"
FORMAT_VERSION = 2
# What a run had done when its checkpoint was written: pretraining (epoch of epochs),
# clustering (pretraining done; a refinement, if any, at refine_step), writing (every
# number computed; the figures, clusters and report are what remain).
STAGES = ("pretraining", "clustering", "writing")


class Checkpoint(NamedTuple):
    """A saved run: the state after ``epoch`` epochs and how to continue it.

    ``state`` and ``loss_history`` have a leading model axis, one entry per
    (seed, lr) of ``models``; ``selected`` is the model that ``load`` returns.
    ``refine`` is a DEC/IDEC refinement's state after ``refine_step`` steps, as
    nested dicts of arrays (``jaxae.cluster.refine`` restores it), for the models
    ``refine_models`` (those that did not diverge); None before one began.
    """

    state: TrainState
    model_config: ModelConfig
    train_config: TrainConfig
    loss_history: np.ndarray
    epoch: int
    models: list[tuple[int, float]]
    chunk: int | None
    selected: int
    run: dict
    version: str
    stage: str = "pretraining"
    refine: dict | None = None
    refine_step: int = 0
    refine_models: list[int] | None = None


def save_checkpoint(
    run_dir: str | os.PathLike,
    state: TrainState,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    loss_history: np.ndarray,
    epoch: int,
    models: list[tuple[int, float]] | None = None,
    chunk: int | None = None,
    selected: int = 0,
    run: dict | None = None,
    stage: str | None = None,
    refine: Any = None,
    refine_step: int = 0,
    refine_models: list[int] | None = None,
) -> Path:
    """Save a training state to ``run_dir/checkpoint.msgpack``; returns the path.

    ``state`` and ``loss_history`` carry a leading model axis; ``models`` lists
    the (seed, lr) of each model (default: the config's one); ``chunk`` is the
    epochs per compiled call, kept so that a resumed run cuts its epochs exactly as the first did;
    ``run`` is JSON the caller needs to continue (the CLI's data and KMeans options);
    ``stage`` (default: pretraining until the last epoch, then clustering) and
    ``refine``, ``refine_step``, ``refine_models`` say how far the clustering got.
    """
    from jaxae import __version__

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jaxae_version": __version__,
        "model": dataclasses.asdict(model_config),
        "train": dataclasses.asdict(train_config),
        "epoch": epoch,
        "models": models or [(train_config.seed, train_config.lr)],
        "chunk": chunk,
        "selected": selected,
        "run": run or {},
        "stage": stage or ("pretraining" if epoch < train_config.epochs else "clustering"),
    }
    if refine is not None:
        meta.update(refine_step=int(refine_step), refine_models=[int(m) for m in refine_models])
    host_state = jax.device_get(state)
    if np.ndim(loss_history) == 1:  # one model, as fit returns it: give it its model axis
        host_state = jax.tree.map(lambda a: np.asarray(a)[None], host_state)
        loss_history = np.asarray(loss_history)[None]
    arrays = {
        "loss_history": np.asarray(loss_history, np.float32),
        "state": serialization.to_state_dict(host_state),
    }
    if refine is not None:
        arrays["refine"] = serialization.to_state_dict(jax.device_get(refine))
    body = serialization.msgpack_serialize(arrays)
    meta_json = json.dumps(meta)
    payload = {"meta": meta_json, "body": body, "sha256": checksum(meta_json, body)}
    path = Path(run_dir) / FILENAME
    atomic_write(path, serialization.msgpack_serialize(payload))
    return path


def checksum(meta: str, body: bytes) -> str:
    """SHA-256 over the JSON configuration and the serialised arrays."""
    return hashlib.sha256(meta.encode() + b"\0" + body).hexdigest()


def load_checkpoint(run_dir: str | os.PathLike) -> Checkpoint:
    """Read and check ``run_dir/checkpoint.msgpack`` (or the file itself)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / FILENAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if (path.parent / RUN_MARKER).is_file():  # claimed by a run that saved nothing yet
            raise JaxaeError(
                f"{path.parent} holds no checkpoint: its run stopped (or is still running) "
                "before it saved one, so there is nothing to resume or load; start the run "
                f"again with jaxae run --out {path.parent} and its flags"
            ) from None
        raise JaxaeError(
            f"cannot read checkpoint {path}: no such file; pass a run folder written by jaxae run"
        ) from None
    except OSError as e:
        raise JaxaeError(
            f"cannot read checkpoint {path}: {e.strerror or e}; "
            "pass a run folder written by jaxae run"
        ) from None
    try:
        payload = serialization.msgpack_restore(data)
        meta = json.loads(payload["meta"])
        body = payload["body"]
        intact = checksum(payload["meta"], body) == payload["sha256"]
        if meta.get("format") != FORMAT:
            raise ValueError("not a jaxae checkpoint")
    except Exception:  # msgpack raises many types on garbage
        raise JaxaeError(
            f"{path} is not a jaxae checkpoint: pass a run folder written by jaxae run"
        ) from None
    if isinstance(meta.get("format_version"), bool):  # JSON true equals 1 in Python
        raise JaxaeError(
            f"{path} is damaged (format_version is {meta['format_version']!r}): "
            "train again with jaxae run"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise JaxaeError(
            f"{path} has checkpoint format {meta.get('format_version')!r}; this jaxae reads "
            f"format {FORMAT_VERSION}: use the jaxae version that wrote it "
            f"({meta.get('jaxae_version')})"
        )
    if not intact:
        raise JaxaeError(
            f"{path} is damaged (its checksum does not match its contents): "
            "train again with jaxae run, or resume from an intact copy"
        )
    try:
        payload = serialization.msgpack_restore(body)
        meta["model"]["hidden"] = tuple(meta["model"]["hidden"])
        if meta["model"].get("scaling") == "unit":
            # Written before the range was fitted: such a model was trained on pixels / 255.
            meta["model"].setdefault("data_range", (0.0, 255.0))
        model_config = ModelConfig(**meta["model"])
        train_config = TrainConfig(**meta["train"])
        epoch = _int(meta["epoch"])
        models = [(_int(seed), _float(lr)) for seed, lr in meta["models"]]
        chunk = None if meta["chunk"] is None else _int(meta["chunk"])
        selected = _int(meta["selected"])
        run = dict(meta["run"])
        version = str(meta["jaxae_version"])
        stage = meta.get("stage") or (
            "pretraining" if epoch < train_config.epochs else "clustering"
        )
        if stage not in STAGES:
            raise ValueError(f"stage {stage!r}")
        refine = payload.get("refine")
        refine_step = _int(meta.get("refine_step", 0))
        refine_models = meta.get("refine_models")
        if refine is not None:
            refine_models = [_int(m) for m in refine_models]
            if not refine_models or not all(0 <= m < len(models) for m in refine_models):
                raise ValueError(f"refine_models {refine_models}")
        # Values beyond float32 become inf, which the history may hold anyway.
        with np.errstate(over="ignore", invalid="ignore"):
            history = np.asarray(payload["loss_history"], np.float32)
        template = _template(len(models), model_config, train_config)
        state = serialization.from_state_dict(template, payload["state"])
        if not (0 <= epoch <= train_config.epochs and 0 <= selected < len(models) and models):
            raise ValueError("epoch, models or selected out of range")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk is {chunk}")
        if not all(0 <= seed < 2**32 for seed, _ in models):
            raise ValueError("a seed is beyond uint32")
        if history.shape != (len(models), train_config.epochs):
            raise ValueError(f"loss history has shape {history.shape}")
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        detail = f"no {e}" if isinstance(e, KeyError) else e
        raise JaxaeError(f"{path} is damaged ({detail}): train again with jaxae run") from None
    if jax.tree_util.tree_structure(state) != jax.tree_util.tree_structure(template):
        raise JaxaeError(
            f"{path} is damaged: its state does not have the model's tree: "
            "train again with jaxae run"
        )
    _check_like(path, state, template)
    trained = np.isfinite(history[:, max(epoch - 1, 0)]) if epoch else np.ones(len(models), bool)
    for leaf in jax.tree.leaves(state.params):  # a diverged grid member may hold NaN
        if not np.isfinite(np.asarray(leaf)[trained]).all():
            raise JaxaeError(
                f"{path} holds non-finite parameters (NaN or inf): train again with jaxae run"
            )
    if refine is not None:
        _check_refined(path, refine, state.params, len(refine_models))
    return Checkpoint(
        state, model_config, train_config, history, epoch, models, chunk, selected, run,
        version, stage, refine, refine_step, refine_models,
    )  # fmt: skip


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _float(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _template(models: int, model_config: ModelConfig, train_config: TrainConfig) -> TrainState:
    """The shapes and dtypes a ``models``-model state of this configuration has."""
    keys = jax.ShapeDtypeStruct((models, 2), np.uint32)
    lrs = jax.ShapeDtypeStruct((models,), np.float32)
    create = jax.vmap(lambda k, lr: create_train_state(k, lr, model_config, train_config))
    return jax.eval_shape(create, keys, lrs)


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


def _check_refined(path: Path, refine: dict, params: Any, models: int) -> None:
    """The refined autoencoder must have the pretrained one's tree, for ``models`` models."""
    try:
        refined = refine["params"]["autoencoder"]
        like = jax.tree.map(lambda a: np.asarray(a)[:models], params)
        same = jax.tree_util.tree_structure(refined) == jax.tree_util.tree_structure(like)
    except (KeyError, TypeError) as e:
        raise JaxaeError(
            f"{path} is damaged (refinement: no {e}): train again with jaxae run"
        ) from None
    if not same:
        raise JaxaeError(
            f"{path} is damaged: its refined autoencoder does not have the model's tree: "
            "train again with jaxae run"
        )
    _check_like(path, refined, like)
    for leaf in jax.tree.leaves(refined):
        if not np.isfinite(np.asarray(leaf)).all():
            raise JaxaeError(
                f"{path} holds non-finite parameters (NaN or inf): train again with jaxae run"
            )


def encoder_params(ckpt: Checkpoint, model: int) -> Any:
    """The parameters a model's encoder has: refined by DEC/IDEC where it was, else pretrained."""
    if ckpt.refine is not None and model in ckpt.refine_models:
        index = ckpt.refine_models.index(model)
        return jax.tree.map(lambda a: np.asarray(a)[index], ckpt.refine["params"]["autoencoder"])
    return jax.tree.map(lambda a: a[model], ckpt.state.params)
