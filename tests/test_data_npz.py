"""jaxae.data.npz: .npz archives and .npy arrays, never unpickled, never over-allocated."""

import io
import math
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given

from jaxae.data import load_dataset, read_npy, read_npz
from jaxae.errors import JaxaeError
from tests.strategies import PEAK_BYTES, fuzz, measured, npy_bytes, npz_files, outcome


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


def check_dataset(ds, path: Path, images: np.ndarray, labels: np.ndarray | None):
    assert ds.name == str(path)
    assert isinstance(ds.images, np.ndarray) and ds.images.dtype == np.float32
    assert ds.images.ndim == 2 and ds.images.shape[0] >= 1 and ds.images.shape[1] >= 1
    assert np.isfinite(ds.images).all()
    assert math.prod(ds.image_shape) == ds.images.shape[1]
    np.testing.assert_array_equal(ds.images, images.reshape(ds.images.shape).astype(np.float32))
    if ds.labels is None:
        assert labels is None
    else:
        assert ds.labels.dtype == np.int64 and ds.labels.shape == (ds.images.shape[0],)
        assert np.array_equal(ds.labels, labels)  # the values, not a wrapped cast


@fuzz(150)
@given(npz_files())
def test_npz_gives_a_valid_dataset_or_a_jaxae_error(case):
    description, blob, saved = case
    event(f"input: {description}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        path.write_bytes(blob)
        pair, error = outcome(lambda: read_npz(path), path)
        if pair is not None:
            images, labels = pair
            assert isinstance(images, np.ndarray) and images.dtype.kind != "O"
            assert labels is None or (isinstance(labels, np.ndarray) and labels.dtype.kind != "O")
            if saved is not None and "x" in saved:
                np.testing.assert_array_equal(images, saved["x"])
        ds, ds_error = outcome(lambda: load_dataset(str(path)), path)
    if error is not None:
        assert ds_error is not None  # load_dataset reads it with read_npz
    if ds is not None:
        event("loaded a Dataset")
        check_dataset(ds, path, images, labels)


UNPICKLED = []


def _mark_unpickled():
    UNPICKLED.append(True)
    return 0


class _Payload:
    """Unpickling this calls ``_mark_unpickled``."""

    def __reduce__(self):
        return _mark_unpickled, ()


@pytest.mark.parametrize("key", ["x", "y", "x_train", "y_test"])
def test_npz_never_unpickles(tmp_path, key):
    arrays = {"x": np.zeros((2, 4))} if key in ("x", "y") else {"x_train": np.zeros((2, 4))}
    if key == "y_test":
        arrays["x_test"] = np.zeros((1, 4))
    arrays[key] = np.array([_Payload(), 1], dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **arrays)  # np.savez pickles object arrays
    with np.load(path, allow_pickle=True) as npz:  # what the reader must not do
        assert npz[key][1] == 1 and UNPICKLED == [True]
    UNPICKLED.clear()
    with pytest.raises(JaxaeError, match=f"{re.escape(str(path))}.*not a valid .npz"):
        load_dataset(str(path))
    with pytest.raises(JaxaeError):
        read_npz(path)
    assert not UNPICKLED


@pytest.mark.parametrize("shape", [(0, 2, 2), (0, 0, 0)])
def test_npz_3d_images_without_rows(tmp_path, shape):
    """Was bug 2: _validated does images.reshape(len(images), -1), which NumPy refuses for an empty
    (0, H, W) array with a plain ValueError.
    """
    path = tmp_path / "empty.npz"
    np.savez(path, x=np.zeros(shape))
    with pytest.raises(JaxaeError, match="no images"):
        load_dataset(str(path))


@pytest.mark.parametrize(
    "damage",
    [
        "compression method",
        "encrypted flag",
        "patched-data flag",
        "unbalanced .npy header",
        "datetime part",
    ],
)
def test_npz_archive_errors_are_refused(tmp_path, damage):
    """Was bug 3: read_npz lets zipfile's NotImplementedError (unknown compression method, flag bit
    5 or 6), RuntimeError (encrypted member), NumPy's tokenize.TokenError (a header with
    unbalanced brackets) and DTypePromotionError (parts that do not concatenate) through.
    """
    path = tmp_path / "data.npz"
    if damage == "datetime part":
        np.savez(path, x_train=np.zeros((2, 2)), x_test=np.zeros((1, 2), "datetime64[s]"))
    elif damage == "unbalanced .npy header":  # NumPy's tokenize.TokenError
        path.write_bytes(npy_bytes(np.zeros((2, 2))).replace(b"}", b" ", 1))
    else:
        np.savez(path, x=np.zeros((2, 2)))
        blob = bytearray(path.read_bytes())
        central = blob.rfind(b"PK\x01\x02")  # the central directory entry of x.npy
        if damage == "compression method":
            blob[central + 10] = 99
        elif damage == "encrypted flag":
            blob[central + 8] |= 0x01
        else:
            blob[central + 8] |= 0x20
        path.write_bytes(blob)
    with pytest.raises(JaxaeError, match=re.escape(str(path))):
        load_dataset(str(path))


@pytest.mark.parametrize(
    "shape, descr, container",
    [((10**9,), "|u1", "npz"), ((10**11,), "<f8", "npz"), ((10**9,), "|u1", "npy")],
)
def test_npz_member_declaring_a_huge_array(tmp_path, shape, descr, container):
    """Was bug 4: np.load allocates the shape an .npz member's (or a .npy's) header declares before
    reading its data: 1 GB for a 200-byte file, MemoryError beyond RAM; check the declared size
    against the member's file_size (the file's size) first.
    """
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    path = tmp_path / "bomb.npz"
    if container == "npy":  # read whole before read_npz finds it is not an archive
        path.write_bytes(buf.getvalue() + bytes(64))
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x.npy", buf.getvalue() + bytes(64))
    assert path.stat().st_size < 1024
    with measured() as cost, pytest.raises(JaxaeError, match=re.escape(str(path))):
        read_npz(path)
    assert cost.peak < PEAK_BYTES, f"allocated {cost.peak / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    "arrays",
    [
        {"x": np.array([[1e300, 0.0]])},
        {"x": np.zeros((2, 2)), "y": np.array([1e300, 0.0])},
        {"x": np.zeros((2, 2)), "y": np.array([2**63, 0], np.uint64)},
    ],
    ids=["pixels 1e300", "labels 1e300", "labels uint64 2**63"],
)
def test_npz_values_beyond_the_cast(tmp_path, arrays):
    """Was bugs 5 and 6: _validated casts without np.errstate, so pixels beyond float32 warn (a
    second stderr line in the CLI) and labels beyond int64 warn and become garbage or wrap
    (uint64) without an error.
    """
    path = tmp_path / "big.npz"
    np.savez(path, **arrays)
    try:
        ds = load_dataset(str(path))
    except JaxaeError as e:
        assert str(path) in str(e)
        return
    assert np.array_equal(ds.labels, arrays["y"])  # loaded: then exactly the stored labels


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


# --- .npy as a dataset (it used to say "not an IDX file") ---------------------------------


@pytest.mark.parametrize("shape", [(5, 6), (5, 2, 3)])
def test_npy_dataset_loads_like_the_same_npz(tmp_path, shape):
    x = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x)
    ds, reference = load_dataset(str(tmp_path / "x.npy")), load_dataset(str(tmp_path / "x.npz"))
    np.testing.assert_array_equal(ds.images, reference.images)
    np.testing.assert_array_equal(ds.images, x.reshape(5, -1).astype(np.float32))
    assert ds.labels is None and ds.image_shape == reference.image_shape
    assert ds.name == str(tmp_path / "x.npy") and ds.images.dtype == np.float32


def test_npy_without_its_suffix_is_found_by_its_magic(tmp_path):
    with open(tmp_path / "images", "wb") as f:
        np.save(f, np.ones((2, 4), np.float32))
    assert load_dataset(str(tmp_path / "images")).images.tolist() == [[1.0] * 4] * 2


def test_npy_reads_only_the_first_n_rows(tmp_path):
    x = np.arange(2000 * 64, dtype=np.float64).reshape(2000, 64)
    np.save(tmp_path / "x.npy", x)
    with measured() as cost:
        ds = load_dataset(str(tmp_path / "x.npy"), n=10)
    np.testing.assert_array_equal(ds.images, x[:10].astype(np.float32))
    assert cost.peak < x.nbytes / 10, f"{cost.peak} bytes for 10 of 2,000 rows"
    assert read_npy(tmp_path / "x.npy", n=3).shape == (3, 64)
    with pytest.raises(JaxaeError, match=r"n=2001 is larger than the 2000 images in .*x\.npy"):
        load_dataset(str(tmp_path / "x.npy"), n=2001)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: np.save(p, np.array([[1, "a"]], dtype=object)), r"not a \.npy of numbers"),
        (lambda p: np.save(p, np.zeros(4)), r"have shape \(4,\): store them as \(N, D\)"),
        (lambda p: np.save(p, np.full((2, 2), "a")), r"have dtype <U1"),
        (lambda p: np.save(p, np.full((2, 2), np.nan)), r"non-finite values"),
        (lambda p: np.save(p, np.zeros((0, 4))), r"no images"),
        (lambda p: p.write_bytes(npy_bytes(np.zeros((100, 4)))[:-8]), r"not a \.npy of numbers"),
        (lambda p: p.write_bytes(b"text"), r"not a \.npy of numbers"),
        (lambda p: p.write_bytes(npz_bytes(x=np.zeros((2, 2)))), r"\.npz archive, not a \.npy"),
    ],
    ids=["objects", "1-D", "strings", "NaN", "empty", "truncated", "text", "npz inside"],
)
def test_npy_dataset_refuses(tmp_path, make, match):
    path = tmp_path / "x.npy"
    make(path)
    with pytest.raises(JaxaeError, match=match) as info:
        load_dataset(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert "allow_pickle" not in str(info.value)


def test_npz_that_is_no_archive_does_not_hint_at_pickles(tmp_path):
    (tmp_path / "t.npz").write_text("not a zip")
    with pytest.raises(JaxaeError, match=r"neither a zip archive of \.npy arrays") as info:
        read_npz(tmp_path / "t.npz")
    assert "allow_pickle" not in str(info.value)


# --- bool images: 0 and 1 ------------------------------------------------------------------


@pytest.mark.parametrize("container", ["npz", "npy"])
def test_bool_images_load_as_zeros_and_ones(tmp_path, container):
    x = np.random.default_rng(1).random((6, 3, 3)) > 0.5
    path = tmp_path / f"b.{container}"
    if container == "npz":
        np.savez(path, x=x, y=np.arange(6))
    else:
        np.save(path, x)
    ds = load_dataset(str(path))
    assert ds.images.dtype == np.float32 and set(np.unique(ds.images)) <= {0.0, 1.0}
    np.testing.assert_array_equal(ds.images, x.reshape(6, 9).astype(np.float32))
    np.testing.assert_array_equal(ds.images, load_dataset(str(path)).images)
