"""Tests for jaxae.peers: every runnable peer trains and is timed; the peers agree."""

import ast
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxae import peers
from jaxae.errors import JaxaeError


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


def _initial_loss(x, seed=0):
    return peers._numpy_loss(peers._init_params(x.shape[1], seed), x)


def _require(name):
    reason = peers.available()[name]
    if reason is not None:
        pytest.skip(reason)


def test_available_names_every_peer():
    status = peers.available()
    assert set(status) == set(peers.PEERS)
    assert status["jax-python-loop"] is None and status["jax-scan"] is None
    assert all(v is None or (isinstance(v, str) and v) for v in status.values())


def test_peer_frameworks_are_imported_lazily():
    # Read the source rather than import it in a subprocess: cheaper, and not fooled by
    # other tests having imported torch already.
    tree = ast.parse(Path(peers.__file__).read_text())
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert not top & {"jax", "optax", "torch", "tensorflow", "keras"}


def test_init_is_glorot_uniform_with_zero_biases():
    params = peers._init_params(64, seed=3)
    assert [w.shape for w, _ in params] == [(64, 256), (256, 100), (100, 256), (256, 64)]
    assert (
        sum(w.size + b.size for w, b in params) == 64 * 256 * 2 + 256 * 100 * 2 + 256 * 2 + 100 + 64
    )
    for w, b in params:
        limit = math.sqrt(6 / sum(w.shape))
        assert w.dtype == np.float32 and np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.9 * limit  # uniform over the whole range, not a narrower one
        assert not b.any()


@pytest.mark.parametrize("name", list(peers.PEERS))
def test_peer_trains_and_is_timed(name, noise):
    _require(name)
    t = peers.time_peer(name, noise, batch_size=64, epochs=1, warmup_epochs=1)
    assert t.name == name
    assert t.steps == 8
    assert math.isfinite(t.seconds_per_step) and t.seconds_per_step > 0
    assert math.isfinite(t.compile_seconds) and t.compile_seconds >= 0
    assert math.isfinite(t.final_loss) and t.final_loss < _initial_loss(noise)
    assert isinstance(t.device, str) and t.device


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
