"""Checks for values handed to public functions, written once.

Every message names the parameter as a Python caller spells it (``batch_size=``);
the CLI maps parameters onto its flags when it prints them.
"""

from __future__ import annotations

import math
import numbers

import jax
import numpy as np

from jaxae.errors import JaxaeError

# Steps of one run: the step counter and the epoch index are int32 on the device.
MAX_STEPS = 2**31 - 1


def is_int(value) -> bool:
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int, or a ``JaxaeError`` naming ``name`` and the allowed range."""
    if not is_int(value):
        raise JaxaeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise JaxaeError(
            f"{name} must be at least {minimum}, got {value}: pass {name}={minimum} or more"
        )
    if maximum is not None and value > maximum:
        raise JaxaeError(
            f"{name} must be at most {maximum}, got {value}: pass {name}={maximum} or less"
        )
    return value


def check_real(
    name: str,
    value,
    *,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """``value`` as a finite float, or a ``JaxaeError`` naming ``name`` and the allowed range."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise JaxaeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise JaxaeError(
            f"{name} must be finite, got {value}: pass {_allowed(positive, minimum, maximum)}"
        )
    if positive and value <= 0:
        raise JaxaeError(f"{name} must be positive, got {value:g}: pass a number above 0")
    if minimum is not None and value < minimum:
        raise JaxaeError(
            f"{name} must be at least {minimum:g}, got {value:g}: pass {name}={minimum:g} or more"
        )
    if maximum is not None and value > maximum:
        raise JaxaeError(
            f"{name} must be at most {maximum:g}, got {value:g}: pass {name}={maximum:g} or less"
        )
    return value


def _allowed(positive: bool, minimum: float | None, maximum: float | None) -> str:
    """What ``check_real`` accepts, in words: "a number at least 0 and at most 1"."""
    bounds = ["above 0"] if positive else []
    bounds += [] if minimum is None else [f"at least {minimum:g}"]
    bounds += [] if maximum is None else [f"at most {maximum:g}"]
    return " ".join(["a number", " and ".join(bounds)]).strip()


# Pixels of an image_size: a 4096 x 4096 image, far above what an autoencoder of rows takes.
MAX_IMAGE_PIXELS = 2**24


def check_image_size(image_size) -> tuple[int, int]:
    """``image_size`` as ``(H, W)``: two integers of at least 1, at most 2**24 pixels together."""
    if not isinstance(image_size, tuple | list) or len(image_size) != 2:
        raise JaxaeError(f"image_size must be (H, W), got {image_size!r}")
    h, w = (check_int("image_size", v, minimum=1) for v in image_size)
    if h * w > MAX_IMAGE_PIXELS:
        raise JaxaeError(
            f"image_size={(h, w)} has {h * w:,} pixels, over jaxae's limit of "
            f"{MAX_IMAGE_PIXELS:,}: pass a smaller image_size="
        )
    return h, w


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise JaxaeError(f"unknown {name} {value!r}: use one of {', '.join(map(str, choices))}")
    return value


def check_rows(
    name: str,
    x,
    *,
    width: int | None = None,
    floats_only: bool = False,
    allow_images: bool = True,
    check_finite: bool = True,
):
    """A 2-D ``(N, D)`` numeric, non-empty, finite array (NumPy or ``jax.Array``).

    ``(N, H, W)`` images are flattened to ``(N, H*W)`` when ``allow_images``. Bools
    count as numbers (0 and 1). A ``jax.Array`` stays on its device.
    """
    if not isinstance(x, jax.Array):
        x = np.asarray(x)
    if allow_images and x.ndim == 3:
        x = x.reshape(x.shape[0], -1)
    if x.ndim != 2:
        shape = f"(N, {width})" if width else "(N, D)"
        raise JaxaeError(
            f"{name} must be {shape} (a 2-D array), got shape {x.shape}: "
            f"reshape with {name}.reshape(len({name}), -1)"
        )
    kind = np.dtype(x.dtype).kind
    if floats_only and kind != "f":
        raise JaxaeError(
            f"{name} must be floats, got {x.dtype}: cast with {name}.astype(np.float32)"
        )
    if kind not in "biuf":
        raise JaxaeError(f"{name} must be numbers, got dtype {x.dtype}")
    if 0 in x.shape:
        raise JaxaeError(f"{name} is empty, shape {x.shape}: pass at least one row and one column")
    if width is not None and x.shape[1] != width:
        raise JaxaeError(
            f"{name} have {x.shape[1]} pixels but the model expects {width}: "
            "pass images of the training data's size"
        )
    if check_finite and kind == "f":
        xp = jax.numpy if isinstance(x, jax.Array) else np
        if not bool(xp.isfinite(x).all()):
            raise JaxaeError(
                f"{name} contains non-finite values (NaN or inf): clean the data first "
                "(e.g. np.nan_to_num)"
            )
    return x
