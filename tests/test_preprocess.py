"""Input scaling: ``unit`` follows the training data's range, whatever the input kind."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae.config import ModelConfig, TrainConfig
from jaxae.errors import JaxaeError
from jaxae.preprocess import fit_range, fit_scaling, scale
from tests.helpers import mnist_5k


def _kinds(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The same images as users hand them over: uint8, floats in [0, 1], floats in [-1, 1]."""
    return {
        "uint8": pixels.astype(np.uint8),
        "float [0, 1]": (pixels / 255.0).astype(np.float32),  # torchvision's ToTensor, USPS
        "float [-1, 1]": (pixels / 127.5 - 1.0).astype(np.float32),
    }


def _unit(images):
    return np.asarray(scale(images, "unit", fit_range(images)))


def test_each_input_kind_is_scaled_onto_the_same_values():
    pixels = np.random.default_rng(0).integers(0, 256, (50, 64)).astype(np.float64)
    pixels[0, :2] = 0, 255  # the range the uint8 images span
    want = jnp.asarray(pixels, jnp.float32) / 255.0  # what pixels / 255 gave before
    scaled = {kind: _unit(images) for kind, images in _kinds(pixels).items()}
    np.testing.assert_array_equal(scaled["uint8"], want)  # bit for bit
    for kind, values in scaled.items():
        np.testing.assert_allclose(values, want, rtol=0, atol=1.2e-7, err_msg=kind)
        assert values.dtype == np.float32 and values.min() == 0 and values.max() == 1


def test_scikit_learns_digits_fill_the_unit_range():
    from jaxae.data import load_dataset

    images = load_dataset("digits").images  # 0..16, which pixels / 255 squeezed to [0, 0.063]
    assert fit_range(images) == (0.0, 16.0)
    np.testing.assert_array_equal(_unit(images), (images / np.float32(16)).astype(np.float32))


def test_mnist_uint8_gives_exactly_pixels_over_255():
    from jaxae.data import load_dataset

    images = load_dataset(mnist_5k(), n=2000).images
    assert fit_range(images) == (0.0, 255.0)
    want = np.asarray(jax.jit(lambda x: x / 255.0)(images))
    np.testing.assert_array_equal(_unit(images), want)


@pytest.mark.parametrize(
    "images, match",
    [
        (np.full((10, 4), 3.0, np.float32), "every value of images is 3: scaling=unit has no"),
        (np.array([[0.0, np.nan], [1.0, 2.0]], np.float32), "non-finite values"),
        (np.array([[0.0, np.inf], [1.0, 2.0]], np.float32), "non-finite values"),
    ],
)
def test_what_unit_scaling_cannot_honestly_handle_is_refused(images, match):
    with pytest.raises(JaxaeError, match=match):
        fit_range(images)


@pytest.mark.parametrize(
    "value, match",
    [((1.0,), "pair"), ("01", "pair"), ((2.0, 1.0), "min < max"), ((0.0, np.inf), "finite")],
)
def test_a_bad_data_range_is_refused(value, match):
    with pytest.raises(JaxaeError, match=f"data_range.*{match}"):
        ModelConfig(scaling="unit", data_range=value)


def test_unit_scaling_without_a_range_says_which_config_to_pass():
    from jaxae.encoder import Encoder
    from jaxae.train_state import create_train_state, split_seed

    config = ModelConfig.tiny()
    config = dataclasses.replace(config, scaling="unit")
    params = create_train_state(split_seed(0)[0], 0.01, config, TrainConfig()).params
    with pytest.raises(JaxaeError, match="needs the training data's range"):
        Encoder(params, config).encode(np.zeros((2, 64), np.float32))


def test_fit_keeps_a_fitted_range_and_fills_a_missing_one():
    x = np.linspace(-1, 1, 64 * 40, dtype=np.float32).reshape(40, 64)
    config = ModelConfig.tiny()
    assert fit_scaling(config, x) is config  # standardize: nothing to fit
    unit = dataclasses.replace(config, scaling="unit")
    assert fit_scaling(unit, x).data_range == (-1.0, 1.0)
    kept = dataclasses.replace(unit, data_range=(0.0, 255.0))
    assert fit_scaling(kept, x) is kept  # a trained model's numbers are never refitted


def test_the_range_is_kept_with_the_model(tmp_path):
    """Trained on [-1, 1] floats: the checkpoint, jaxae.load and predict scale new images
    with the training range, and the report records it."""
    from jaxae.checkpoint import load_checkpoint
    from jaxae.cli import main
    from jaxae.data import load_dataset
    from jaxae.rundir import load

    images = load_dataset("digits", n=300).images
    np.savez(tmp_path / "x.npz", x=(images / 8.0 - 1.0).astype(np.float32))
    out = tmp_path / "run"
    args = ["run", "--dataset", str(tmp_path / "x.npz"), "--n", "300", "--epochs", "2"]
    args += ["--scaling", "unit", "--hidden", "16", "--code-dim", "8", "--n-init", "1"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["scaling"] == "unit" and report["model"]["data_range"] == [-1.0, 1.0]
    assert load_checkpoint(out).model_config.data_range == (-1.0, 1.0)
    ae = load(out)
    np.testing.assert_array_equal(ae.predict(images / 8.0 - 1.0), np.load(out / "clusters.npy"))
    # One new image is scaled with the training numbers, not with its own range.
    one = (images[:1] / 8.0 - 1.0).astype(np.float32)
    own = dataclasses.replace(ae.model_config, data_range=fit_range(one))
    assert own.data_range != (-1.0, 1.0)
    from jaxae.encoder import Encoder

    assert not np.allclose(ae.encode(one), Encoder(ae.params, own).encode(one))


def test_a_checkpoint_from_before_the_range_loads_as_pixels_over_255(tmp_path, trained):
    """Checkpoints written before data_range existed trained ``unit`` models on pixels / 255."""
    from flax import serialization

    from jaxae.checkpoint import checksum, load_checkpoint, save_checkpoint

    _, config, result = trained
    config = dataclasses.replace(config, scaling="unit", data_range=(0.0, 255.0))
    save_checkpoint(tmp_path, result.state, model_config=config, train_config=TrainConfig.tiny(),
                    loss_history=result.loss_history, epoch=3)  # fmt: skip
    path = tmp_path / "checkpoint.msgpack"
    payload = serialization.msgpack_restore(path.read_bytes())
    meta = json.loads(payload["meta"])
    del meta["model"]["data_range"]
    payload["meta"] = json.dumps(meta)
    payload["sha256"] = checksum(payload["meta"], payload["body"])
    path.write_bytes(serialization.msgpack_serialize(payload))
    assert load_checkpoint(tmp_path).model_config.data_range == (0.0, 255.0)


def test_the_scikit_learn_estimators_take_scaling():
    from sklearn.base import clone

    from jaxae.sklearn_api import AutoEncoderClusterer, AutoEncoderTransformer

    x = (np.random.default_rng(0).random((120, 16)) * 2 - 1).astype(np.float32)
    ae = AutoEncoderTransformer(hidden=8, code_dim=4, epochs=2, batch_size=40, scaling="unit")
    codes = ae.fit_transform(x)
    assert ae.encoder_.model_config.data_range == fit_range(x) and codes.shape == (120, 4)
    assert clone(ae).get_params()["scaling"] == "unit"
    est = AutoEncoderClusterer(preset="n2d-fast", method="kmeans", epochs=2, batch_size=40,
                               clusters=3, scaling="unit")  # fmt: skip
    labels = est.fit_predict(x)
    assert est.model_.model_config.data_range == fit_range(x)
    np.testing.assert_array_equal(est.predict(x), labels)
    assert clone(est).get_params()["scaling"] == "unit"
