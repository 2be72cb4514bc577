"""The encoder people import: scale, encode, on any number of rows.

``encode_fn`` is the pure, jittable ``(params, pixels) -> codes`` function.
``Encoder`` wraps it for arrays of any length N: rows are padded up to a whole
number of blocks of 256 rows (above 8 blocks, a size bucket of blocks: at most
12.5% padding), encoded by a program compiled once per size, one block after
another, and sliced back to N. Every row is computed at the same shape, so an
image's codes (and its label from ``predict``) are the same bits whatever the
batch's size, order or other images (``jaxae._rowwise``).
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxae._rowwise import map_blocks, padded_rows
from jaxae._validate import check_rows
from jaxae.config import ModelConfig
from jaxae.errors import JaxaeError, JaxaeWarning
from jaxae.model import build_model
from jaxae.preprocess import range_problem, scale


def encode_fn(params: Any, pixels: jax.Array, model_config: ModelConfig) -> jax.Array:
    """(N, D) raw pixels, uint8, bool or float -> (N, code_dim) float32 codes.

    Scales the pixels as the model was trained (``model_config.scaling``), then
    encodes. Pure and jittable: ``jax.jit(encode_fn, static_argnames="model_config")``.
    """
    model = build_model(model_config)
    x = scale(pixels, model_config.scaling, model_config.data_range)
    return model.apply(params, x, method=model.encode).astype(jnp.float32)


def reconstruct_fn(params: Any, pixels: jax.Array, model_config: ModelConfig) -> jax.Array:
    """(N, D) raw pixels -> (N, D) float32 reconstructions, in scaled units."""
    x = scale(pixels, model_config.scaling, model_config.data_range)
    return build_model(model_config).apply(params, x).astype(jnp.float32)


def side_by_side_fn(
    params: Any, pixels: jax.Array, shift: jax.Array, scale: jax.Array, model_config: ModelConfig
) -> jax.Array:
    """(N, D) raw pixels -> (N, M * code_dim) float32: M models' codes side by side.

    ``params`` has a leading axis of M models; each model's codes are centred by its
    row of ``shift`` (M, code_dim) and divided by its ``scale`` (M,), then the M
    blocks are concatenated per row (``jaxae.consensus``). Pure and jittable.
    """
    codes = jax.vmap(lambda p: encode_fn(p, pixels, model_config))(params)  # (M, N, F)
    codes = (codes - shift[:, None, :]) / scale[:, None, None]
    return jnp.transpose(codes, (1, 0, 2)).reshape(pixels.shape[0], -1)


def _rowwise(fn):
    """``fn(params, pixels, *args, model_config=...)`` jitted, in blocks of rows."""

    def blocks(params, pixels, *args, model_config, **static):
        return map_blocks(lambda x: fn(params, x, *args, model_config, **static), pixels)

    return blocks


def _labels_fn(params, pixels, arrays, model_config, *, labels):
    """Pixels to cluster labels: ``labels(arrays, codes)`` is a fitted method's
    ``labels_program`` (umap-gmm's JAX backend)."""
    return labels(arrays, encode_fn(params, pixels, model_config))


def _side_by_side_labels_fn(params, pixels, shift, scale, arrays, model_config, *, labels):
    """Pixels to cluster labels through several models' codes side by side."""
    return labels(arrays, side_by_side_fn(params, pixels, shift, scale, model_config))


_encode = jax.jit(_rowwise(encode_fn), static_argnames="model_config")
_side_by_side = jax.jit(_rowwise(side_by_side_fn), static_argnames="model_config")
_predict_side_by_side = jax.jit(
    _rowwise(_side_by_side_labels_fn), static_argnames=("model_config", "labels")
)
_reconstruct = jax.jit(_rowwise(reconstruct_fn), static_argnames="model_config")
_predict = jax.jit(_rowwise(_labels_fn), static_argnames=("model_config", "labels"))


def compiled_programs() -> int:
    """How many encode programs are compiled so far (one per size bucket and model)."""
    return _encode._cache_size()


class Encoder:
    """A trained autoencoder's encoder (and decoder), ready to use.

    ``members``: every model of the run (a leading model axis), for a clusterer
    fitted on several models' codes side by side (``jaxae.consensus``), which
    ``predict`` then encodes with; ``params`` is the kept model's.

    Example::

        ae = jaxae.load("runs/my-run")
        codes = ae.encode(images)          # (N, 784) uint8 or float -> (N, 100)
    """

    def __init__(
        self, params: Any, model_config: ModelConfig, *, clusterer: Any = None, members: Any = None
    ):
        self.params = jax.device_put(params)
        self.model_config = model_config
        self.clusterer = clusterer
        self.members = members
        self._side: tuple[tuple[int, ...], Encoder] | None = None  # members chosen, on device

    @staticmethod
    def side_by_side(
        params: Any, model_config: ModelConfig, images: np.ndarray, shift, scale
    ) -> np.ndarray:
        """:func:`side_by_side_fn` on checked rows of any number, in blocks as ``encode``."""
        encoder = Encoder(params, model_config)
        images = encoder._check(images)
        shift, scale = jnp.asarray(shift, jnp.float32), jnp.asarray(scale, jnp.float32)
        return encoder._apply(_side_by_side, images, "constant", shift, scale)

    @property
    def code_dim(self) -> int:
        return self.model_config.code_dim

    def encode(self, images: np.ndarray | jax.Array) -> np.ndarray:
        """(N, input_dim) raw pixels (uint8 or float) -> (N, code_dim) float32 codes."""
        return self._apply(_encode, self._check(images))

    def predict(self, images: np.ndarray | jax.Array) -> np.ndarray:
        """(N, input_dim) raw pixels -> (N,) int cluster labels, by the run's own method.

        Where the method offers a ``labels_program`` (umap-gmm on the device), the
        encoder and the method run as one program, compiled once per size bucket,
        and each image's label depends on that image alone (its bits on one CPU),
        whatever else is in the call; the rows are padded with copies of the last.
        Otherwise the codes go to the method's ``predict``.
        """
        if self.clusterer is None:
            raise JaxaeError(
                "this encoder has no clusters: load a run folder written by jaxae run "
                "(jaxae.load(run_dir)) to predict"
            )
        images = self._check(images)
        fitted = self.clusterer.fitted
        labels_program = getattr(fitted, "labels_program", None)
        program = None if labels_program is None else labels_program()
        encoder, encode, labelled, args = self, _encode, _predict, ()
        models = getattr(fitted, "models", None)  # several models' codes side by side
        if models is not None:
            if self.members is None:
                raise JaxaeError(
                    "these clusters were fitted on several models' codes side by side: load "
                    "the run folder (jaxae.load(run_dir)) to predict with all its models"
                )
            encoder = self._side_by_side_encoder(models)
            encode, labelled = _side_by_side, _predict_side_by_side
            args = (jnp.asarray(fitted.shift), jnp.asarray(fitted.scale))
        if program is None:
            features = encoder._apply(encode, images, "constant", *args)
            return np.asarray(self.clusterer.predict(features))
        labels, arrays = program
        return encoder._apply(labelled, images, "edge", *args, arrays, labels=labels)

    def _side_by_side_encoder(self, models) -> Encoder:
        """An encoder of ``members``' models ``models`` (a model axis), put on the device
        once for every predict."""
        key = tuple(int(m) for m in models)
        if self._side is None or self._side[0] != key:
            chosen = jax.tree.map(lambda a: a[np.asarray(key)], self.members)
            self._side = (key, Encoder(chosen, self.model_config))
        return self._side[1]

    def reconstruct(self, images: np.ndarray | jax.Array) -> np.ndarray:
        """(N, input_dim) raw pixels -> (N, input_dim) reconstructions, in scaled units."""
        return self._apply(_reconstruct, self._check(images))

    def _apply(self, fn, images, pad: str = "constant", *args, **static) -> np.ndarray:
        """``fn(params, images, *args, model_config=..., **static)`` on checked rows
        (:meth:`_check`, done once by the caller) padded to whole blocks
        (:func:`jaxae._rowwise.padded_rows`; with zeros, or with ``pad="edge"``
        copies of the last row)."""
        n = images.shape[0]
        padded = padded_rows(n)
        xp = jnp if isinstance(images, jax.Array) else np
        images = xp.pad(images, ((0, padded - n), (0, 0)), mode=pad)
        out = fn(self.params, images, *args, model_config=self.model_config, **static)
        return np.asarray(out)[:n]  # slice on the host: a device slice would compile per n

    def _check(self, images):
        """Checked ``(N, input_dim)`` images; a ``JaxaeWarning`` when they lie far outside
        the training images' range (:func:`jaxae.preprocess.range_problem`), whose codes
        and clusters would mean little."""
        images = check_rows("images", images, width=self.model_config.input_dim)
        if images.dtype == bool:
            images = images.astype(np.uint8)
        if self.model_config.data_range is not None:
            problem = range_problem(images, self.model_config.data_range)
            if problem is not None:
                warnings.warn(problem, JaxaeWarning, stacklevel=3)  # the caller of encode
        return images
