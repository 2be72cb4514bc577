"""jaxae.data.idx: the IDX header parser and row reader, for loading (read_idx) and streaming."""

import gzip
import io
import math
import os
import re
import struct
import tempfile
import threading
import time
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import event, given, settings

from jaxae.data import open_rows, read_idx
from jaxae.data.idx import open_idx, read_header
from jaxae.errors import JaxaeError
from tests.helpers import IDX_CODES, idx_bytes, idx_header, write_idx
from tests.strategies import fuzz, idx_dims, idx_files, outcome

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
        (gzip.compress(idx_bytes(U8), mtime=0)[:-12], r"corrupt gzip file"),  # cut short
    ],
    ids=["not gzip", "cut short"],  # the same in every xdist worker: no bytes in the ids
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


@fuzz(200)
@given(idx_files())
def test_idx_reader_gives_the_declared_array_or_a_jaxae_error(case):
    description, blob = case
    event(f"input: {description}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t10k-images-idx3-ubyte"
        path.write_bytes(blob)
        array, _ = outcome(lambda: read_idx(path), path)
    if array is None:
        return
    event("returned an array")
    payload = gzip.GzipFile(fileobj=io.BytesIO(blob)).read() if blob[:2] == b"\x1f\x8b" else blob
    dtype, dims, header = idx_dims(payload)
    assert isinstance(array, np.ndarray)
    assert array.shape == dims and array.size == math.prod(dims)
    assert array.dtype == dtype.newbyteorder("=")
    assert array.astype(dtype).tobytes() == payload[header:]  # every byte, none left over


def test_idx_zero_beside_overflowing_dims(tmp_path):
    """Was bug 1: read_idx reshapes to dims like (0, 2**32-1, 2**32-1), which NumPy refuses with a
    plain ValueError; check math.prod of the dims against a limit too.
    """
    path = tmp_path / "images.idx"
    path.write_bytes(idx_header(0x08, (0, 2**32 - 1, 2**32 - 1)))
    with pytest.raises(JaxaeError, match=re.escape(str(path))):
        read_idx(path)
    with pytest.raises(JaxaeError, match=re.escape(str(path))):  # the streaming reader too
        open_rows(path)


# --- one parser and one reader for loading and streaming ---------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "float64"])
def test_loading_and_streaming_read_the_same_rows(tmp_path, dtype, compress):
    array = (np.arange(5 * 3 * 4) * 7 % 251 - 100).astype(dtype).reshape(5, 3, 4)
    path = write_idx(tmp_path / "a", array, compress=compress)
    loaded = read_idx(path)
    with open_rows(path) as rows:
        assert rows.shape == (5, 3, 4) and (rows.n_rows, rows.width) == (5, 12)
        streamed = np.concatenate([rows.read(0, 2), rows.read(2, 5)])
        rows.verify_end()
    np.testing.assert_array_equal(streamed, array.reshape(5, 12))
    np.testing.assert_array_equal(loaded, array)
    assert loaded.dtype == streamed.dtype == np.dtype(dtype) and streamed.dtype.isnative


def test_read_header_leaves_the_file_at_the_data():
    f = io.BytesIO(idx_bytes(U8) + b"rest")
    header = read_header(f, Path("mem"))
    assert header.dims == (3, 4) and header.dtype == np.uint8 and header.offset == 12
    assert header.data_bytes == 12 and f.read(12) == U8.tobytes()


def test_loading_has_a_size_limit_and_streaming_none(tmp_path):
    # 2**34 + 1 bytes declared: over the loading limit, within the streaming one (then truncated).
    path = tmp_path / "big"
    path.write_bytes(idx_header(0x08, (2**17 + 1, 2**17)))
    with pytest.raises(JaxaeError, match=r"over the 17179869184-byte limit"):
        read_idx(path)
    with pytest.raises(JaxaeError, match=r"truncated: header declares 17180000256 bytes"):
        open_rows(path)


def test_labels_file_is_read_but_not_streamed(tmp_path):
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 1, 4], np.uint8))
    assert read_idx(path).tolist() == [3, 1, 4]
    with pytest.raises(JaxaeError, match=r"declares 1 dimensions: an IDX images file needs 2"):
        open_idx(path, images=True)


@pytest.mark.parametrize("reader", [read_idx, open_rows], ids=["read_idx", "open_rows"])
def test_fifo_is_refused_at_once(tmp_path, reader):
    fifo = tmp_path / "t10k-images-idx3-ubyte"
    os.mkfifo(fifo)
    # A writer that never comes: a blocking open would wait for good; fail the test instead.
    done = threading.Event()
    errors = []

    def read():
        try:
            reader(fifo)
        except JaxaeError as e:
            errors.append(str(e))
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "reading a FIFO blocked"
    assert len(errors) == 1 and "FIFO" in errors[0] and str(fifo) in errors[0]
