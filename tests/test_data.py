import gzip
import struct
import time
from pathlib import Path
from urllib.error import URLError

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch

import jaxae.data
from jaxae.data import Dataset, data_dir, load_dataset, read_idx, read_npz
from jaxae.errors import JaxaeError
from jaxae.preprocess import standardize

# The first 5,000 MNIST test images and labels (see its README); lives beside the repo.
MNIST_5K = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-5k"
# From MNIST_5K/README.md.
MNIST_5K_COUNTS = [460, 571, 530, 500, 500, 456, 462, 512, 489, 520]

IDX_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D}
IDX_CODES["float64"] = 0x0E


def idx_bytes(array: np.ndarray, *, code: int | None = None, dims=None) -> bytes:
    """An IDX file's bytes: header (code and dims overridable) then big-endian data."""
    array = np.asarray(array)
    code = IDX_CODES[array.dtype.name] if code is None else code
    dims = array.shape if dims is None else dims
    header = struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False, **kwargs) -> Path:
    data = idx_bytes(array, **kwargs)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def mnist_5k() -> Path:
    if not (MNIST_5K / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST sample not found at {MNIST_5K}")
    return MNIST_5K


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


# --- npz ---------------------------------------------------------------------------------


def test_npz_keras_layout_is_train_then_test(tmp_path):
    path = tmp_path / "mnist.npz"
    x_train, x_test = np.zeros((3, 2, 2), np.uint8), np.ones((2, 2, 2), np.uint8)
    np.savez(path, x_train=x_train, y_train=[0, 0, 0], x_test=x_test, y_test=[1, 1])
    ds = load_dataset(str(path))
    assert ds.images.shape == (5, 4) and ds.image_shape == (2, 2)
    assert ds.images[:, 0].tolist() == [0, 0, 0, 1, 1]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1] and ds.name == str(path)


def test_npz_x_y_layout(tmp_path):
    path = tmp_path / "d.npz"
    x = np.arange(12, dtype=np.float64).reshape(2, 6)
    np.savez(path, x=x, y=np.array([3.0, 4.0]))
    ds = load_dataset(str(path))
    np.testing.assert_array_equal(ds.images, x.astype(np.float32))
    assert ds.labels.tolist() == [3, 4] and ds.labels.dtype == np.int64
    assert ds.image_shape == (1, 6)  # 6 is not a perfect square


def test_npz_x_only_has_no_labels(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4)))
    images, labels = read_npz(tmp_path / "d.npz")
    assert images.shape == (2, 4) and labels is None
    assert load_dataset(str(tmp_path / "d.npz")).labels is None


# --- MNIST from OpenML (faked) -----------------------------------------------------------


def test_mnist_download_is_cached(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(name, **kwargs):
        calls.append((name, kwargs))
        data = np.arange(3 * 784, dtype=np.float64).reshape(3, 784) % 256
        return Bunch(data=data, target=np.array(["5", "0", "4"], dtype=object))

    monkeypatch.setattr(jaxae.data, "fetch_openml", fake_fetch)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert calls[0][0] == "mnist_784" and calls[0][1]["data_home"] == tmp_path / "openml"
    assert ds.labels.tolist() == [5, 0, 4] and ds.labels.dtype == np.int64
    assert ds.images.shape == (3, 784) and ds.image_shape == (28, 28) and ds.name == "mnist"
    assert (tmp_path / "mnist_784.npz").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["mnist_784.npz"]

    def offline(name, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(jaxae.data, "fetch_openml", offline)
    cached = load_dataset("mnist", data_dir=tmp_path, n=2)
    np.testing.assert_array_equal(cached.images, ds.images[:2])
    np.testing.assert_array_equal(cached.labels, ds.labels[:2])


def test_mnist_offline_without_cache(tmp_path, monkeypatch):
    def offline(name, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(jaxae.data, "fetch_openml", offline)
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

U8 = np.arange(12, dtype=np.uint8).reshape(3, 4)

BAD_IDX = {
    "bad magic": (b"\x89PNG\r\n\x1a\n" + bytes(20), r"not an IDX file \(bad magic bytes"),
    "bad dtype code": (idx_bytes(U8, code=0x0A), r"unknown IDX dtype code 0x0A"),
    "ndim 0": (struct.pack(">HBB", 0, 8, 0), r"declares 0 dimensions"),
    "ndim 5": (idx_bytes(np.zeros((1,) * 5, np.uint8)), r"declares 5 dimensions"),
    "empty file": (b"", r"truncated: an IDX header needs 4 bytes, found 0"),
    "truncated header": (idx_bytes(U8)[:9], r"truncated: its IDX header needs 12 bytes, found 9"),
    "truncated data": (
        idx_bytes(U8)[:-2],
        r"truncated: header declares 12 bytes of data, found 10",
    ),
    "trailing bytes": (idx_bytes(U8) + b"xyz", r"has 3 unexpected bytes after the data"),
    # 2**33 bytes declared in a 30-byte file: must be refused before any allocation.
    "huge declared size": (
        idx_bytes(U8, dims=(2**16, 2**16, 2)),
        r"truncated: header declares 8589934592 bytes of data, found 12",
    ),
    "over size limit": (idx_bytes(U8, dims=(2**32 - 1,) * 4), r"over the \d+-byte limit"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("case", BAD_IDX)
def test_read_idx_rejects(case, compress, tmp_path):
    data, match = BAD_IDX[case]
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    start = time.perf_counter()
    with pytest.raises(JaxaeError, match=match) as info:
        read_idx(path)
    assert time.perf_counter() - start < 1
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x1f\x8b" + b"not really gzip" * 4, r"corrupt gzip file"),
        (gzip.compress(idx_bytes(U8))[:-12], r"corrupt gzip file"),  # stream cut short
    ],
)
def test_read_idx_rejects_corrupt_gzip(data, match, tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(data)
    with pytest.raises(JaxaeError, match=match):
        read_idx(path)


def test_read_idx_rejects_missing_and_unreadable(tmp_path):
    with pytest.raises(JaxaeError, match=r"does not exist"):
        read_idx(tmp_path / "nope")
    with pytest.raises(JaxaeError, match=r"cannot read .*: pass a readable IDX file"):
        read_idx(tmp_path)


@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_read_idx_round_trips_every_dtype(dtype, tmp_path):
    array = (np.arange(24) - 12).astype(dtype).reshape(2, 3, 4)
    got = read_idx(write_idx(tmp_path / "a", array))
    np.testing.assert_array_equal(got, array)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative


@settings(max_examples=100, deadline=None)
@given(
    code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]),
    dims=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 6), min_size=0, max_size=5),
    payload=st.binary(max_size=64),
    compress=st.booleans(),
)
def test_read_idx_fuzz_returns_or_raises_jaxae_error(
    tmp_path_factory, code, dims, payload, compress
):
    data = struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + payload
    path = tmp_path_factory.mktemp("fuzz") / "f"
    path.write_bytes(gzip.compress(data) if compress else data)
    try:
        got = read_idx(path)
    except JaxaeError:
        return
    assert got.shape == tuple(dims) and got.nbytes == len(payload)


def test_load_dataset_rejects_missing_path_and_unknown_name(tmp_path):
    with pytest.raises(JaxaeError, match=r"unknown dataset '.*nope\.npz'.*use digits, mnist"):
        load_dataset(str(tmp_path / "nope.npz"))
    with pytest.raises(JaxaeError, match=r"unknown dataset 'fashion'.*use digits, mnist"):
        load_dataset("fashion")


def test_load_dataset_rejects_folder_without_idx(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(JaxaeError, match=r"has no IDX images file.*train-images-idx3-ubyte"):
        load_dataset(str(tmp_path))


def test_load_dataset_rejects_label_count_mismatch(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(JaxaeError, match=r"3 images but 2 labels in"):
        load_dataset(str(tmp_path))


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.array([[0.0, np.nan]])}, r"non-finite values \(NaN or inf\).*clean the data"),
        ({"x": np.array([[0.0, np.inf]])}, r"non-finite values"),
        ({"x": np.zeros((0, 4))}, r"has no images \(shape \(0, 4\)\)"),
        ({"x": np.zeros((2, 4)), "y": np.array([0.5, 1.0])}, r"labels .* are not integers"),
        ({"x": np.zeros(4)}, r"have shape \(4,\): store them as \(N, D\)"),
        ({"x": np.array([["a", "b"]])}, r"have dtype <U1: store numeric pixels"),
        ({"images": np.zeros((2, 4))}, r"has no images \(arrays: images\)"),
    ],
)
def test_load_dataset_rejects_bad_npz_content(arrays, match, tmp_path):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(JaxaeError, match=match):
        load_dataset(str(tmp_path / "d.npz"))


def test_read_npz_rejects_object_arrays_and_non_archives(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([1, "a", None], dtype=object))
    with pytest.raises(JaxaeError, match=r"not a valid \.npz of numeric arrays"):
        read_npz(tmp_path / "o.npz")
    (tmp_path / "t.npz").write_text("not a zip")
    with pytest.raises(JaxaeError, match=r"not a valid \.npz"):
        read_npz(tmp_path / "t.npz")
    (tmp_path / "z.npz").write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(JaxaeError, match=r"not a valid \.npz"):
        read_npz(tmp_path / "z.npz")
    with open(tmp_path / "a.npz", "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(JaxaeError, match=r"single \.npy array, not a \.npz archive"):
        read_npz(tmp_path / "a.npz")


@pytest.mark.parametrize(
    ("n", "match"),
    [
        (0, r"n must be at least 1, got 0: pass --n 1 or more"),
        (-5, r"n must be at least 1"),
        (1798, r"n=1798 is larger than the 1797 images in digits: pass --n 1797 or less"),
    ],
)
def test_load_dataset_rejects_bad_n(n, match):
    with pytest.raises(JaxaeError, match=match):
        load_dataset("digits", n=n)
