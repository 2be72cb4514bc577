import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae._buckets import bucket
from jaxae.encoder import Encoder, compiled_programs, encode_fn
from jaxae.errors import JaxaeError, JaxaeWarning


@pytest.fixture(scope="module")
def encoder(trained):
    _, model_config, result = trained
    return Encoder(result.state.params, model_config)


def test_bucket_sizes():
    assert [bucket(n) for n in (1, 8, 9, 16, 17, 100, 70_000)] == [8, 8, 9, 16, 18, 104, 73_728]
    for n in range(1, 5000):
        assert n <= bucket(n) <= max(8, n * 1.125)


def test_codes_independent_of_n_and_bucket(trained, encoder):
    ds, model_config, result = trained
    reference = np.asarray(
        jax.jit(encode_fn, static_argnums=2)(result.state.params, ds.images, model_config)
    )
    full = encoder.encode(ds.images)
    np.testing.assert_allclose(full, reference, rtol=1e-5, atol=1e-6)
    for n in (1, 7, 8, 9, 100, 255):  # inside and across buckets
        # Blocks of rows at one shape: a row's codes are its own bits in any batch.
        np.testing.assert_array_equal(encoder.encode(ds.images[:n]), full[:n])
    order = np.random.default_rng(0).permutation(len(full))
    np.testing.assert_array_equal(encoder.encode(ds.images[order]), full[order])
    twice = np.concatenate([ds.images[::-1], ds.images])  # two blocks, other company
    np.testing.assert_array_equal(encoder.encode(twice)[len(full) :], full)


def test_a_wide_layers_codes_are_a_rows_own_bits():
    """At 784 -> 500, XLA's CPU product rounded a row alone otherwise than among 300
    (every one of 10 rows differed before the encoder ran in blocks)."""
    from jaxae.config import ModelConfig
    from jaxae.model import build_model

    config = ModelConfig(input_dim=784, hidden=(500,), code_dim=10)
    encoder = Encoder(build_model(config).init(jax.random.key(0), jnp.zeros((1, 784))), config)
    x = np.random.default_rng(0).integers(0, 256, (300, 784)).astype(np.uint8)
    codes = encoder.encode(x)
    alone = np.concatenate([encoder.encode(x[i : i + 1]) for i in range(10)])
    np.testing.assert_array_equal(alone, codes[:10])
    order = np.random.default_rng(1).permutation(len(x))
    np.testing.assert_array_equal(encoder.encode(x[order]), codes[order])


def test_no_recompile_within_a_bucket(trained, encoder, caplog):
    images = np.concatenate([trained[0].images] * 7)
    encoder.encode(images[:129])  # one block of 256 rows
    before = compiled_programs()
    with jax.log_compiles(), caplog.at_level("DEBUG"):
        for n in (1, 2, 100, 255, 256):
            encoder.encode(images[:n])
    assert compiled_programs() == before
    assert not [r for r in caplog.records if "Compiling" in r.getMessage()]  # nothing at all
    encoder.encode(images[:1537])  # seven blocks, a size no other test asks for: one more
    assert compiled_programs() == before + 1


def test_uint8_and_float_pixels_agree(trained, encoder):
    pixels = np.clip(np.round(trained[0].images[:50]), 0, 255)
    np.testing.assert_allclose(
        encoder.encode(pixels.astype(np.uint8)),
        encoder.encode(pixels.astype(np.float32)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_device_array_input_and_image_grids(trained, encoder):
    images = trained[0].images[:20]
    expected = encoder.encode(images)
    np.testing.assert_allclose(encoder.encode(jax.device_put(images)), expected, rtol=1e-6)
    np.testing.assert_allclose(encoder.encode(images.reshape(20, 8, 8)), expected, rtol=1e-6)


def test_standardisation_is_applied(trained, encoder):
    images = trained[0].images[:20]
    np.testing.assert_allclose(
        encoder.encode(images * 3 + 5), encoder.encode(images), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((4, 784)), "images have 784 pixels but the model expects 64"),
        (np.zeros(64), r"images must be \(N, 64\)"),
        (np.full((2, 64), np.nan), "non-finite"),
        (np.array([["a"] * 64]), "must be numbers"),
    ],
)
def test_bad_input(encoder, images, match):
    with pytest.raises(JaxaeError, match=match):
        encoder.encode(images)


def test_unit_scaling_and_bool_images():
    import dataclasses

    from jaxae.config import ModelConfig, TrainConfig
    from jaxae.encoder import Encoder
    from jaxae.model import build_model
    from jaxae.train_state import create_train_state, split_seed

    config = dataclasses.replace(
        ModelConfig.tiny(), scaling="unit", data_range=(0, 255), code_activation="linear"
    )
    params = create_train_state(split_seed(0)[0], 0.01, config, TrainConfig()).params
    pixels = np.arange(5 * 64, dtype=np.float32).reshape(5, 64) % 256
    model = build_model(config)
    want = model.apply(params, jnp.asarray(pixels / 255.0), method=model.encode)
    ae = Encoder(params, config)
    np.testing.assert_allclose(ae.encode(pixels), want, rtol=1e-5, atol=1e-6)
    with pytest.warns(JaxaeWarning, match="under a tenth"):  # 0 and 1 to a 0..255 model
        np.testing.assert_array_equal(
            ae.encode(pixels > 100), ae.encode((pixels > 100).astype(np.uint8))
        )


def _unit_encoder(data_range, scaling="unit"):
    """An untrained tiny encoder whose training images spanned ``data_range``."""
    import dataclasses

    from jaxae.config import ModelConfig, TrainConfig
    from jaxae.train_state import create_train_state, split_seed

    config = ModelConfig(input_dim=64, hidden=16, code_dim=8, scaling=scaling)
    params = create_train_state(split_seed(0)[0], 0.01, config, TrainConfig()).params
    return Encoder(params, dataclasses.replace(config, data_range=data_range))


@pytest.mark.parametrize(
    ("data_range", "pixels", "match"),
    [
        ((0.0, 255.0), lambda x: x / 255.0, "span 0 to 1, under a tenth of the training"),
        ((0.0, 255.0), lambda x: jnp.asarray(x / 255.0), "under a tenth"),  # on the device
        ((0.0, 1.0), lambda x: x, "reach 0 to 255, over ten times the training"),
    ],
)
def test_images_far_outside_the_training_range_warn(data_range, pixels, match):
    """[0, 1] floats given to a model trained on 0..255 pixels (or the reverse) encode to
    codes that mean little: the encoder says so, and how to fix it."""
    ae = _unit_encoder(data_range)
    x = np.random.default_rng(0).integers(0, 256, (20, 64)).astype(np.uint8)
    with pytest.warns(JaxaeWarning, match=match) as caught:
        ae.encode(pixels(x))
    assert "rescale them to that range" in str(caught[0].message)
    assert caught[0].filename == __file__  # it points at the caller's line


@pytest.mark.parametrize(
    ("data_range", "scaling", "pixels"),
    [
        ((0.0, 255.0), "unit", lambda x: x),  # the training scale
        ((0.0, 255.0), "unit", lambda x: x[:1] // 2),  # one faint image
        ((0.0, 255.0), "unit", lambda x: np.zeros_like(x[:3])),  # blank images
        ((0.0, 1.0), "unit", lambda x: x / 255.0 * 2 - 1),  # [-1, 1]: near, not far
        (None, "standardize", lambda x: x / 255.0),  # each image scaled on its own
    ],
)
def test_images_on_the_training_scale_do_not_warn(data_range, scaling, pixels):
    import warnings

    ae = _unit_encoder(data_range, scaling)
    x = np.random.default_rng(0).integers(0, 256, (20, 64)).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ae.encode(pixels(x))
