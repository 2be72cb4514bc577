"""Input scaling, applied on the device before training and before encoding.

Two scalings are offered (``ModelConfig.scaling``):

- ``"standardize"`` (the original recipe): each image to mean 0 and standard
  deviation 1 over its own pixels. Needs nothing fitted; any range works.
- ``"unit"`` (DEC, N2D): the training data's range onto [0, 1],
  ``(x - lo) / (hi - lo)``, with ``(lo, hi)`` the smallest and largest value of
  the whole training set (``ModelConfig.data_range``), fitted once and kept with
  the model, so new images are scaled exactly as the training images were.
  uint8 MNIST (0..255) gives pixels / 255 bit for bit; floats in [0, 1] stay as
  they are; [-1, 1] and scikit-learn's digits (0..16) land on [0, 1] too.

Why one range for the whole set (global) rather than per image or per pixel:
per image would stretch a faint image's contrast to match a bold one, and
per pixel (scikit-learn's ``MinMaxScaler``) would blow a border pixel that is
almost always 0 up to the same scale as the strokes. A global range keeps every
pixel's intensity comparable across images and pixels, which is what the
reconstruction loss and the clusters compare.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.errors import JaxaeError


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

    ``(x - mean) * inv_std`` is ``standardize(x)``.
    """
    d = x.shape[-1]
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    # scikit-learn's _is_constant_feature bound: below it the variance is
    # rounding error of the two-pass computation, not signal.
    eps = jnp.finfo(jnp.float32).eps
    constant = var <= d * eps * var + jnp.square(d * mean * eps)
    return mean, jnp.where(constant, 0.0, jax.lax.rsqrt(jnp.where(constant, 1.0, var)))


def unit_scale(x: jax.Array | np.ndarray, data_range: tuple[float, float]) -> jax.Array:
    """``(x - lo) / (hi - lo)`` as float32: the range ``(lo, hi)`` onto [0, 1].

    With ``(0, 255)`` this is pixels / 255 bit for bit (``x - 0`` is ``x``).
    """
    lo, hi = data_range
    return (jnp.asarray(x, jnp.float32) - lo) / (hi - lo)


def scale(
    x: jax.Array | np.ndarray, scaling: str, data_range: tuple[float, float] | None = None
) -> jax.Array:
    """Apply the named scaling (``"standardize"`` or ``"unit"``) to (..., D) pixels; jittable.

    ``"unit"`` needs the training data's ``data_range`` (see :func:`fit_range`).
    """
    if scaling == "unit":
        if data_range is None:
            raise JaxaeError(
                "scaling='unit' needs the training data's range: pass the model_config the "
                "model was trained with (its data_range is filled by jaxae.fit and jaxae run)"
            )
        return unit_scale(x, data_range)
    return standardize(x)


def fit_range(images: np.ndarray | jax.Array, *, name: str = "images") -> tuple[float, float]:
    """The smallest and largest value of the whole set: what ``"unit"`` maps onto [0, 1].

    Raises:
      JaxaeError: a value is not finite, or every value is the same (a constant
        set carries nothing to scale or learn).
    """
    lo, hi = (float(v) for v in jax.device_get((jnp.min(images), jnp.max(images))))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise JaxaeError(
            f"{name} has non-finite values (NaN or inf): clean the data (e.g. np.nan_to_num) "
            "before training on it"
        )
    if lo == hi:
        raise JaxaeError(
            f"every value of {name} is {lo:g}: scaling=unit has no range to map onto [0, 1] "
            "and there is nothing to learn; pass images with more than one value"
        )
    return lo, hi


# New images far outside the training range: in units of that range, a batch spanning less
# than 1 / RANGE_FACTOR of it, or reaching RANGE_FACTOR of it from its minimum. [0, 1]
# floats to a model trained on 0..255 pixels span 1/255; 0..255 pixels to a model
# trained on [0, 1] reach 255; normal MNIST batches span and reach 1 (a single faint digit
# a good fraction of it).
RANGE_FACTOR = 10.0


def range_problem(
    images: np.ndarray | jax.Array, data_range: tuple[float, float], *, name: str = "images"
) -> str | None:
    """Why ``images`` look to be on another scale than the training range ``data_range``
    (``"unit"`` scaling's ``(lo, hi)``), as one line with the fix; None when they do not.

    ``"standardize"`` needs no such check: each image is scaled on its own, so 0..255
    pixels and the same pixels / 255 give the same codes.
    """
    lo, hi = data_range
    span = hi - lo
    if isinstance(images, jax.Array):  # two numbers off the device, not the images
        low, high = (float(v) for v in jax.device_get((jnp.min(images), jnp.max(images))))
    else:
        low, high = float(np.min(images)), float(np.max(images))
    trained = f"the training images' range, {lo:g} to {hi:g}, so their codes mean little"
    if 0 < high - low < span / RANGE_FACTOR:
        return (
            f"{name} span {low:g} to {high:g}, under a tenth of {trained}: rescale them to "
            "that range (e.g. [0, 1] floats * 255 for a model trained on 0-255 pixels)"
        )
    if max(high - lo, hi - low) > RANGE_FACTOR * span:
        return (
            f"{name} reach {low:g} to {high:g}, over ten times {trained}: rescale them to "
            "that range (e.g. 0-255 pixels / 255 for a model trained on [0, 1] floats)"
        )
    return None


def fit_scaling(model_config, images: np.ndarray | jax.Array):
    """``model_config`` with ``data_range`` fitted on ``images`` where ``"unit"`` needs it.

    A config that already has its range (a resumed or loaded model) is returned
    as it is: new images are scaled with the training data's numbers.
    """
    if model_config.scaling != "unit" or model_config.data_range is not None:
        return model_config
    return dataclasses.replace(model_config, data_range=fit_range(images))
