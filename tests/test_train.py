import functools

import jax
import numpy as np
import pytest

from jaxae.config import ModelConfig, TrainConfig
from jaxae.data import load_dataset
from jaxae.errors import JaxaeError
from jaxae.model import build_model
from jaxae.preprocess import standardize
from jaxae.train import epoch_batches, epoch_key, fit, loss_fn, train_step
from jaxae.train_state import build_optimizer, create_train_state, split_seed
from tests.helpers import digits, mnist_5k

MODEL = ModelConfig.tiny()
TRAIN = TrainConfig.tiny()


def test_loss_matches_numpy():
    x = standardize(digits(32).images)
    params = create_train_state(split_seed(0)[0], TRAIN.lr, MODEL, TRAIN).params["params"]
    h = np.asarray(x, np.float64)
    for name in ("encoder_hidden", "encoder_code", "decoder_hidden"):
        h = np.maximum(h @ np.asarray(params[name]["kernel"]) + np.asarray(params[name]["bias"]), 0)
    out = h @ np.asarray(params["decoder_output"]["kernel"]) + np.asarray(
        params["decoder_output"]["bias"]
    )
    expected = np.mean((out - np.asarray(x, np.float64)) ** 2)
    got = jax.jit(loss_fn, static_argnums=1)({"params": params}, build_model(MODEL), x)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def _step():
    return functools.partial(train_step, model=build_model(MODEL), optimizer=build_optimizer(TRAIN))


def test_jitted_step_equals_unjitted():
    x = standardize(digits(32).images)
    state = create_train_state(split_seed(0)[0], TRAIN.lr, MODEL, TRAIN)
    plain_state, plain_loss = _step()(state, x)  # op by op, no jit
    jit_state, jit_loss = jax.jit(_step())(state, x)
    np.testing.assert_allclose(jit_loss, plain_loss, rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(jit_state), jax.tree_util.tree_leaves(plain_state)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_epoch_batches_are_a_permutation_with_the_remainder_dropped():
    idx = np.asarray(epoch_batches(jax.random.key(3), 103, 10))
    assert idx.shape == (10, 10)
    assert len(np.unique(idx)) == 100 and idx.min() >= 0 and idx.max() < 103


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_scan_loop_equals_python_loop(chunk):
    ds = digits(200)
    train = TrainConfig(epochs=5, batch_size=32, seed=7)
    result = fit(
        ds.images, model_config=MODEL, train_config=train, epochs_per_chunk=chunk, progress=False
    )

    init_key, shuffle_key = split_seed(train.seed)
    state = create_train_state(init_key, train.lr, MODEL, train)
    step = jax.jit(
        functools.partial(train_step, model=build_model(MODEL), optimizer=build_optimizer(train))
    )
    x = standardize(ds.images)
    history = []
    for e in range(train.epochs):
        losses = []
        for idx in np.asarray(epoch_batches(epoch_key(shuffle_key, e), 200, 32)):
            state, loss = step(state, x[idx])
            losses.append(float(loss))
        history.append(np.mean(losses))
    np.testing.assert_allclose(result.loss_history, history, rtol=1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(result.state), jax.tree_util.tree_leaves(state)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_deterministic_for_a_seed_and_different_across_seeds():
    images = digits(128).images
    run = lambda seed: (
        fit(
            images,
            model_config=MODEL,
            train_config=TrainConfig(epochs=2, batch_size=32, seed=seed),
            progress=False,
        ).loss_history
    )
    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_loss_falls_on_mnist():
    ds = load_dataset(str(mnist_5k()), n=1000)
    result = fit(
        ds.images,
        model_config=ModelConfig(input_dim=784, hidden=64, code_dim=16),
        train_config=TrainConfig(epochs=8, batch_size=100),
        progress=False,
    )
    h = result.loss_history
    assert np.all(np.isfinite(h)) and h[-1] < 0.7 * h[0]
    assert result.steps == 80 and result.train_seconds > 0


def test_bfloat16_training_runs_and_learns():
    result = fit(
        digits(256).images,
        model_config=ModelConfig(input_dim=64, hidden=32, code_dim=8, dtype="bfloat16"),
        train_config=TrainConfig(epochs=6, batch_size=32),
        progress=False,
    )
    assert result.loss_history[-1] < result.loss_history[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=0), "epochs must be at least 1"),
        (dict(batch_size=0), "batch_size must be at least 1"),
        (dict(lr=0.0), "lr must be a positive"),
    ],
)
def test_bad_train_config(kwargs, match):
    with pytest.raises(JaxaeError, match=match):
        TrainConfig(**kwargs)


def test_batch_larger_than_data_and_width_mismatch():
    with pytest.raises(JaxaeError, match="batch_size=500 is larger than the 100 images"):
        fit(digits(100).images, model_config=MODEL, train_config=TrainConfig(batch_size=500))
    with pytest.raises(JaxaeError, match="images have 64 pixels but the model expects 784"):
        fit(digits(100).images, model_config=ModelConfig(), train_config=TRAIN)


@pytest.mark.parametrize(
    "images, match",
    [
        (np.full((64, 64), np.nan, np.float32), "non-finite"),  # not "training diverged"
        (np.zeros(64, np.float32), r"images must be \(N, 8\)|images must be"),
    ],
)
def test_fit_refuses_bad_images_before_training(images, match):
    with pytest.raises(JaxaeError, match=match):
        fit(images, model_config=ModelConfig.tiny(8 if images.ndim == 1 else 64),
            train_config=TRAIN, progress=False)  # fmt: skip


def _augmented(epochs=4, **kwargs):
    import dataclasses

    from jaxae.data import load_dataset

    ds = load_dataset("digits", n=256)
    model = dataclasses.replace(ModelConfig.tiny(), image_shape=(8, 8))
    train = TrainConfig(epochs=epochs, batch_size=32, shift=0.1, rotate=10.0)
    return ds.images, model, train


def test_augmented_pretraining_is_seeded_and_resumes_exactly():
    """Augmentation drawn from the step's key, so a run is a function of its
    seed, and a resumed (or chunked) run is bit for bit the whole one."""
    import dataclasses

    images, model, train = _augmented()
    whole = fit(images, model_config=model, train_config=train, progress=False)
    again = fit(images, model_config=model, train_config=train, progress=False)
    plain = fit(images, model_config=model, progress=False,
                train_config=dataclasses.replace(train, shift=0.0, rotate=0.0))  # fmt: skip
    np.testing.assert_array_equal(whole.loss_history, again.loss_history)
    assert not np.allclose(whole.loss_history, plain.loss_history)  # the batches did move
    saved = {}
    fit(images, model_config=model, train_config=train, progress=False, epochs_per_chunk=1,
        on_chunk=lambda done, state, history: saved.setdefault(done, (state, history)))  # fmt: skip
    state, history = saved[2]
    resumed = fit(images, model_config=model, train_config=train, progress=False,
                  initial=state, start_epoch=2, history=history)  # fmt: skip
    np.testing.assert_array_equal(resumed.loss_history, whole.loss_history)
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(whole.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "args, match",
    [
        (["--shift", "1.5"], "--shift 1.5 is out of range"),
        (["--rotate", "-1"], "--rotate -1 is out of range"),
        (["--shift", "0.1", "--dataset", "{tmp}/rows.npz"], "augmentation moves pixels"),
    ],
)
def test_bad_augmentation_options_are_one_line(tmp_path, capsys, args, match):
    from jaxae.cli import main

    np.savez(tmp_path / "rows.npz", x=np.random.default_rng(0).random((200, 10)))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = tmp_path / "run"
    assert main(["run", "--epochs", "1", "--no-progress", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err and not out.exists(), err
