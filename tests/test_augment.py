"""Tests of jaxae.augment: conventions against NumPy's exact moves, numerics against
scipy.ndimage (an independent bilinear resampler, in float64), determinism, jit,
validation, and the ranges the random transforms are drawn from."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxae.augment import (
    AugmentConfig,
    affine_matrices,
    augment,
    draw_parameters,
    transform_matrices,
    warp,
)
from jaxae.data import load_dataset
from jaxae.errors import JaxaeError
from tests.helpers import mnist_5k

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)


@functools.cache
def _digits(n: int = 32) -> np.ndarray:
    return (load_dataset(mnist_5k(), n=n).images / 255.0).astype(np.float32)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """(32, 784) float32 real MNIST digits scaled to [0, 1]."""
    return _digits()


def _random_images(n, h, w, seed=0):
    """Noise, not digits: every pixel differs from its neighbours, so a wrong index shows."""
    return np.random.default_rng(seed).random((n, h * w), dtype=np.float32)


def _scipy_warp(images, matrices, shape, fill):
    """The reference: scipy.ndimage.affine_transform, order 1 (bilinear), in float64.

    scipy works in (row, col) = (y, x) order, so the 2x2 part is transposed
    through the axis swap and the offset's two entries swap places. Our zero fill
    interpolates towards 0 across the edge, which is scipy's 'grid-constant'
    ('constant' would not interpolate beyond the edge).
    """
    mode = {"zero": "grid-constant", "nearest": "nearest"}[fill]
    out = []
    for img, m in zip(np.asarray(images, np.float64), np.asarray(matrices, np.float64)):
        rc = np.array([[m[1, 1], m[1, 0]], [m[0, 1], m[0, 0]]])
        res = ndimage.affine_transform(
            img.reshape(shape), rc, offset=(m[1, 2], m[0, 2]), order=1, mode=mode, cval=0.0
        )
        out.append(res.reshape(-1))
    return np.stack(out)


def test_identity_is_exact(digits):
    """Integer sampling points put weight exactly 1 on one pixel and 0 on the rest."""
    x = jnp.asarray(digits)
    for m in (IDENTITY, transform_matrices((28, 28))):
        for fill in ("nearest", "zero"):
            matrices = jnp.broadcast_to(jnp.asarray(m), (len(digits), 2, 3))
            out = np.asarray(
                jax.jit(warp, static_argnums=2, static_argnames="fill")(
                    x, matrices, (28, 28), fill=fill
                )
            )
            np.testing.assert_array_equal(out, digits)  # bitwise


def _shift_matrix(dx, dy):
    """Moves the content dx right, dy down: output (x, y) samples input (x - dx, y - dy)."""
    return np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy]], np.float32)


def _shifted(img, dx, dy, fill):
    """NumPy's exact whole-pixel shift: np.roll, with the wrapped-in band filled."""
    h, w = img.shape
    if fill == "nearest":  # pad with the edge, then cut the window the content moved to
        p = max(abs(dx), abs(dy))
        padded = np.pad(img, p, mode="edge")
        return padded[p - dy : p - dy + h, p - dx : p - dx + w]
    out = np.roll(img, (dy, dx), axis=(0, 1))
    if dy > 0:
        out[:dy] = 0
    elif dy < 0:
        out[dy:] = 0
    if dx > 0:
        out[:, :dx] = 0
    elif dx < 0:
        out[:, dx:] = 0
    return out


@pytest.mark.parametrize("shape", [(28, 28), (16, 12)])
@pytest.mark.parametrize("fill", ["zero", "nearest"])
def test_whole_pixel_shift_is_a_roll(shape, fill):
    h, w = shape
    images = _random_images(6, h, w)
    moves = [(3, 0), (0, -2), (-4, 5), (2, 2), (-1, -3), (0, 0)]
    matrices = jnp.asarray(np.stack([_shift_matrix(dx, dy) for dx, dy in moves]))
    out = np.asarray(warp(jnp.asarray(images), matrices, shape, fill=fill))
    for img, got, (dx, dy) in zip(images, out, moves):
        np.testing.assert_array_equal(got.reshape(h, w), _shifted(img.reshape(h, w), dx, dy, fill))
    # transform_matrices speaks the same convention: a forward shift of (dx, dy).
    built = transform_matrices(shape, shift=np.asarray(moves, np.float32))
    np.testing.assert_allclose(built, matrices, atol=1e-6)


TURNS = [(90.0, 1), (-90.0, -1), (180.0, 2)]


# Quarter turns only of square images: a non-square one does not fit in its frame.
@pytest.mark.parametrize(
    "shape,angle,k",
    [((28, 28), *t) for t in TURNS] + [((7, 7), *t) for t in TURNS] + [((16, 12), 180.0, 2)],
)
def test_quarter_turns_are_rot90(shape, angle, k):
    """A positive angle turns the content counter-clockwise as displayed: np.rot90(img, 1).

    About the centre ((W-1)/2, (H-1)/2), quarter turns of a square image and half
    turns of any image map the pixel grid onto itself, so only rounding separates
    the result from np.rot90: float32 cos(pi/2) is -4.4e-8, not 0, which puts the
    sampling points up to ~1e-6 pixel off the grid, and bilinear weights move by
    as much. On values in [0, 1] that is an error below 1e-5 (atol). A centre off
    by half a pixel would be off by ~0.5.
    """
    h, w = shape
    images = _random_images(3, h, w)
    matrices = jnp.broadcast_to(transform_matrices(shape, rotate=angle), (3, 2, 3))
    for fill in ("zero", "nearest"):
        out = np.asarray(warp(jnp.asarray(images), matrices, shape, fill=fill))
        for img, got in zip(images, out):
            np.testing.assert_allclose(
                got.reshape(h, w), np.rot90(img.reshape(h, w), k), rtol=0, atol=1e-5
            )


@pytest.mark.parametrize("shape", [(28, 28), (16, 12)])
@pytest.mark.parametrize("fill", ["zero", "nearest"])
def test_random_transforms_match_scipy(shape, fill):
    """Any affine map, off the grid: float32 against scipy's float64 bilinear resampling.

    Each output is a sum of four products of values in [0, 1] with weights that
    come from float32 coordinates (~1e-6 relative error on coordinates up to 30):
    atol 2e-5 covers that and would not hide a misplaced neighbour (errors ~0.1).
    """
    h, w = shape
    images = _random_images(16, h, w, seed=1)
    config = AugmentConfig(shift=0.2, rotate=30.0, scale=0.2, shear=20.0, fill=fill)
    matrices = affine_matrices(jax.random.key(7), 16, config, shape)
    got = np.asarray(augment(jax.random.key(7), jnp.asarray(images), config, shape))
    np.testing.assert_allclose(got, _scipy_warp(images, matrices, shape, fill), rtol=0, atol=2e-5)


def test_same_key_same_batch_different_keys_differ(digits):
    config = AugmentConfig()
    x = jnp.asarray(digits)
    a = np.asarray(augment(jax.random.key(0), x, config, (28, 28)))
    b = np.asarray(augment(jax.random.key(0), x, config, (28, 28)))
    c = np.asarray(augment(jax.random.key(1), x, config, (28, 28)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Every image is moved, each its own way: no two rows share a transform.
    m = np.asarray(affine_matrices(jax.random.key(0), 32, config, (28, 28))).reshape(32, -1)
    assert len(np.unique(m, axis=0)) == 32
    assert np.all(np.abs(a - digits).max(axis=1) > 0)


def test_raw_key_data_works_like_a_typed_key(digits):
    """train.py keeps keys as raw uint32 data; both spellings draw the same transforms."""
    typed = jax.random.key(3)
    raw = jax.random.key_data(typed)
    config = AugmentConfig()
    np.testing.assert_array_equal(
        affine_matrices(typed, 4, config, (28, 28)), affine_matrices(raw, 4, config, (28, 28))
    )


def test_jit_equals_eager_and_does_not_recompile(digits):
    """Compiled, XLA fuses the coordinate arithmetic (and may contract a*b + c into
    one rounding): sampling points up to ~30 move by a few float32 ulps (~4e-6
    pixel), and a value by at most that times a neighbour difference (<= 1 on
    [0, 1] digits). Measured: 3.4e-6; atol 2e-5."""
    config = AugmentConfig(shift=0.1, rotate=10.0, scale=0.1, shear=5.0)
    x = jnp.asarray(digits)
    jitted = jax.jit(augment, static_argnums=(2, 3))
    sizes = []
    for seed in (0, 1):
        eager = augment(jax.random.key(seed), x, config, (28, 28))
        np.testing.assert_allclose(
            jitted(jax.random.key(seed), x, config, (28, 28)), eager, rtol=0, atol=2e-5
        )
        sizes.append(jitted._cache_size())  # jit wrappers of one function share a cache
    assert sizes[1] == sizes[0]  # a new key is a new value, not a new program


def test_range_and_dtype(digits):
    """Outputs are convex combinations of input pixels (and 0 with zero fill).

    The interpolation a + f (b - a) can round one float32 ulp past its ends, so
    the bounds get 1e-6 of slack (the ulp of 1 is 1.2e-7; of 3, 2.4e-7)."""
    x = jnp.asarray(digits)
    for fill in ("zero", "nearest"):
        config = AugmentConfig(shift=0.3, rotate=45.0, scale=0.3, shear=20.0, fill=fill)
        out = augment(jax.random.key(0), x, config, (28, 28))
        assert out.dtype == jnp.float32 and out.shape == x.shape
        assert float(out.min()) >= -1e-6 and float(out.max()) <= float(x.max()) + 1e-6
    shifted = _random_images(8, 16, 12) + 2.0  # values in [2, 3): nearest fill stays in range
    out = augment(jax.random.key(0), jnp.asarray(shifted), AugmentConfig(rotate=45.0), (16, 12))
    assert float(out.min()) >= 2.0 - 1e-6 and float(out.max()) < 3.0 + 1e-6
    half = augment(jax.random.key(0), x.astype(jnp.bfloat16), AugmentConfig(), (28, 28))
    assert half.dtype == jnp.bfloat16


def test_non_square_images_keep_their_orientation():
    """16 rows x 12 columns: a content shift of +2 in x moves columns, not rows."""
    h, w = 16, 12
    images = _random_images(2, h, w)
    matrices = jnp.broadcast_to(transform_matrices((h, w), shift=(2.0, 0.0)), (2, 2, 3))
    out = np.asarray(warp(jnp.asarray(images), matrices, (h, w), fill="zero")).reshape(2, h, w)
    np.testing.assert_array_equal(out[:, :, 2:], images.reshape(2, h, w)[:, :, :-2])
    np.testing.assert_array_equal(out[:, :, :2], 0)


def test_all_zero_config_is_the_identity(digits):
    """Nothing enabled: the same array back, nothing traced, no image shape needed."""
    x = jnp.asarray(digits)
    none = AugmentConfig.none()
    assert not none.enabled and AugmentConfig().enabled
    assert AugmentConfig(shift=0, rotate=0) == none
    assert augment(jax.random.key(0), x, none, (28, 28)) is x
    assert augment(jax.random.key(0), x, none, None) is x
    jaxpr = jax.make_jaxpr(lambda k, v: augment(k, v, none, None))(jax.random.key(0), x)
    assert not jaxpr.eqns


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(shift=-0.1), "shift="),
        (dict(shift=1.0), "shift="),
        (dict(rotate=181.0), "rotate="),
        (dict(rotate=-5.0), "rotate="),
        (dict(scale=1.0), "scale="),
        (dict(shear=90.0), "shear="),
        (dict(shift="0.1"), "shift"),
        (dict(rotate=float("nan")), "rotate"),
        (dict(scale=True), "scale"),
        (dict(fill="reflect"), "fill"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs, name):
    with pytest.raises(JaxaeError) as info:
        AugmentConfig(**kwargs)
    message = str(info.value)
    assert name in message and "\n" not in message


@pytest.mark.parametrize(
    "shape,name",
    [(None, "image_shape=None"), ((28, 27), "image_shape="), ((1, 784), "image_shape"),
     ((28,), "image_shape"), ((28.0, 28.0), "image_shape")],
)  # fmt: skip
def test_rows_without_an_image_shape_are_refused(digits, shape, name):
    with pytest.raises(JaxaeError) as info:
        augment(jax.random.key(0), jnp.asarray(digits), AugmentConfig(), shape)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_integer_images_are_refused():
    with pytest.raises(JaxaeError, match="floats"):
        warp(jnp.zeros((2, 16), jnp.uint8), jnp.zeros((2, 2, 3)), (4, 4))


def _decompose(matrices, shape):
    """Forward parameters back from sampling matrices (inverts transform_matrices).

    The forward linear part F = inverse of A[:, :2] = s * Shear @ Rot, with
    Rot = [[c, sn], [-sn, c]] and Shear = [[1, t], [0, 1]]; its bottom row is
    s * (-sn, c), det F = s^2, and t = (c * F01 - sn * F00) / s. The shift is
    F (centre - offset) - centre.
    """
    h, w = shape
    m = np.asarray(matrices, np.float64)
    f = np.linalg.inv(m[:, :, :2])
    s = np.sqrt(np.linalg.det(f))
    theta = np.arctan2(-f[:, 1, 0], f[:, 1, 1])
    c, sn = np.cos(theta), np.sin(theta)
    shear = np.degrees(np.arctan((c * f[:, 0, 1] - sn * f[:, 0, 0]) / s))
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    shift = np.einsum("nij,nj->ni", f, centre[None, :] - m[:, :, 2]) - centre[None, :]
    return shift, np.degrees(theta), s, shear


@pytest.mark.parametrize("shape", [(28, 28), (16, 12)])
def test_drawn_transforms_stay_in_their_ranges(shape):
    """2,000 draws (8 keys): every parameter within its range and the range filled."""
    h, w = shape
    config = AugmentConfig(shift=0.1, rotate=10.0, scale=0.2, shear=15.0)
    matrices = np.concatenate(
        [np.asarray(affine_matrices(jax.random.key(k), 250, config, shape)) for k in range(8)]
    )
    shift, rotate, scale, shear = _decompose(matrices, shape)
    bounds = [
        (shift[:, 0], 0.1 * w),
        (shift[:, 1], 0.1 * h),
        (rotate, 10.0),
        (scale - 1.0, 0.2),
        (shear, 15.0),
    ]
    for values, bound in bounds:
        assert np.abs(values).max() <= bound * (1 + 1e-4)
        # Uniform over the whole range: 2,000 draws come within 2% of both ends.
        assert values.max() > 0.98 * bound and values.min() < -0.98 * bound
    # And the decomposition is right: it gives back what draw_parameters drew.
    drawn = draw_parameters(jax.random.key(0), 250, config, shape)
    np.testing.assert_allclose(shift[:250], drawn["shift"], atol=1e-3)
    np.testing.assert_allclose(rotate[:250], drawn["rotate"], atol=1e-3)
    np.testing.assert_allclose(scale[:250], drawn["scale"], atol=1e-5)
    np.testing.assert_allclose(shear[:250], drawn["shear"], atol=1e-3)


def test_dec_da_defaults():
    """The defaults are DEC-DA's ImageDataGenerator(rotation_range=10, width_shift_range=0.1,
    height_shift_range=0.1), with Keras' default fill_mode='nearest'."""
    assert AugmentConfig() == AugmentConfig(shift=0.1, rotate=10.0, scale=0.0, shear=0.0)
    assert AugmentConfig().fill == "nearest"
