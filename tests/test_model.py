import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae.config import ModelConfig
from jaxae.model import AutoEncoder, build_model


def count(params) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(params))


def test_default_parameter_count():
    # 784*256+256 + 256*100+100 + 100*256+256 + 256*784+784, the original Keras model.
    params = jax.jit(build_model(ModelConfig()).init)(jax.random.key(0), jnp.zeros((1, 784)))
    assert count(params) == 454_004


def test_init_is_glorot_uniform_with_zero_biases():
    params = jax.jit(AutoEncoder().init)(jax.random.key(0), jnp.zeros((1, 784)))["params"]
    kernel = np.asarray(params["encoder_hidden"]["kernel"])
    limit = np.sqrt(6 / (784 + 256))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
    assert all(not np.any(p["bias"]) for p in params.values())


def test_encode_decode_compose_and_shapes():
    model = AutoEncoder(input_dim=64, hidden=16, code_dim=8)
    x = jax.random.normal(jax.random.key(1), (5, 64))
    params = jax.jit(model.init)(jax.random.key(0), x)
    codes = model.apply(params, x, method=model.encode)
    assert codes.shape == (5, 8) and bool((codes >= 0).all())  # ReLU code layer
    np.testing.assert_allclose(
        model.apply(params, codes, method=model.decode), model.apply(params, x), rtol=1e-6
    )


def test_bfloat16_compute_keeps_float32_params():
    model = build_model(ModelConfig(input_dim=64, hidden=16, code_dim=8, dtype="bfloat16"))
    x = jnp.ones((2, 64))
    params = jax.jit(model.init)(jax.random.key(0), x)
    assert {p.dtype for p in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.float32)}
    assert model.apply(params, x).dtype == jnp.bfloat16


def test_parameter_count_formula_and_limit():
    from jaxae.errors import JaxaeError

    assert ModelConfig().parameter_count == 454_004
    with pytest.raises(JaxaeError, match=r"over jaxae's limit.*smaller hidden="):
        ModelConfig(hidden=2**31)


def test_deep_linear_code_matches_its_parameter_count():
    # DEC/N2D's d-500-500-2000-10 with a linear code.
    config = ModelConfig(hidden=(500, 500, 2000), code_dim=10, code_activation="linear")
    model = build_model(config)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 784)))
    assert (
        count(params)
        == config.parameter_count
        == 2 * (784 * 500 + 500 * 500 + 500 * 2000 + 2000 * 10) + 2 * (500 + 500 + 2000) + 10 + 784
    )
    codes = model.apply(
        params, jax.random.normal(jax.random.key(1), (64, 784)), method=model.encode
    )
    assert codes.shape == (64, 10) and bool((codes < 0).any())  # linear: negative codes exist
    names = set(params["params"])
    assert {"encoder_hidden", "encoder_hidden_1", "encoder_hidden_2", "encoder_code"} <= names
    assert params["params"]["decoder_hidden"]["kernel"].shape == (10, 2000)


def test_bad_model_fields_name_the_parameter():
    from jaxae.errors import JaxaeError

    for kwargs, match in [
        (dict(hidden=(500, 0)), "hidden must be at least 1"),
        (dict(code_activation="tanh"), "unknown code_activation 'tanh'"),
        (dict(scaling="minmax"), "unknown scaling 'minmax'"),
        (dict(kernel_init="zeros"), "unknown kernel_init 'zeros'"),
        (dict(hidden="wide"), "hidden must be a list of layer widths"),
    ]:
        with pytest.raises(JaxaeError, match=match):
            ModelConfig(**kwargs)
