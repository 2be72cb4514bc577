"""Input scaling, applied on the device before training and before encoding.

Two scalings are offered (``ModelConfig.scaling``): ``"standardize"`` (the
original recipe: each image to mean 0 and standard deviation 1 over its pixels)
and ``"unit"`` (pixels / 255, as DEC and N2D feed MNIST).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SCALINGS = ("standardize", "unit")


def standardize(x: jax.Array | np.ndarray) -> jax.Array:
    """Standardises each image (row) to mean 0 and standard deviation 1.

    Matches ``StandardScaler().fit_transform(x.T).T``: population standard
    deviation (ddof 0), and rows that are constant (to float32 precision)
    become zeros. Jittable and vmappable; does no validation.

    Args:
      x: ``(..., D)`` pixels of any real dtype (e.g. uint8 or float32).

    Returns:
      ``(..., D)`` float32.
    """
    x = jnp.asarray(x, jnp.float32)
    mean, inv_std = row_moments(x)
    return (x - mean) * inv_std


def row_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-row mean and 1/std of (..., D) float32, both (..., 1); 1/std is 0 for constant rows.

    ``(x - mean) * inv_std`` is ``standardize(x)``; the encoder folds the same
    two numbers into its first layer instead.
    """
    d = x.shape[-1]
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    # scikit-learn's _is_constant_feature bound: below it the variance is
    # rounding error of the two-pass computation, not signal.
    eps = jnp.finfo(jnp.float32).eps
    constant = var <= d * eps * var + jnp.square(d * mean * eps)
    return mean, jnp.where(constant, 0.0, jax.lax.rsqrt(jnp.where(constant, 1.0, var)))


def unit_scale(x: jax.Array | np.ndarray) -> jax.Array:
    """Pixels divided by 255, as float32: MNIST's 0..255 become 0..1."""
    return jnp.asarray(x, jnp.float32) / 255.0


def scale(x: jax.Array | np.ndarray, scaling: str) -> jax.Array:
    """Apply the named scaling (one of ``SCALINGS``) to (..., D) pixels; jittable."""
    if scaling == "unit":
        return unit_scale(x)
    return standardize(x)
