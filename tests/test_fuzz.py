"""Property-based fuzzing of the readers (IDX, .npz, checkpoints) and of ``jaxae run``'s flags.

The contract under test (STYLE.md, item 7): bad input gives a ``JaxaeError`` whose message
names the file (in the CLI: one line on stderr and status 2), never another exception, a
traceback, or a large allocation; input that is fine loads and is valid.

The bugs this fuzz found are fixed; each is pinned by a test at the end of this file
("Was bug N"). Steer inputs away from a newly found bug only while it is open, naming it there
and pinning it with a strict ``xfail`` test; once fixed, drop both.

``pytest tests/test_fuzz.py --hypothesis-show-statistics`` lists, per test, the kinds of
input tried and what they gave (JaxaeError messages grouped) as hypothesis events.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import re
import struct
import tempfile
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from flax import serialization
from hypothesis import HealthCheck, event, given, settings

from jaxae.checkpoint import FILENAME, load_checkpoint
from jaxae.cli import main
from jaxae.config import ClusterConfig
from jaxae.data import load_dataset, read_idx, read_npz
from jaxae.errors import JaxaeError
from jaxae.stream import open_rows
from tests.helpers import save_trained

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


def idx_header(code: int, dims) -> bytes:
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


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


# --- checkpoints --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, trained):
    """(bytes of a real checkpoint, its decoded payload, the Checkpoint it loads as)."""
    folder = save_trained(tmp_path_factory.mktemp("checkpoint"), trained)
    data = (folder / FILENAME).read_bytes()
    return data, serialization.msgpack_restore(data), load_checkpoint(folder)


def load_mutated(data: bytes, reference) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FILENAME
        path.write_bytes(data)
        ckpt, _ = outcome(lambda: load_checkpoint(tmp), path)
    if ckpt is None:
        return
    event("loaded")
    tree = jax.tree_util.tree_structure
    assert tree(ckpt.state) == tree(reference.state)
    for got, want in zip(
        jax.tree_util.tree_leaves(ckpt.state), jax.tree_util.tree_leaves(reference.state)
    ):
        got, want = np.asarray(got), np.asarray(want)
        assert (got.shape, got.dtype) == (want.shape, want.dtype)


def msgpack_values(scalars=None):
    scalars = scalars or (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats()
        | st.text(max_size=8)
        | st.binary(max_size=8)
        | hnp.arrays(st.sampled_from(["f4", "i4", "u1", "f8"]), hnp.array_shapes(min_dims=0))
    )
    return st.recursive(
        scalars,
        lambda kids: (
            st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
        ),
        max_leaves=12,
    )


# Infinities and integers beyond float range too (json writes inf as Infinity).
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.sampled_from([10**400, -(10**400)])
    | st.floats()
    | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=8,
)


@fuzz(100)
@given(data=st.data())
def test_checkpoint_bytes_mutated(checkpoint, data):
    original, _, reference = checkpoint
    blob = bytearray(original)
    mutation = data.draw(
        st.sampled_from(["truncate", "flip bytes", "flip meta bytes", "garbage after", "random"])
    )
    event(f"input: {mutation}")
    if mutation == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif mutation.startswith("flip"):
        end = 400 if mutation == "flip meta bytes" else len(blob)
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, end - 1))] ^= data.draw(st.integers(1, 255))
    elif mutation == "garbage after":
        blob += data.draw(st.binary(min_size=1, max_size=64))
    else:
        blob = bytearray(data.draw(st.binary(max_size=512)))
    load_mutated(bytes(blob), reference)


@fuzz(80)
@given(data=st.data())
def test_checkpoint_of_wrong_structure(checkpoint, data):
    _, payload, reference = checkpoint
    shape = data.draw(st.sampled_from(["any value", "random meta", "real meta, random rest"]))
    event(f"input: {shape}")
    if shape == "any value":
        value = data.draw(msgpack_values())
    else:
        meta = payload["meta"] if shape.startswith("real") else json.dumps(data.draw(JSON_VALUES))
        rest = data.draw(
            st.dictionaries(st.sampled_from(["loss_history", "state"]), msgpack_values())
        )
        value = {"meta": meta, **rest}
    load_mutated(serialization.msgpack_serialize(value), reference)


def _meta_paths(meta: dict) -> list[tuple[str, ...]]:
    paths = [(k,) for k in meta]
    return paths + [(k, f) for k in meta if isinstance(meta[k], dict) for f in meta[k]]


@fuzz(120)
@given(data=st.data())
def test_checkpoint_meta_altered(checkpoint, data):
    _, payload, reference = checkpoint
    meta = json.loads(payload["meta"])
    op = data.draw(st.sampled_from(["delete", "wrong value", "extra field", "negative"]))
    if op == "delete":
        where = data.draw(st.sampled_from(_meta_paths(meta)))
    elif op == "extra field":
        parent = data.draw(
            st.sampled_from([(), *[(k,) for k in meta if isinstance(meta[k], dict)]])
        )
        where = (*parent, data.draw(st.text(min_size=1, max_size=8)))
    else:
        where = data.draw(st.sampled_from(_meta_paths(meta)))
    event(f"input: {op} {'.'.join(where[:-1] if op == 'extra field' else where) or 'meta'}")
    node = meta
    for key in where[:-1]:
        node = node[key]
    if op == "delete":
        del node[where[-1]]
    elif op == "negative":
        node[where[-1]] = data.draw(st.integers(-(2**40), -1))
    else:
        node[where[-1]] = data.draw(JSON_VALUES)
    altered = {**payload, "meta": json.dumps(meta)}
    load_mutated(serialization.msgpack_serialize(altered), reference)


def _state_paths(tree, prefix=()):
    if not isinstance(tree, dict):
        return [prefix]
    paths = [prefix] if prefix else []
    for key, value in tree.items():
        paths += _state_paths(value, (*prefix, key))
    return paths


@fuzz(120)
@given(data=st.data())
def test_checkpoint_state_altered(checkpoint, data):
    _, payload, reference = checkpoint
    state = serialization.msgpack_restore(serialization.msgpack_serialize(payload["state"]))
    where = data.draw(st.sampled_from(_state_paths(state)))
    node = state
    for key in where[:-1]:
        node = node[key]
    old = node[where[-1]]
    ops = ["replace", "delete", "extra key"] + (
        ["retype", "reshape"] if hasattr(old, "dtype") else []
    )
    op = data.draw(st.sampled_from(ops))
    event(f"input: {op} {'leaf' if hasattr(old, 'dtype') else 'subtree'}")
    if op == "replace":
        new = data.draw(msgpack_values())
        node[where[-1]] = new
    elif op == "delete":
        del node[where[-1]]
    elif op == "extra key":
        target = old if isinstance(old, dict) else node
        target[data.draw(st.text(min_size=1, max_size=8))] = data.draw(msgpack_values())
    elif op == "retype":
        dtype = data.draw(st.sampled_from(["f2", "f8", "i4", "u1", "?", "c8"]))
        node[where[-1]] = np.asarray(old).astype(dtype)
    else:
        old = np.asarray(old)
        node[where[-1]] = data.draw(
            st.sampled_from(
                [old.reshape(-1), old[None], old.reshape(-1)[:-1], np.zeros(0, old.dtype)]
            )
        )
    altered = {**payload, "state": state}
    load_mutated(serialization.msgpack_serialize(altered), reference)


# --- the CLI ------------------------------------------------------------------------------

BIG = 10**20
INVALID_INTS = st.sampled_from([0, -1, 2**31, 2**63, BIG]) | st.integers(max_value=0)
DATASETS = ["TEXT", "MISSING", "BAD IDX", "NAN NPZ", "", "/", "~", "/dev/null"]
# flag: (valid values, invalid ones). Valid values train a tiny model on 40 digits in batches
# of 4, shapes that compile once for the whole file (lr is traced, not compiled in).
RUN_FLAGS = {
    "--dataset": (st.just("digits"), st.sampled_from(DATASETS)),
    "--n": (st.just(40), INVALID_INTS | st.integers(1798, BIG)),
    "--epochs": (st.just(1), st.sampled_from([0, -1])),
    "--batch-size": (st.just(4), INVALID_INTS | st.integers(41, BIG)),
    "--lr": (
        st.sampled_from([0.01, 5e-324]) | st.floats(1e-6, 0.1),
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e30]) | st.floats(max_value=0),
    ),
    "--hidden": (st.just(4), INVALID_INTS),
    "--code-dim": (st.just(2), INVALID_INTS),
    "--clusters": (st.sampled_from([3, 1]), INVALID_INTS | st.integers(41, BIG)),
    "--n-init": (st.just(1), INVALID_INTS),
}
RUN_FILES = {"report.json", "checkpoint.msgpack", "clusters.png", "loss.png", "reconstructions.png"}


@st.composite
def run_flags(draw, tmp: Path, scenarios: list[str]):
    """(scenario, argv, the flag given an unparseable value or None)."""
    scenario = draw(st.sampled_from(scenarios))
    bad = set()
    if scenario == "one bad flag":
        bad = {draw(st.sampled_from(list(RUN_FLAGS)))}
    elif scenario == "several bad flags":
        bad = set(draw(st.lists(st.sampled_from(list(RUN_FLAGS)), min_size=2, unique=True)))
    flags = {f: draw(invalid if f in bad else valid) for f, (valid, invalid) in RUN_FLAGS.items()}
    dataset = flags["--dataset"]
    if dataset == "TEXT":
        text = st.text(max_size=20).filter(lambda s: s.strip().lower() not in ("digits", "mnist"))
        flags["--dataset"] = draw(text)
    elif dataset in ("MISSING", "BAD IDX", "NAN NPZ"):
        names = {"MISSING": "missing.npz", "BAD IDX": "bad.idx", "NAN NPZ": "nan.npz"}
        flags["--dataset"] = str(tmp / names[dataset])
    garbled = None
    if scenario == "unparseable":  # any string parses as a dataset
        garbled = draw(st.sampled_from([f for f in RUN_FLAGS if f != "--dataset"]))
        # --lr takes floats and comma-separated grids; the others take ints. Python 3.11's
        # argparse turns --epochs=-- into epochs=[], which main refuses like argparse would.
        unparseable = ["", "abc", "0x10", "-", "--", "1,x"]
        unparseable += [] if garbled == "--lr" else ["1.5", "1e3", "1,2"]
        flags[garbled] = draw(st.sampled_from(unparseable))
    argv = ["run", "--no-progress", "--out", str(tmp / "out"), "--data-dir", str(tmp / "cache")]
    argv += [f"{flag}={value}" for flag, value in flags.items()]
    return f"{scenario}{'' if len(bad) != 1 else ' ' + next(iter(bad))}", argv, garbled


def check_run(tmp: Path, scenario: str, argv: list[str], garbled: str | None) -> None:
    """Runs ``main(argv)``: a complete run folder, or one error line and no folder."""
    event(f"input: {scenario}")
    out, err = tmp / "out", io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        try:
            status = main(argv)
        except SystemExit as e:  # argparse: an unparseable value
            assert garbled is not None and e.code == 2, argv
            event(f"argparse error for {garbled}")
            return
    assert garbled is None, argv
    for w in caught:
        event(f"warning: {w.category.__name__}: {kind(str(w.message))[:60]}")
    err = err.getvalue()
    assert status in (0, 2), (argv, status, err)
    if status == 2:
        assert err.count("\n") == 1 and err.endswith("\n"), (argv, err)
        assert err.startswith("jaxae run: error: ") and "Traceback" not in err, (argv, err)
        assert not out.exists(), argv
        event(f"status 2: {kind(err.removeprefix('jaxae run: error: ').strip(), tmp)}")
    else:
        assert RUN_FILES <= {p.name for p in out.iterdir()}, argv
        json.loads((out / "report.json").read_text())
        event("status 0: a complete run folder")
    assert not list(tmp.glob(".out*")), argv  # nothing half-written beside it


@contextlib.contextmanager
def run_sandbox():
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "bad.idx").write_bytes(b"\x12\x34\x56\x78" + bytes(100))
        np.savez(tmp / "nan.npz", x=np.full((10, 4), np.nan))
        yield tmp


# Two tests, so that a known share of the examples trains (a few seconds each).
@fuzz(2)
@given(data=st.data())
def test_run_with_valid_flags_gives_a_run_or_one_error_line(data):
    with run_sandbox() as tmp:
        check_run(tmp, *data.draw(run_flags(tmp, ["all valid"])))


@fuzz(50)
@given(data=st.data())
def test_run_with_bad_flags_gives_one_error_line(data):
    with run_sandbox() as tmp:
        scenarios = ["one bad flag", "one bad flag", "several bad flags", "unparseable"]
        check_run(tmp, *data.draw(run_flags(tmp, scenarios)))


# --- bugs the fuzz found, now fixed: each test pins its fix -----------------------------


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


def test_checkpoint_loss_history_beyond_float32(tmp_path, checkpoint):
    """Was bug 5, in checkpoints: load_checkpoint casts loss_history to float32 without
    np.errstate, so values beyond float32 warn (an exception under -W error).
    """
    _, payload, _ = checkpoint
    altered = {**payload, "loss_history": np.array([1e300, 0.0, 0.0])}
    (tmp_path / FILENAME).write_bytes(serialization.msgpack_serialize(altered))
    with contextlib.suppress(JaxaeError):
        load_checkpoint(tmp_path)


def _rewrite_checkpoint(tmp_path, payload, *, meta=None, state=None) -> Path:
    altered = dict(payload)
    if meta is not None:
        altered["meta"] = meta
    if state is not None:
        altered["state"] = state
    (tmp_path / FILENAME).write_bytes(serialization.msgpack_serialize(altered))
    return tmp_path / FILENAME


@pytest.mark.parametrize(
    "field, value",
    [
        ("jaxae_version", None),
        ("epoch", "Infinity"),
        ("chunk", "1e999"),
        ("selected", "-Infinity"),
        ("models", f"[[0, {10**400}]]"),
    ],
)
def test_checkpoint_meta_values(tmp_path, checkpoint, field, value):
    """Was bugs 7 and 8: load_checkpoint reads meta['jaxae_version'] outside its try (KeyError) and
    does not catch the OverflowError of int(inf) or float(10**400).
    """
    _, payload, _ = checkpoint
    meta = json.loads(payload["meta"])
    if value is None:
        del meta[field]
        text = json.dumps(meta)
    else:
        meta[field] = "PLACEHOLDER"
        text = json.dumps(meta).replace('"PLACEHOLDER"', value)
    path = _rewrite_checkpoint(tmp_path, payload, meta=text)
    with pytest.raises(JaxaeError, match=re.escape(str(path))):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "change", ["last leaf None", "last leaf {}", "leaf in a list", "leaf in a dict"]
)
def test_checkpoint_tree_is_compared(tmp_path, checkpoint, change):
    """Was bug 9: _check_like zips the state's leaves with the template's, so a leaf wrapped in a
    list or dict, or a last leaf that is None, {} or [], loads with the wrong tree; compare
    jax.tree_util.tree_structure(state) with the template's first.
    """
    _, payload, reference = checkpoint
    state = serialization.msgpack_restore(serialization.msgpack_serialize(payload["state"]))
    keys = [k for k, _ in jax.tree_util.tree_leaves_with_path(reference.state)]
    where = _dict_path(keys[-1] if change.startswith("last") else keys[0])
    leaf = _get(state, where)
    new = {"last leaf None": None, "last leaf {}": {}, "leaf in a list": [leaf]}.get(
        change, {"a": leaf}
    )
    _get(state, where[:-1])[where[-1]] = new
    _rewrite_checkpoint(tmp_path, payload, state=state)
    try:
        ckpt = load_checkpoint(tmp_path)
    except JaxaeError as e:
        assert "damaged" in str(e)
        return
    tree = jax.tree_util.tree_structure
    assert tree(ckpt.state) == tree(reference.state)  # loaded: then with the template's tree


def _dict_path(keys) -> tuple[str, ...]:
    """A JAX key path as the keys of flax's state dict (fields by name, tuple items "0", ...)."""
    tu = jax.tree_util
    return tuple(
        k.name
        if isinstance(k, tu.GetAttrKey)
        else str(k.idx)
        if isinstance(k, tu.SequenceKey)
        else k.key
        for k in keys
    )


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _run_status(tmp_path, *flags) -> tuple[int, str]:
    err = io.StringIO()
    argv = ["run", "--no-progress", "--out", str(tmp_path / "out"), "--n", "40", "--epochs", "1"]
    argv += ["--batch-size", "4", "--hidden", "4", "--code-dim", "2", "--clusters", "3"]
    argv += ["--n-init", "1", *flags]
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    return status, err.getvalue()


@pytest.mark.parametrize("seed", [-1, 2**70])
def test_cli_seed_out_of_range(tmp_path, seed):
    """Was bug 10: --seed is not range-checked: -1 or 2**32 train, then KMeans raises
    InvalidParameterError; 2**70 raises OverflowError in jax.random.key; tracebacks.
    """
    status, err = _run_status(tmp_path, f"--seed={seed}")
    assert status == 2 and err.count("\n") == 1


@pytest.mark.parametrize("flag", ["--hidden", "--code-dim"])
@pytest.mark.parametrize("size", [2**31, 10**20])
def test_cli_huge_layers_are_one_error_line(tmp_path, flag, size):
    """Was bug 11: 10**20 gave a traceback from JAX, 2**31 asked XLA for 512 GiB and hung."""
    status, err = _run_status(tmp_path, f"{flag}={size}")
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_n_init_has_an_upper_bound():
    """Was bug 12: n_init has no upper bound: --n-init 10**20 trains, then KMeans loops
    (practically) forever; cap it like ModelConfig caps the parameter count.
    """
    with pytest.raises(JaxaeError):
        ClusterConfig(n_init=10**20)
