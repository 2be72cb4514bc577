"""Random affine augmentation of image batches, inside the compiled training step.

DEC-DA (Guo et al., ACML 2018) pretrains its autoencoder on batches in which every
image is shifted by up to 10% of its width and height and rotated by up to 10
degrees; their code draws the transforms with Keras' ``ImageDataGenerator`` on the
host. Here the same thing is three pure functions, so the step can do it on the
device without leaving the compiled program:

- :func:`affine_matrices` draws one transform per image from a key,
- :func:`warp` resamples flattened images through given transforms (bilinear),
- :func:`augment` does both, and is a no-op for a config that asks for nothing.

Conventions. A pixel's coordinates are ``(x, y)`` = (column, row), with the row
index growing downwards, as the image is displayed. A matrix ``A`` (2 x 3) is the
*sampling* map: output pixel ``(x, y)`` takes the input's value at
``A @ (x, y, 1)``, which is how ``scipy.ndimage.affine_transform`` and Keras
apply a transform. The random parameters are drawn in *forward* terms (how the
content moves): a shift ``(dx, dy)`` moves the content ``dx`` pixels right and
``dy`` down, a positive angle turns it counter-clockwise as displayed (a square
image turned by 90 degrees is ``np.rot90(image)``), a scale factor above 1
enlarges it; all about the image centre ``((W - 1) / 2, (H - 1) / 2)``.

Example::

    import jax, jax.numpy as jnp
    from jaxae.augment import AugmentConfig, augment
    x = jnp.zeros((256, 784), jnp.float32)        # a scaled batch of 28x28 digits
    y = augment(jax.random.key(0), x, AugmentConfig(), (28, 28))   # (256, 784)
"""

from __future__ import annotations

import dataclasses
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxae._validate import check_choice, check_real, is_int
from jaxae.errors import JaxaeError

FILLS = ("nearest", "zero")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """How far each image may be moved; each parameter is drawn uniformly per image.

    Attributes:
      shift: the largest shift, as a fraction of the width (x) and of the height
        (y): the content moves by up to ``shift * W`` pixels sideways and
        ``shift * H`` up or down, in [0, 1). DEC-DA: 0.1.
      rotate: the largest rotation in degrees either way, in [0, 180]. DEC-DA: 10.
      scale: the largest change of size as a fraction: 0.1 draws one factor in
        [0.9, 1.1] per image, the same for x and y, in [0, 1). DEC-DA: 0.
      shear: the largest shear angle in degrees either way (x moves in proportion
        to y), in [0, 90). DEC-DA: 0.
      fill: what a pixel sampled from outside the image gets: ``"nearest"`` the
        closest edge pixel (Keras' default, which DEC-DA's FcDEC.py keeps), or
        ``"zero"``. Nearest is the default because the batch is augmented after
        scaling: under ``"unit"`` scaling MNIST's border is 0 and both fills agree
        almost everywhere, but under ``"standardize"`` the background is a
        negative value, which only the nearest fill carries into the image.

    ``AugmentConfig.none()`` (all zero) asks for nothing; ``enabled`` says whether
    a config moves anything.
    """

    shift: float = 0.1
    rotate: float = 10.0
    scale: float = 0.0
    shear: float = 0.0
    fill: str = "nearest"

    def __post_init__(self):
        # (name, largest allowed, whether the bound itself is allowed, what it means)
        limits = (
            ("shift", 1.0, False, "a fraction of the image size"),
            ("rotate", 180.0, True, "degrees"),
            ("scale", 1.0, False, "a fraction of the size (0.1 means [0.9, 1.1])"),
            ("shear", 90.0, False, "degrees"),
        )
        for name, top, closed, unit in limits:
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                check_real(name, value)  # "must be a number"
            value = float(value)  # NaN and inf are out of range, with the range in the message
            if not 0 <= value <= top or (value == top and not closed):
                interval = f"[0, {top:g}]" if closed else f"[0, {top:g})"
                raise JaxaeError(
                    f"{name}={value:g} is out of range: pass {unit} in {interval}, "
                    f"or {name}=0 for none"
                )
            object.__setattr__(self, name, value)
        check_choice("fill", self.fill, FILLS)

    @classmethod
    def none(cls) -> AugmentConfig:
        """The config that leaves every image as it is."""
        return cls(shift=0.0, rotate=0.0, scale=0.0, shear=0.0)

    @property
    def enabled(self) -> bool:
        """True when some parameter is non-zero, so images would move."""
        return any((self.shift, self.rotate, self.scale, self.shear))


def check_image_shape(image_shape, d: int | None = None) -> tuple[int, int]:
    """``image_shape`` as ``(H, W)``, both at least 2, with ``H * W == d`` when ``d`` is given.

    A ``(1, D)`` shape is what ``load_dataset`` gives rows that are not square
    images: there is nothing to rotate in them, so it is refused too.
    """
    if image_shape is None:
        raise JaxaeError(
            "augmentation needs the images' shape, got image_shape=None: pass "
            "image_shape=(H, W) (the dataset's image_shape), or use AugmentConfig.none()"
        )
    if isinstance(image_shape, tuple | list) and len(image_shape) == 3:
        raise JaxaeError(
            f"augmentation moves pixels of greyscale images only, got colour images "
            f"(image_shape={tuple(image_shape)}): turn shift and rotate off for them"
        )
    if (
        not isinstance(image_shape, tuple | list)
        or len(image_shape) != 2
        or not all(is_int(s) and s >= 2 for s in image_shape)
    ):
        raise JaxaeError(
            f"image_shape must be (H, W) with H and W at least 2, got {image_shape!r}: "
            "augmentation moves pixels within an image, so rows need an image shape"
        )
    h, w = int(image_shape[0]), int(image_shape[1])
    if d is not None and h * w != d:
        raise JaxaeError(
            f"image_shape={(h, w)} has {h * w} pixels but the images have {d}: pass the "
            "shape the rows were flattened from"
        )
    return h, w


def transform_matrices(
    image_shape: tuple[int, int],
    *,
    shift: jax.Array | np.ndarray | tuple[float, float] = (0.0, 0.0),
    rotate: jax.Array | float = 0.0,
    scale: jax.Array | float = 1.0,
    shear: jax.Array | float = 0.0,
) -> jax.Array:
    """Sampling matrices from forward parameters; broadcasts over leading axes.

    Args:
      image_shape: ``(H, W)``; transforms are about the centre ``((W-1)/2, (H-1)/2)``.
      shift: ``(..., 2)`` pixels ``(dx, dy)`` the content moves right and down.
      rotate: ``(...)`` degrees the content turns counter-clockwise as displayed.
      scale: ``(...)`` the factor the content grows by (1: unchanged).
      shear: ``(...)`` degrees of shear: a point at ``dy`` below the centre
        moves ``tan(shear) * dy`` to the right.

    Returns:
      ``(..., 2, 3)`` float32: output ``(x, y)`` samples the input at ``A @ (x, y, 1)``.
    """
    h, w = image_shape
    shift = jnp.asarray(shift, jnp.float32)
    theta = jnp.deg2rad(jnp.asarray(rotate, jnp.float32))
    inv_scale = 1.0 / jnp.asarray(scale, jnp.float32)
    tan_shear = jnp.tan(jnp.deg2rad(jnp.asarray(shear, jnp.float32)))
    batch = jnp.broadcast_shapes(shift.shape[:-1], theta.shape, inv_scale.shape, tan_shear.shape)
    theta, inv_scale, tan_shear = (
        jnp.broadcast_to(a, batch) for a in (theta, inv_scale, tan_shear)
    )
    shift = jnp.broadcast_to(shift, (*batch, 2))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    # Forward linear part F = scale * Shear @ Rot, with y pointing down, so a
    # counter-clockwise turn on screen is [[cos, sin], [-sin, cos]]. Its inverse,
    # Rot^-1 @ Shear^-1 / scale, written out element by element:
    #   Rot^-1 = [[cos, -sin], [sin, cos]],  Shear^-1 = [[1, -tan], [0, 1]].
    a00 = cos * inv_scale
    a01 = (-cos * tan_shear - sin) * inv_scale
    a10 = sin * inv_scale
    a11 = (cos - sin * tan_shear) * inv_scale
    # Forward: q = c + t + F (p - c); sampling: p = c + F^-1 (q - c - t), so the
    # offset is c - F^-1 (c + t).
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    ux, uy = cx + shift[..., 0], cy + shift[..., 1]
    b0 = cx - (a00 * ux + a01 * uy)
    b1 = cy - (a10 * ux + a11 * uy)
    return jnp.stack(
        [jnp.stack([a00, a01, b0], axis=-1), jnp.stack([a10, a11, b1], axis=-1)], axis=-2
    )


def draw_parameters(
    key: jax.Array, n: int, config: AugmentConfig, image_shape: tuple[int, int]
) -> dict[str, jax.Array]:
    """The random forward parameters of ``n`` transforms, as ``transform_matrices`` takes them.

    Returns ``{"shift": (n, 2), "rotate": (n,), "scale": (n,), "shear": (n,)}``, float32,
    each uniform over its configured range (Keras draws shifts as continuous
    fractions too, not whole pixels).
    """
    h, w = check_image_shape(image_shape)
    u = jax.random.uniform(key, (n, 5), jnp.float32, minval=-1.0, maxval=1.0)
    half = jnp.asarray([config.shift * w, config.shift * h], jnp.float32)
    return {
        "shift": u[:, :2] * half[None, :],
        "rotate": u[:, 2] * config.rotate,
        "scale": 1.0 + u[:, 3] * config.scale,
        "shear": u[:, 4] * config.shear,
    }


def affine_matrices(
    key: jax.Array, n: int, config: AugmentConfig, image_shape: tuple[int, int]
) -> jax.Array:
    """One random sampling matrix per image: ``(n, 2, 3)`` float32.

    Each image gets a shift uniform in ``[-shift*W, shift*W]`` x ``[-shift*H, shift*H]``
    pixels, a rotation uniform in ``[-rotate, rotate]`` degrees, a size factor
    uniform in ``[1 - scale, 1 + scale]`` and a shear uniform in ``[-shear, shear]``
    degrees, all about the image centre. The same key gives the same matrices.

    Args:
      key: a JAX PRNG key (typed, or raw uint32 key data).
      n: how many matrices (a Python int).
      config: the ranges.
      image_shape: ``(H, W)`` of the images.
    """
    return transform_matrices(image_shape, **draw_parameters(key, n, config, image_shape))


def warp(
    images: jax.Array, matrices: jax.Array, image_shape: tuple[int, int], *, fill: str = "nearest"
) -> jax.Array:
    """Resample each flattened image through its sampling matrix, bilinearly.

    Output pixel ``(x, y)`` of image i is the input's value at
    ``matrices[i] @ (x, y, 1)``, interpolated between its four neighbours. A point
    outside the image takes the nearest edge pixel (``fill="nearest"``, as Keras
    and ``scipy.ndimage`` do) or 0 (``fill="zero"``). Jittable; the cost is four
    gathers of ``(n, H*W)`` and a few element-wise ops per pixel (no ``(n, HW, HW)``
    matrix).

    Args:
      images: ``(n, H*W)`` float rows (row-major images), any float dtype.
      matrices: ``(n, 2, 3)`` sampling matrices (see ``transform_matrices``).
      image_shape: ``(H, W)``, static.
      fill: ``"nearest"`` or ``"zero"``.

    Returns:
      ``(n, H*W)`` of the images' dtype. Values stay within the input's range (up to
      float32 rounding): every output is a convex combination of input pixels
      (and 0 with zero fill). Computed in float32 whatever the input dtype.
    """
    h, w = check_image_shape(image_shape, images.shape[-1])
    check_choice("fill", fill, FILLS)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise JaxaeError(
            f"images must be floats, got {images.dtype}: scale them first (jaxae.preprocess.scale)"
        )
    if images.ndim != 2 or matrices.shape != (images.shape[0], 2, 3):
        raise JaxaeError(
            f"warp takes images (n, H*W) and matrices (n, 2, 3), got {images.shape} "
            f"and {matrices.shape}"
        )
    # The output grid, as constants folded into the program.
    gy, gx = np.divmod(np.arange(h * w, dtype=np.int32), w)
    gx = jnp.asarray(gx, jnp.float32)[None, :]
    gy = jnp.asarray(gy, jnp.float32)[None, :]
    m = matrices.astype(jnp.float32)
    sx = m[:, 0, 0:1] * gx + m[:, 0, 1:2] * gy + m[:, 0, 2:3]  # (n, HW)
    sy = m[:, 1, 0:1] * gx + m[:, 1, 1:2] * gy + m[:, 1, 2:3]
    x0 = jnp.floor(sx)
    y0 = jnp.floor(sy)
    fx = sx - x0  # weight of the right neighbour, in [0, 1)
    fy = sy - y0
    x0 = x0.astype(jnp.int32)
    y0 = y0.astype(jnp.int32)
    # The four neighbours: (x0, y0), (x0+1, y0), (x0, y0+1), (x0+1, y0+1). An
    # integer point puts all its weight on (x0, y0) and exactly 0 on the others,
    # so the identity returns every pixel bit for bit. Four gathers of (n, HW),
    # each fused with its own index arithmetic: one gather of the four index sets
    # concatenated, (n, 4 HW), took 2.5-5x as long on the CPU, because its index
    # array is written to memory first (bench/results/augment-cost.md).
    out = jnp.zeros(images.shape, jnp.float32)
    for dx, dy, wt in (
        (0, 0, (1.0 - fx) * (1.0 - fy)),
        (1, 0, fx * (1.0 - fy)),
        (0, 1, (1.0 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xi, yi = x0 + dx, y0 + dy
        # Clamping a neighbour's index to the image is the nearest fill by itself:
        # a point left of column 0 has both its x-neighbours clamped to column 0,
        # whose weights sum to 1, as scipy's mode='nearest'. It also keeps the
        # gather in bounds; zero fill then drops the weight of outside neighbours.
        idx = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
        v = jnp.take_along_axis(images, idx, axis=1, mode="promise_in_bounds")
        if fill == "zero":
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            wt = jnp.where(inside, wt, 0.0)
        out = out + wt * v.astype(jnp.float32)
    return out.astype(images.dtype)


def augment(
    key: jax.Array, images: jax.Array, config: AugmentConfig, image_shape: tuple[int, int] | None
) -> jax.Array:
    """A random affine transform of every image of a batch: the step's augmentation.

    Args:
      key: a JAX PRNG key; a training step passes a fresh one per step
        (``jax.random.fold_in(key, step)``).
      images: ``(B, D)`` scaled float images, each a row-major ``H x W`` image.
      config: the ranges; with nothing enabled, ``images`` come back as they are
        and no computation is traced.
      image_shape: ``(H, W)`` with ``H * W == D``; ``None`` (rows that are not
        images) is refused when the config asks for augmentation.

    Returns:
      ``(B, D)`` of the images' dtype.
    """
    if not config.enabled:
        return images
    check_image_shape(image_shape, images.shape[-1])
    matrices = affine_matrices(key, images.shape[0], config, image_shape)
    return warp(images, matrices, image_shape, fill=config.fill)
