"""jaxae.data: load_dataset over every source, and the validation of what it loads."""

import gzip
import os
import time

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from jaxae.data import Dataset, load_dataset
from jaxae.errors import JaxaeError
from jaxae.preprocess import standardize
from tests.helpers import MNIST_5K_COUNTS, mnist_5k, write_idx


@pytest.fixture(scope="module")
def mnist_5k_dataset() -> Dataset:
    return load_dataset(str(mnist_5k()))


# --- digits and real MNIST ---------------------------------------------------------------


def test_digits_loads():
    ds = load_dataset("digits")
    assert ds.images.shape == (1797, 64) and ds.images.dtype == np.float32
    assert ds.labels.shape == (1797,) and ds.labels.dtype == np.int64
    assert ds.image_shape == (8, 8) and ds.name == "digits"


def test_digits_n_takes_the_first_images():
    x, y = load_digits(return_X_y=True)
    ds = load_dataset("digits", n=100)
    np.testing.assert_array_equal(ds.images, x[:100].astype(np.float32))
    np.testing.assert_array_equal(ds.labels, y[:100])


def test_mnist_5k_folder(mnist_5k_dataset):
    ds = mnist_5k_dataset
    assert ds.images.shape == (5000, 784) and ds.images.dtype == np.float32
    assert ds.image_shape == (28, 28)
    assert ds.images.min() == 0 and ds.images.max() == 255
    assert np.bincount(ds.labels).tolist() == MNIST_5K_COUNTS


def test_mnist_5k_images_file_finds_its_labels(mnist_5k_dataset):
    ds = load_dataset(str(mnist_5k() / "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(ds.images, mnist_5k_dataset.images)
    np.testing.assert_array_equal(ds.labels, mnist_5k_dataset.labels)
    assert ds.image_shape == (28, 28)


def test_mnist_5k_raw_copy_is_the_same(mnist_5k_dataset, tmp_path):
    for kind in ("images-idx3", "labels-idx1"):
        with gzip.open(mnist_5k() / f"t10k-{kind}-ubyte.gz") as src:
            (tmp_path / f"t10k-{kind}-ubyte").write_bytes(src.read())
    for source in (tmp_path, tmp_path / "t10k-images-idx3-ubyte"):
        ds = load_dataset(str(source))
        np.testing.assert_array_equal(ds.images, mnist_5k_dataset.images)
        np.testing.assert_array_equal(ds.labels, mnist_5k_dataset.labels)


def test_folder_puts_train_before_t10k(tmp_path):
    # Both spellings MNIST ships under, one raw and one gzip.
    write_idx(
        tmp_path / "t10k-images-idx3-ubyte.gz", np.full((2, 3, 3), 7, np.uint8), compress=True
    )
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([7, 7], np.uint8), compress=True)
    write_idx(tmp_path / "train-images.idx3-ubyte", np.full((3, 3, 3), 1, np.uint8))
    write_idx(tmp_path / "train-labels.idx1-ubyte", np.array([1, 1, 1], np.uint8))
    ds = load_dataset(str(tmp_path))
    assert ds.images.shape == (5, 9) and ds.image_shape == (3, 3)
    assert ds.images[:, 0].tolist() == [1, 1, 1, 7, 7]
    assert ds.labels.tolist() == [1, 1, 1, 7, 7]


def test_folder_without_labels(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 2, 2), np.uint8))
    assert load_dataset(str(tmp_path)).labels is None


# --- standardize -------------------------------------------------------------------------


standardize_jit = jax.jit(standardize)


def test_standardize_matches_sklearn_on_digits():
    x = load_digits().data  # float64; contains no constant rows
    expected = StandardScaler().fit_transform(x.T).T
    got = standardize_jit(x.astype(np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_standardize_constant_rows_become_zeros():
    # 0.1 is inexact in float32, so the row mean carries rounding error that
    # must not be amplified into +-1 values.
    x = np.stack([np.zeros(64), np.full(64, 0.1), np.full(64, 255.0), np.arange(64.0)])
    got = np.asarray(standardize_jit(x.astype(np.float32)))
    np.testing.assert_array_equal(got[:3], 0.0)
    np.testing.assert_allclose(got, StandardScaler().fit_transform(x.T).T, rtol=1e-5, atol=1e-5)


def test_standardize_uint8_eager_jit_and_vmap_agree(mnist_5k_dataset):
    x = mnist_5k_dataset.images[:200]
    expected = standardize_jit(x)
    got_uint8 = standardize_jit(x.astype(np.uint8))
    assert got_uint8.dtype == np.float32
    np.testing.assert_array_equal(got_uint8, expected)
    np.testing.assert_allclose(standardize(x), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(standardize))(x), expected, rtol=1e-6, atol=1e-6)


# --- bad input ---------------------------------------------------------------------------


def test_load_dataset_rejects_missing_path_and_unknown_name(tmp_path):
    with pytest.raises(JaxaeError, match=r"unknown dataset '.*nope\.npz'.*use digits, mnist"):
        load_dataset(str(tmp_path / "nope.npz"))
    with pytest.raises(JaxaeError, match=r"unknown dataset 'fashion'.*use digits, mnist"):
        load_dataset("fashion")


def test_load_dataset_rejects_folder_without_idx(tmp_path):
    # Neither IDX files nor images: the message names both kinds of folder.
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(JaxaeError, match=r"has no images \(no file Pillow.*train-images-idx3"):
        load_dataset(str(tmp_path))


def test_load_dataset_rejects_label_count_mismatch(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(JaxaeError, match=r"3 images but 2 labels in"):
        load_dataset(str(tmp_path))


@pytest.mark.parametrize(
    ("n", "match"),
    [
        (0, r"n must be at least 1, got 0: pass n=1 or more"),
        (-5, r"n must be at least 1"),
        (1798, r"n=1798 is larger than the 1797 images in digits: pass n=1797 or less"),
        (True, r"n must be an integer, got True"),  # a bool is not a count (was 1 image)
        (2.0, r"n must be an integer, got 2.0"),
    ],
)
def test_load_dataset_rejects_bad_n(n, match):
    with pytest.raises(JaxaeError, match=match):
        load_dataset("digits", n=n)


def test_load_dataset_refuses_bool_n_before_reading(tmp_path):
    # Checked before the source is touched: a missing file does not hide the bad n.
    with pytest.raises(JaxaeError, match=r"n must be an integer, got False"):
        load_dataset(str(tmp_path / "missing.npz"), n=False)
    assert load_dataset("digits", n=np.int64(3)).images.shape == (3, 64)


@pytest.mark.parametrize("name", ["data.npz", "data.npy", "t10k-images-idx3-ubyte", "data"])
def test_fifo_dataset_is_refused_at_once(tmp_path, name):
    # A plain open() of a FIFO waits for a writer forever.
    fifo = tmp_path / name
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(JaxaeError, match=r"FIFO \(named pipe\), not a file or folder") as info:
        load_dataset(str(fifo))
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert str(fifo) in message and "\n" not in message and "use digits, mnist" in message


def test_fifo_or_device_inside_an_idx_folder_is_skipped(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.full((2, 2, 2), 3, np.uint8))
    os.mkfifo(tmp_path / "t10k-labels-idx1-ubyte")  # not a labels file: never opened
    ds = load_dataset(str(tmp_path))
    assert ds.images.tolist() == [[3] * 4] * 2 and ds.labels is None


def test_device_dataset_is_refused():
    with pytest.raises(JaxaeError, match=r"/dev/null \(a character device, not a file or folder\)"):
        load_dataset("/dev/null")


def test_idx_images_file_through_a_symlink(tmp_path):
    target = write_idx(tmp_path / "t10k-images-idx3-ubyte", np.full((2, 2, 2), 5, np.uint8))
    (tmp_path / "link").symlink_to(target)
    assert load_dataset(str(tmp_path / "link")).images.tolist() == [[5] * 4] * 2
