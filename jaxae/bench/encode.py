"""Encoding latency for N rows, with the host copies and without.

``path="host"``: ``Encoder.encode`` on a NumPy array (checks, padding to a size
bucket, host-to-device and back). ``path="device"``: the jitted ``encode_fn`` on a
device array of exactly N rows, blocked on. Both for float32 and uint8 input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.config import ModelConfig
from jaxae.encoder import Encoder, encode_fn
from jaxae.train import build_model

INPUTS = ("float32", "uint8")
PATHS = {"host": "with copies", "device": "on device"}
_encode = jax.jit(encode_fn, static_argnames="model_config")


@functools.cache
def _params(model_config: ModelConfig) -> Any:
    model = build_model(model_config)
    return jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, model_config.input_dim)))


def encode_call(images: np.ndarray, *, input_dtype: str, path: str) -> Callable[[], Any]:
    """A call that encodes ``images`` (N, D) once and returns when the codes are ready.

    The model is the original recipe's shape with random parameters: speed does
    not depend on training.
    """
    model_config = ModelConfig(input_dim=images.shape[1])
    params = _params(model_config)
    images = images.astype(input_dtype)
    if path == "host":
        encoder = Encoder(params, model_config)
        return lambda: encoder.encode(images)
    x = jax.device_put(images)
    return lambda: jax.block_until_ready(_encode(params, x, model_config=model_config))


def encode_row(n: int, input_dtype: str, path: str, times: np.ndarray) -> dict:
    """The report's row for one case: median and p99 of ``times`` (seconds per call)."""
    median = float(np.median(times))
    return dict(
        n=n,
        input_dtype=input_dtype,
        path=path,
        median_seconds=median,
        p99_seconds=float(np.percentile(times, 99)),
        repeats=len(times),
        rows_per_second=n / median,
    )
