"""The encoder people import: standardise, encode, on any number of rows.

``encode_fn`` is the pure, jittable ``(params, pixels) -> codes`` function.
``Encoder`` wraps it for arrays of any length N: rows are padded up to a size
bucket (eight sizes per power of two, so at most 12.5% padding), encoded by a
program compiled once per bucket, and sliced back to N.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.config import ModelConfig
from jaxae.errors import JaxaeError
from jaxae.preprocess import row_moments, standardize
from jaxae.train import build_model


def encode_fn(params: Any, pixels: jax.Array, model_config: ModelConfig) -> jax.Array:
    """(N, D) raw pixels, uint8 or float -> (N, code_dim) float32 codes."""
    model = build_model(model_config)
    return model.apply(params, standardize(pixels), method=model.encode).astype(jnp.float32)


def encode_folded_fn(params: Any, pixels: jax.Array, model_config: ModelConfig) -> jax.Array:
    """``encode_fn`` with the standardisation folded into the first layer.

    ``((x - m) / s) @ W + b == (x @ W - m * W.sum(0)) / s + b``: the pixels
    (uint8 stays uint8 until the matrix product) go straight into the first
    matrix product and the standardised images are never written to memory,
    which on a GPU is most of the traffic of an encode.
    """
    dtype = jnp.dtype(model_config.dtype)
    x = jnp.asarray(pixels)
    mean, inv_std = row_moments(x.astype(jnp.float32))
    layer = params["params"]["encoder_hidden"]
    kernel = layer["kernel"]
    h = jnp.dot(x.astype(dtype), kernel.astype(dtype), preferred_element_type=jnp.float32)
    h = (h - mean * kernel.sum(0, keepdims=True)) * inv_std + layer["bias"][None]
    model = build_model(model_config)
    h = jax.nn.relu(h).astype(dtype)
    return model.apply(params, h, method=model.code_from_hidden).astype(jnp.float32)


def reconstruct_fn(params: Any, pixels: jax.Array, model_config: ModelConfig) -> jax.Array:
    """(N, D) raw pixels -> (N, D) float32 reconstructions, in standardised units."""
    return build_model(model_config).apply(params, standardize(pixels)).astype(jnp.float32)


_encode = jax.jit(encode_fn, static_argnames="model_config")
_reconstruct = jax.jit(reconstruct_fn, static_argnames="model_config")


def bucket(n: int) -> int:
    """The padded size for n rows: the smallest m * 2**k >= n with 8 <= m < 16."""
    if n <= 8:
        return 8
    shift = max(0, (n - 1).bit_length() - 4)
    return -(-n >> shift) << shift


class Encoder:
    """A trained autoencoder's encoder (and decoder), ready to use.

    Example::

        ae = jaxae.load("runs/my-run")
        codes = ae.encode(images)          # (N, 784) uint8 or float -> (N, 100)
    """

    def __init__(self, params: Any, model_config: ModelConfig):
        self.params = jax.device_put(params)
        self.model_config = model_config

    @property
    def code_dim(self) -> int:
        return self.model_config.code_dim

    def encode(self, images: np.ndarray | jax.Array) -> np.ndarray:
        """(N, input_dim) raw pixels (uint8 or float) -> (N, code_dim) float32 codes."""
        return self._apply(_encode, images)

    def reconstruct(self, images: np.ndarray | jax.Array) -> np.ndarray:
        """(N, input_dim) raw pixels -> (N, input_dim) reconstructions, standardised units."""
        return self._apply(_reconstruct, images)

    def _apply(self, fn, images) -> np.ndarray:
        images = self._check(images)
        n = images.shape[0]
        padded = bucket(n)
        xp = jnp if isinstance(images, jax.Array) else np
        images = xp.pad(images, ((0, padded - n), (0, 0)))
        out = fn(self.params, images, model_config=self.model_config)
        return np.asarray(out)[:n]  # slice on the host: a device slice would compile per n

    def _check(self, images):
        if not isinstance(images, jax.Array):
            images = np.asarray(images)
        if images.ndim == 3:  # (N, H, W) images
            images = images.reshape(images.shape[0], -1)
        if images.ndim != 2:
            raise JaxaeError(
                f"images must be (N, {self.model_config.input_dim}), got shape {images.shape}"
            )
        if images.shape[1] != self.model_config.input_dim:
            raise JaxaeError(
                f"images have {images.shape[1]} pixels but this model was trained on "
                f"{self.model_config.input_dim}: pass images of the training data's size"
            )
        if not (
            jnp.issubdtype(images.dtype, jnp.floating) or jnp.issubdtype(images.dtype, jnp.integer)
        ):
            raise JaxaeError(f"images must be numbers, got dtype {images.dtype}")
        if jnp.issubdtype(images.dtype, jnp.floating):
            xp = jnp if isinstance(images, jax.Array) else np
            if not bool(xp.isfinite(images).all()):
                raise JaxaeError(
                    "images contain non-finite values (NaN or inf): clean the data first"
                )
        return images
