"""jaxae.data.mnist: OpenML's mnist_784 (faked here: no network) and its cache."""

from urllib.error import URLError

import numpy as np
import pytest
from sklearn.utils import Bunch

import jaxae.data.mnist
from jaxae.data import data_dir, load_dataset
from jaxae.errors import JaxaeError


def test_mnist_download_is_cached(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(name, **kwargs):
        calls.append((name, kwargs))
        data = np.arange(3 * 784, dtype=np.float64).reshape(3, 784) % 256
        return Bunch(data=data, target=np.array(["5", "0", "4"], dtype=object))

    monkeypatch.setattr(jaxae.data.mnist, "fetch_openml", fake_fetch)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert calls[0][0] == "mnist_784" and calls[0][1]["data_home"] == tmp_path / "openml"
    assert ds.labels.tolist() == [5, 0, 4] and ds.labels.dtype == np.int64
    assert ds.images.shape == (3, 784) and ds.image_shape == (28, 28) and ds.name == "mnist"
    assert (tmp_path / "mnist_784.npz").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["mnist_784.npz"]

    def offline(name, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(jaxae.data.mnist, "fetch_openml", offline)
    cached = load_dataset("mnist", data_dir=tmp_path, n=2)
    np.testing.assert_array_equal(cached.images, ds.images[:2])
    np.testing.assert_array_equal(cached.labels, ds.labels[:2])


def test_mnist_offline_without_cache(tmp_path, monkeypatch):
    def offline(name, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(jaxae.data.mnist, "fetch_openml", offline)
    with pytest.raises(JaxaeError, match=r"cannot download MNIST.*--dataset PATH") as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXAE_DATA", str(tmp_path / "env"))
    assert data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_dir() == tmp_path / "env"
    monkeypatch.delenv("JAXAE_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_dir() == tmp_path / ".cache" / "jaxae"


def offline(name, **kwargs):
    raise AssertionError("a cache was there: nothing may be downloaded")


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "empty", "no labels", "other shape", "a .npy"],
)
def test_corrupt_cache_says_to_delete_it(tmp_path, monkeypatch, damage):
    # A damaged cache gave numpy's "allow_pickle" hint.
    monkeypatch.setattr(jaxae.data.mnist, "fetch_openml", offline)
    cache = tmp_path / "mnist_784.npz"
    x, y = np.zeros((3, 784), np.uint8), np.zeros(3, np.uint8)
    if damage == "garbage":
        cache.write_bytes(b"these are not the bytes you are looking for" * 10)
    elif damage == "truncated":
        np.savez_compressed(cache, x=x, y=y)
        cache.write_bytes(cache.read_bytes()[:-30])
    elif damage == "empty":
        cache.write_bytes(b"")
    elif damage == "no labels":
        np.savez_compressed(cache, x=x)
    elif damage == "other shape":
        np.savez_compressed(cache, x=x.reshape(3, 28, 28), y=y)
    else:
        with open(cache, "wb") as f:
            np.save(f, x)
    with pytest.raises(JaxaeError, match=r"MNIST cache .* delete .*mnist_784\.npz") as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and "allow_pickle" not in message and "np.savez" not in message
    assert message.count(str(cache)) == 2  # the file, and the file to delete


def test_cache_is_written_atomically_and_read_back_exactly(tmp_path, monkeypatch):
    data = np.random.default_rng(0).integers(0, 256, (4, 784)).astype(np.float64)

    def fake_fetch(name, **kwargs):
        return Bunch(data=data, target=np.array(["1", "2", "3", "9"], dtype=object))

    monkeypatch.setattr(jaxae.data.mnist, "fetch_openml", fake_fetch)
    fresh = load_dataset("mnist", data_dir=tmp_path)
    monkeypatch.setattr(jaxae.data.mnist, "fetch_openml", offline)
    cached = load_dataset("mnist", data_dir=tmp_path)
    np.testing.assert_array_equal(cached.images, fresh.images)
    np.testing.assert_array_equal(cached.images, data.astype(np.float32))
    assert cached.labels.tolist() == [1, 2, 3, 9]
    with np.load(tmp_path / "mnist_784.npz", allow_pickle=False) as npz:
        assert npz["x"].dtype == np.uint8 and npz["y"].dtype == np.uint8
    assert not list(tmp_path.glob(".mnist_784.npz.tmp-*"))


def test_unwritable_cache_is_one_line(tmp_path, monkeypatch):
    def fake_fetch(name, **kwargs):
        return Bunch(data=np.zeros((1, 784)), target=np.array(["1"], dtype=object))

    def no_space(path, **arrays):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jaxae.data.mnist, "fetch_openml", fake_fetch)
    monkeypatch.setattr(jaxae.data.mnist, "save_npz", no_space)
    with pytest.raises(JaxaeError, match=r"cannot write .*mnist_784\.npz \(No space left"):
        load_dataset("mnist", data_dir=tmp_path)
