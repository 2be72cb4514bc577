"""The JAX UMAP fit in calls of a couple of seconds: the same bits however it is cut,
and a stop seen in every step that can take long (the neighbour search, between the
host steps, the spectral start's eigensolver, the layout)."""

import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import loop
from jaxae.cluster.umap import drive, fit_umap, nearest_neighbors
from jaxae.data import load_dataset
from jaxae.loop import Stopped

N, K, C = 400, 15, 4


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", n=N)
    return np.asarray(ds.images, np.float32).reshape(N, -1) / 16.0


def test_the_driven_search_is_nearest_neighbors_in_any_number_of_calls(monkeypatch):
    # Continuous data: no tied distances (digits' integer pixels tie, and the order of
    # neighbours at the same distance follows their last bit).
    x = jnp.asarray(np.random.default_rng(0).normal(size=(401, 12)).astype(np.float32))
    want_ids, want_dist = nearest_neighbors(x, x, K, self_first=True, block_rows=64, block_cols=96)
    options = dict(rows=64, cols=96, should_stop=None, progress=False)
    ids, dist = drive.neighbours(x, K, **options)
    np.testing.assert_array_equal(np.asarray(ids), np.asarray(want_ids))
    # One block a program instead of all in one: XLA may round the exact distances of
    # the chosen neighbours differently, by an ulp.
    np.testing.assert_allclose(np.asarray(dist), np.asarray(want_dist), rtol=1e-6)
    monkeypatch.setattr(loop, "CALL_SECONDS", 0.0)  # one block a call: 7 calls
    again = drive.neighbours(x, K, **options)
    for a, b in zip(again, (ids, dist), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_fit_in_calls_of_one_epoch_is_one_call_bit_for_bit(digits, monkeypatch):
    options = dict(n_components=C, n_neighbors=K, n_epochs=30, seed=1)
    whole = fit_umap(digits, **options)
    monkeypatch.setattr(loop, "CALL_SECONDS", 0.0)
    cut = fit_umap(digits, **options)
    np.testing.assert_array_equal(cut.embedding, whole.embedding)


def _stop_in(function: str):
    """A ``should_stop`` that says stop when called from inside ``function``."""

    def should_stop():
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name == function:
                return True
            frame = frame.f_back
        return False

    return should_stop


@pytest.mark.parametrize(
    ("inside", "message"),
    [
        # after a call, or beside it (jaxae.loop.polled) while it compiles or runs
        ("neighbours", "the UMAP neighbour search stopped (after|in) block 1$"),
        ("check", "the UMAP fit stopped after its neighbour search$"),
        ("matvec", "the UMAP fit stopped in its spectral start$"),
        ("layout", "the UMAP layout stopped (after|in) epoch 1$"),
    ],
)
def test_a_stop_is_seen_in_every_long_step(digits, monkeypatch, inside, message):
    monkeypatch.setattr(loop, "CALL_SECONDS", 0.0)  # one block, one epoch a call
    options = dict(n_components=C, n_neighbors=K, n_epochs=30)
    with pytest.raises(Stopped, match=message) as info:  # 400 rows: two blocks of 256
        fit_umap(digits, **options, should_stop=_stop_in(inside))
    assert info.value.interrupted
