"""The fuzz harness and the hypothesis strategies for files, shared by the fuzz tests.

The contract under test (STYLE.md, item 7): bad input gives a ``JaxaeError`` whose message
names the file (in the CLI: one line on stderr and status 2), never another exception, a
traceback, or a large allocation; input that is fine loads and is valid.

``pytest tests/test_data_idx.py --hypothesis-show-statistics`` (or any fuzz file) lists, per
test, the kinds of input tried and what they gave (JaxaeError messages grouped) as events.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import re
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, event, settings

from jaxae.errors import JaxaeError
from tests.helpers import idx_header

# A reader may hold a few chunks of a small file; MNIST itself is 47 MB.
PEAK_BYTES = 64 * 2**20
SECONDS = 15.0  # a hang detector; the test machines are busy


def fuzz(max_examples: int):
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,  # write nothing into the checkout
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


class Cost:
    peak = 0
    seconds = 0.0


@contextlib.contextmanager
def measured():
    """Peak traced allocation (bytes) and wall time of the block."""
    cost = Cost()
    outer = tracemalloc.is_tracing()
    if not outer:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost.seconds = time.perf_counter() - start
        cost.peak = tracemalloc.get_traced_memory()[1] - base
        if not outer:
            tracemalloc.stop()


def kind(message: str, path: Path | str | None = None) -> str:
    """A message with its file, numbers and hex bytes blanked, cut at its first ': '."""
    if path is not None:
        message = message.replace(str(path), "FILE")
    message = re.sub(r"\b[0-9a-f]{2}(?: [0-9a-f]{2})+\b", "HEX", message)
    message = re.sub(r"\b0x[0-9a-fA-F]+\b", "0xHEX", message)
    message = re.sub(r"argument '[^']*'", "argument 'S'", message)
    message = re.sub(r"\d+", "N", message)
    return message.split(": ")[0][:90]


def outcome(call, path: Path):
    """``(result, None)``, or ``(None, message)`` for a JaxaeError that names ``path``.

    Any other exception propagates and fails the test; so does a large or slow call.
    """
    with measured() as cost:
        try:
            result, error = call(), None
        except JaxaeError as e:
            result, error = None, str(e)
    assert cost.peak < PEAK_BYTES, f"allocated {cost.peak / 2**20:.0f} MiB"
    assert cost.seconds < SECONDS, f"took {cost.seconds:.1f} s"
    if error is not None:
        assert str(path) in error, error
        event(f"JaxaeError: {kind(error, path)}")
    return result, error


# --- IDX ----------------------------------------------------------------------------------

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
HUGE_DIMS = [2**16, 2**24, 2**31, 2**32 - 1]
IDX_MUTATIONS = [
    "none",
    "truncate",
    "flip header bytes",
    "bad magic",
    "bad dtype code",
    "bad dimension count",
    "huge dims",
    "garbage after data",
    "empty file",
    "random bytes",
]
GZIP_MUTATIONS = ["none", "none", "truncate", "flip a byte", "garbage after"]


def idx_dims(raw: bytes):
    """(dtype, dims, header length) when ``raw`` starts with a well-formed IDX header."""
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_DTYPES or not 1 <= raw[3] <= 4:
        return None
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        return None
    return (
        np.dtype(IDX_DTYPES[raw[2]]),
        struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim]),
        4 + 4 * ndim,
    )


@st.composite
def idx_files(draw):
    """(description, file bytes): a small valid IDX file, then one mutation, maybe gzipped."""
    code = draw(st.sampled_from([0x08, 0x08, 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]))
    dims = draw(st.lists(st.integers(0, 6), min_size=1, max_size=4))
    size = math.prod(dims) * np.dtype(IDX_DTYPES[code]).itemsize
    raw = bytearray(idx_header(code, dims) + draw(st.binary(min_size=size, max_size=size)))
    header = 4 + 4 * len(dims)
    mutation = draw(st.sampled_from(IDX_MUTATIONS))
    if mutation == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif mutation == "flip header bytes":
        for _ in range(draw(st.integers(1, 3))):
            raw[draw(st.integers(0, header - 1))] ^= draw(st.integers(1, 255))
    elif mutation == "bad magic":
        raw[:2] = draw(st.binary(min_size=2, max_size=2).map(lambda b: b or b"\0\1"))
    elif mutation == "bad dtype code":
        raw[2] = draw(st.integers(0, 255).filter(lambda c: c not in IDX_DTYPES))
    elif mutation == "bad dimension count":
        raw[3] = draw(st.sampled_from([0, 5, 255]) | st.integers(0, 255))
    elif mutation == "huge dims":
        huge = st.sampled_from([0, 1, 7, *HUGE_DIMS]) | st.integers(0, 2**32 - 1)
        new = draw(st.lists(huge, min_size=len(dims), max_size=len(dims)))
        raw[4:header] = struct.pack(f">{len(dims)}I", *new)
    elif mutation == "garbage after data":
        raw += draw(st.binary(min_size=1, max_size=64))
    elif mutation == "empty file":
        raw = bytearray()
    elif mutation == "random bytes":
        raw = bytearray(draw(st.binary(max_size=300)))
    if not draw(st.booleans()):
        return f"raw, {mutation}", bytes(raw)
    blob = bytearray(gzip.compress(bytes(raw)))
    gz = draw(st.sampled_from(GZIP_MUTATIONS))
    if gz == "truncate":
        blob = blob[: draw(st.integers(0, len(blob) - 1))]
    elif gz == "flip a byte":
        blob[draw(st.integers(0, len(blob) - 1))] ^= draw(st.integers(1, 255))
    elif gz == "garbage after":
        blob += draw(st.binary(min_size=1, max_size=32))
    return f"gzip ({gz}), {mutation}", bytes(blob)


# --- .npz ---------------------------------------------------------------------------------

NUMERIC = ["u1", "i1", "i4", "i8", "f2", "f4", "f8", "?"]
ODD = ["c8", "c16", "U3", "S3", "u8"]
NPZ_LAYOUTS = [
    "x",
    "x and y",
    "plausible x and y",
    "plausible x and y",
    "keras",
    "plausible keras",
    "no images",
    "empty archive",
    "short member",
    "single .npy",
]
NPZ_MUTATIONS = [
    "none",
    "none",
    "none",
    "truncate",
    "flip bytes",
    "garbage after",
    "random bytes",
    "empty file",
]


def elements(dtype: str, *, labels: bool):
    if dtype == "u8":
        return st.integers(0, 2**63 - 1) | st.integers(2**63, 2**64 - 1)  # beyond int64 too
    if np.dtype(dtype).kind != "f":
        return None
    width = np.dtype(dtype).itemsize * 8
    if labels:  # mostly class indices, some beyond int64 (2**63 and up)
        return (
            st.floats(-60000, 60000, width=width)
            | st.sampled_from([np.nan, np.inf, 0.5])
            | st.floats(width=width)
        )
    return st.floats(width=width)  # float64 beyond float32 too


@st.composite
def npz_arrays(
    draw, role: str, rows: int | None = None, tail: tuple | None = None, plausible=False
):
    """Images ("x") or labels ("y"); plausible ones have a numeric dtype and a usable shape."""
    dtype = draw(st.sampled_from(NUMERIC if plausible else NUMERIC * 2 + ODD))
    if plausible:
        ndim = 1 if role == "y" else draw(st.sampled_from([2, 3]))
        shape = [rows or draw(st.integers(1, 4))] + [
            draw(st.integers(1, 4)) for _ in range(ndim - 1)
        ]
        if tail is not None:
            shape = [shape[0], *tail]
    elif tail is not None and draw(st.booleans()):
        shape = (draw(st.integers(0, 4)), *tail)
    else:
        ndims = [2, 3, 2, 3, 0, 1, 4] if role == "x" else [1, 1, 1, 0, 2]
        shape = [draw(st.integers(0, 4)) for _ in range(draw(st.sampled_from(ndims)))]
        if rows is not None and shape and draw(st.integers(0, 3)):
            shape[0] = rows
    elements_ = elements(dtype, labels=role == "y")
    return draw(hnp.arrays(np.dtype(dtype), tuple(shape), elements=elements_))


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def short_member_npz(rows: int, cols: int, have: int) -> bytes:
    """An .npz whose x.npy header declares (rows, cols) uint8 but holds ``have`` bytes."""
    buf = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (rows, cols)}
    np.lib.format.write_array_header_1_0(buf, header)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("x.npy", buf.getvalue() + bytes(have))
    return out.getvalue()


@st.composite
def npz_files(draw):
    """(description, file bytes, arrays saved): arrays in some layout, then one mutation."""
    layout = draw(st.sampled_from(NPZ_LAYOUTS))
    arrays = {}
    plausible = layout.startswith("plausible")
    if layout in ("x", "x and y", "plausible x and y"):
        arrays["x"] = draw(npz_arrays("x", plausible=plausible))
        if layout != "x":
            rows = len(arrays["x"]) if arrays["x"].ndim else None
            arrays["y"] = draw(npz_arrays("y", rows, plausible=plausible))
    elif layout in ("keras", "plausible keras"):
        arrays["x_train"] = x = draw(npz_arrays("x", plausible=plausible))
        tail = x.shape[1:] if x.ndim else None
        if draw(st.booleans()):
            arrays["x_test"] = draw(npz_arrays("x", tail=tail, plausible=plausible))
        for split in ("train", "test"):
            if f"x_{split}" in arrays and draw(st.integers(0, 3)):
                rows = len(arrays[f"x_{split}"]) if arrays[f"x_{split}"].ndim else None
                arrays[f"y_{split}"] = draw(npz_arrays("y", rows, plausible=plausible))
    elif layout == "no images":
        arrays["images"] = draw(npz_arrays("x"))
    buf = io.BytesIO()
    if layout == "short member":
        rows, cols = draw(st.integers(1, 64)), draw(st.integers(1, 64))
        blob = bytearray(short_member_npz(rows, cols, draw(st.integers(0, rows * cols - 1))))
    elif layout == "single .npy":
        blob = bytearray(npy_bytes(draw(npz_arrays("x"))))
    else:
        save = np.savez_compressed if draw(st.booleans()) else np.savez
        save(buf, **arrays)
        blob = bytearray(buf.getvalue())
    mutation = draw(st.sampled_from(NPZ_MUTATIONS))
    if mutation == "truncate":
        blob = blob[: draw(st.integers(0, len(blob) - 1))]
    elif mutation == "flip bytes":
        for _ in range(draw(st.integers(1, 4))):
            blob[draw(st.integers(0, len(blob) - 1))] ^= draw(st.integers(1, 255))
    elif mutation == "garbage after":
        blob += draw(st.binary(min_size=1, max_size=64))
    elif mutation == "random bytes":
        blob = bytearray(draw(st.binary(max_size=400)))
    elif mutation == "empty file":
        blob = bytearray()
    return f"{layout}, {mutation}", bytes(blob), arrays if mutation == "none" else None
