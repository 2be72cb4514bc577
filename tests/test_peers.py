"""Tests for jaxae.bench.peers: every runnable implementation trains and is timed; the
peers agree with each other."""

import ast
import dataclasses
import math
from pathlib import Path

import jax
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from jaxae.bench import peers
from jaxae.bench.peers.common import Recipe
from jaxae.errors import JaxaeError

# DEC's shape in miniature: several hidden layers, a linear code, pixels / 255.
SMALL_DEC = Recipe(name="small-dec", hidden=(32, 48), code_dim=4, code_activation="linear",
                   scaling="unit", lr=1e-2)  # fmt: skip


def _standardise(x):
    return ((x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def noise():
    return _standardise(np.random.default_rng(0).standard_normal((512, 64)))


@pytest.fixture(scope="module")
def low_rank():
    """Real-ish data: 8 factors mixed into 64 features, plus a little noise."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 8)) @ rng.standard_normal((8, 64))
    return _standardise(x + 0.1 * rng.standard_normal(x.shape))


def _initial_loss(x, seed=0, recipe=peers.SEED_RECIPE):
    params = peers.init_params(recipe.widths(x.shape[1]), seed)
    return peers.numpy_loss(params, x, recipe.activations())


def _require(name):
    reason = peers.available()[name]
    if reason is not None:
        pytest.skip(reason)


def test_available_names_every_peer():
    status = peers.available()
    assert set(status) == set(peers.PEERS)
    assert status["jax-python-loop"] is None and status["jax-scan"] is None
    assert all(v is None or (isinstance(v, str) and v) for v in status.values())
    assert set(peers.IMPLEMENTATIONS) == {"jaxae", "jaxae-1chunk", *peers.PEERS}


@pytest.mark.parametrize("module", ["__init__", "common", "jax_plain", "torch", "keras", "clustpy"])
def test_peer_frameworks_are_imported_lazily(module):
    # Read the source rather than import it in a subprocess: cheaper, and not fooled by
    # other tests having imported torch already.
    tree = ast.parse((Path(peers.__file__).parent / f"{module}.py").read_text())
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert not top & {"jax", "optax", "torch", "tensorflow", "keras", "clustpy"}


def test_init_is_glorot_uniform_with_zero_biases():
    params = peers.init_params(peers.SEED_RECIPE.widths(64), seed=3)
    assert [w.shape for w, _ in params] == [(64, 256), (256, 100), (100, 256), (256, 64)]
    assert (
        sum(w.size + b.size for w, b in params) == 64 * 256 * 2 + 256 * 100 * 2 + 256 * 2 + 100 + 64
    )
    for w, b in params:
        limit = math.sqrt(6 / sum(w.shape))
        assert w.dtype == np.float32 and np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.9 * limit  # uniform over the whole range, not a narrower one
        assert not b.any()


def test_dec_recipe_is_the_anchors_autoencoder():
    recipe = peers.DEC_RECIPE
    assert recipe.widths(784) == (784, 500, 500, 2000, 10, 2000, 500, 500, 784)
    assert recipe.activations() == ("relu",) * 3 + ("linear",) + ("relu",) * 3 + ("linear",)
    assert (recipe.scaling, recipe.batch_size, recipe.lr) == ("unit", 256, 1e-3)
    weights = 2 * (784 * 500 + 500 * 500 + 500 * 2000 + 2000 * 10)
    assert recipe.flops_per_sample(784) == 6 * weights


def test_numpy_loss_applies_each_layers_activation():
    params = [(np.eye(2, dtype=np.float32), np.zeros(2, np.float32))] * 2
    x = np.array([[1.0, -1.0]], np.float32)
    assert peers.numpy_loss(params, x, ("linear", "linear")) == 0.0
    assert peers.numpy_loss(params, x, ("relu", "linear")) == pytest.approx(0.5)  # -1 -> 0


@pytest.mark.parametrize("name", list(peers.PEERS))
def test_peer_trains_and_is_timed(name, noise):
    _require(name)
    recipe = SMALL_DEC if name in peers.LINEAR_CODE_ONLY else peers.SEED_RECIPE
    t = peers.time_peer(name, noise, recipe=recipe, batch_size=64, epochs=1, warmup_epochs=1)
    assert t.name == name
    assert t.steps == 8
    assert math.isfinite(t.seconds_per_step) and t.seconds_per_step > 0
    assert t.seconds_per_step == pytest.approx(t.seconds[0] / 8)
    assert math.isfinite(t.compile_seconds) and t.compile_seconds >= 0
    assert math.isfinite(t.final_loss) and t.final_loss < _initial_loss(noise, recipe=recipe)
    assert isinstance(t.device, str) and t.device


def test_jaxae_is_timed_through_fit_like_every_peer():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (256, 64)).astype(np.float32)
    x = _standardise(images)
    t = peers.time_peer("jaxae", x, images=images, batch_size=64, epochs=2, warmup_epochs=1)
    assert (t.name, t.steps) == ("jaxae", 8)
    assert t.compile_seconds > 0 and t.seconds_per_step > 0
    # fit's first weights are Flax's, not the peers': compare with a fresh model's loss, ~1.
    assert math.isfinite(t.final_loss) and t.final_loss < 1.0
    with pytest.raises(JaxaeError, match="images="):
        peers.time_peer("jaxae", x)


# The JAX peers share their step, so one of them covers bfloat16 for both.
@pytest.mark.parametrize("name", ["jax-python-loop", "torch-eager", "keras"])
def test_peer_trains_in_bfloat16(name, noise):
    _require(name)
    t = peers.time_peer(name, noise, batch_size=64, epochs=1, warmup_epochs=0, dtype="bfloat16")
    assert math.isfinite(t.final_loss) and t.final_loss < _initial_loss(noise)


@pytest.mark.parametrize("name", ["jax-python-loop", "jax-scan"])
def test_one_epoch_of_a_jax_peer_learns_structured_data(name, low_rank):
    t = peers.time_peer(name, low_rank, batch_size=32, epochs=1, warmup_epochs=0)
    # Measured: about 1.06 -> 0.3 in these 8 steps; broken gradients or shuffling stay higher.
    assert t.final_loss < 0.5 * _initial_loss(low_rank)


def test_keeping_the_loss_leaves_the_scans_training_unchanged(low_rank):
    """jax-scan-loss differs from jax-scan only in keeping each epoch's mean loss."""
    run = lambda name: peers.time_peer(name, low_rank, batch_size=32, epochs=2, warmup_epochs=0)
    assert run("jax-scan-loss").final_loss == run("jax-scan").final_loss


@pytest.fixture(scope="module")
def full_batch_reference(low_rank):
    with jax.default_matmul_precision("highest"):
        return peers.time_peer(
            "jax-python-loop", low_rank, batch_size=len(low_rank), epochs=5, warmup_epochs=0
        )


# With one batch per epoch the order of the rows does not matter, so every peer does the
# same arithmetic from the same weights. The JAX peers compile the same step; PyTorch
# sums in another order; Keras' Adam adds epsilon before bias correction (measured
# relative differences after 5 epochs: 1e-7, 1e-5, 2e-3). On GPUs JAX multiplies float32
# matrices in TF32 by default (5e-4 apart on an H200), hence "highest" here.
@pytest.mark.parametrize(
    ("name", "rtol"), [("jax-scan", 1e-5), ("torch-eager", 1e-3), ("keras", 1e-2)]
)
def test_peers_agree_on_full_batch_training(name, rtol, low_rank, full_batch_reference):
    _require(name)
    with jax.default_matmul_precision("highest"):
        t = peers.time_peer(name, low_rank, batch_size=len(low_rank), epochs=5, warmup_epochs=0)
    assert full_batch_reference.final_loss < 0.5 * _initial_loss(low_rank)
    np.testing.assert_allclose(t.final_loss, full_batch_reference.final_loss, rtol=rtol)


@pytest.fixture(scope="module")
def unit_pixels():
    rng = np.random.default_rng(3)
    return (rng.integers(0, 256, (128, 64)) / 255.0).astype(np.float32)


# The same agreement for DEC's shape (linear code, several hidden layers, pixels / 255).
# ClustPy's own model and fit agree as torch's loop does: its layers, activations, loss,
# Adam's epsilon and first weights are set as the others'.
@pytest.mark.parametrize(
    ("name", "rtol"),
    [("jax-scan", 1e-5), ("torch-eager", 1e-3), ("keras", 1e-2), ("clustpy", 1e-3)],
)
def test_peers_agree_on_a_linear_code_recipe(name, rtol, unit_pixels):
    _require(name)
    run = lambda peer: peers.time_peer(peer, unit_pixels, recipe=SMALL_DEC, batch_size=128,
                                       epochs=5, warmup_epochs=0)  # fmt: skip
    with jax.default_matmul_precision("highest"):
        reference, t = run("jax-python-loop"), run(name)
    assert reference.final_loss < 0.8 * _initial_loss(unit_pixels, recipe=SMALL_DEC)
    np.testing.assert_allclose(t.final_loss, reference.final_loss, rtol=rtol)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "flax"}, "unknown peer"),
        ({"dtype": "float16"}, "unknown dtype"),
        ({"x": np.zeros(64, np.float32)}, "2-D"),
        ({"x": np.full((8, 4), np.nan, np.float32)}, "NaN"),
        ({"batch_size": 1000}, "batch_size"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_bad_arguments_raise(kwargs, match, noise):
    args = {"name": "jax-scan", "x": noise} | kwargs
    with pytest.raises(JaxaeError, match=match):
        peers.time_peer(args.pop("name"), args.pop("x"), **args)


def test_unavailable_peer_raises(monkeypatch, noise):
    monkeypatch.setattr(peers, "available", lambda: dict.fromkeys(peers.PEERS, "not here"))
    with pytest.raises(RuntimeError, match="not here"):
        peers.time_peer("jax-scan", noise)


def test_clustpy_model_is_the_recipes_with_the_peers_first_weights(unit_pixels):
    _require("clustpy")
    import torch

    from jaxae.bench.peers import clustpy

    model = clustpy.autoencoder(SMALL_DEC, 64, seed=4)
    recon = model(torch.from_numpy(unit_pixels)).detach().cpu().numpy()
    params = peers.init_params(SMALL_DEC.widths(64), 4)
    expected = peers.numpy_loss(params, unit_pixels, SMALL_DEC.activations())
    np.testing.assert_allclose(np.mean((recon - unit_pixels) ** 2), expected, rtol=1e-5)
    with pytest.raises(RuntimeError, match="linear code"):
        clustpy.autoencoder(peers.SEED_RECIPE, 64, seed=0)


@pytest.mark.parametrize("method", ["n2d", "dec", "idec"])
def test_clustpy_methods_run_from_pixels_to_labels(method, unit_pixels):
    _require("clustpy")
    from jaxae.bench.peers import clustpy

    tiny = dataclasses.replace(SMALL_DEC, batch_size=32)
    got = clustpy.fit_method(
        method, unit_pixels, clusters=3, pretrain_epochs=1, refine_epochs=1, n_init=2,
        recipe=tiny,
    )  # fmt: skip
    assert set(got) == ({"labels"} if method == "n2d" else {"labels", "kmeans_labels"})
    for labels in got.values():
        assert labels.shape == (128,) and set(np.unique(labels)) <= {0, 1, 2}


def test_clustpy_n2d_clusters_given_codes():
    _require("clustpy")
    from jaxae.bench.peers import clustpy

    rng = np.random.default_rng(5)
    centres = 10.0 * np.eye(3, 4)
    truth = np.repeat(np.arange(3), 40)
    codes = (centres[truth] + 0.1 * rng.standard_normal((120, 4))).astype(np.float32)
    labels = clustpy.n2d_on_codes(codes, clusters=3, n_init=2, n_neighbors=10)
    assert adjusted_rand_score(truth, labels) == 1.0  # three far blobs: the identity kept them
