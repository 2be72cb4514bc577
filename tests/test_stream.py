import gzip
import os
import threading
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae.config import ModelConfig
from jaxae.encoder import Encoder, compiled_programs
from jaxae.errors import JaxaeError
from jaxae.model import build_model
from jaxae.stream import encode_file, is_streamable, open_rows
from tests.helpers import idx_bytes, idx_header, write_idx

# 4 million 28 x 28 images (3.1 GB) in a file of a few dozen bytes.
HUGE_HEADER = idx_header(0x08, (4_000_000, 28, 28))


def make_encoder(input_dim: int) -> Encoder:
    """Random (untrained) parameters: streaming must match encode() whatever they are."""
    config = ModelConfig.tiny(input_dim=input_dim)
    # Jitted: eager Flax init compiles op by op, seconds on a small CPU.
    params = jax.jit(build_model(config).init)(jax.random.key(0), jnp.zeros((1, input_dim)))
    return Encoder(params, config)


@pytest.fixture(scope="module")
def encoder():
    return make_encoder(784)


@pytest.fixture(scope="module")
def encoder64():
    return make_encoder(64)


def images(n: int, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """(n, 28, 28) random pixels 0-255."""
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28)).astype(dtype)


def write(path, kind: str, array: np.ndarray):
    if kind == "npy":
        np.save(path, array)
        return path
    return write_idx(path, array, compress=kind == "gz")


CASES = {
    "npy-float32-2d": ("npy", lambda n: images(n, np.float32).reshape(n, 784)),
    "npy-uint8-3d": ("npy", lambda n: images(n)),
    "idx-raw-uint8": ("idx", lambda n: images(n)),
    "idx-gzip-uint8": ("gz", lambda n: images(n)),
    "idx-gzip-float32-big-endian": ("gz", lambda n: images(n, np.float32)),
}


@pytest.mark.parametrize("n", [2500, 700], ids=["N=2500", "N=700"])
@pytest.mark.parametrize("case", CASES)
def test_streamed_codes_match_in_memory(encoder, tmp_path, case, n):
    # chunk_rows=1000: 2500 rows are two full chunks and a short one, 700 a single short one.
    kind, make = CASES[case]
    pixels = make(n)
    path = write(tmp_path / f"in.{kind}", kind, pixels)
    out = tmp_path / "codes.npy"

    assert is_streamable(path)
    assert encode_file(encoder, path, out, chunk_rows=1000, progress=False) == (n, 8)

    codes = np.load(out)
    assert codes.dtype == np.float32
    expected = encoder.encode(pixels.reshape(n, 784))
    # Chunks run in other bucket sizes than the whole array: the same maths, rounded apart.
    np.testing.assert_allclose(codes, expected, rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.npy", f"in.{kind}"]


def test_first_n_rows_and_progress_bar(encoder, tmp_path):
    pixels = images(1200)
    path = write(tmp_path / "in.npy", "npy", pixels)
    out = tmp_path / "codes.npy"
    assert encode_file(encoder, path, out, n=1100, chunk_rows=500, progress=True) == (1100, 8)
    np.testing.assert_allclose(np.load(out), encoder.encode(pixels[:1100]), rtol=1e-5, atol=1e-6)


def test_at_most_two_programs(encoder, tmp_path):
    # Sizes no other test uses: chunks of 777 (bucket 832) and a last one of 446 (bucket 448).
    path = write(tmp_path / "in.npy", "npy", images(2000))
    before = compiled_programs()
    encode_file(encoder, path, tmp_path / "codes.npy", chunk_rows=777, progress=False)
    assert compiled_programs() <= before + 2
    after = compiled_programs()
    encode_file(encoder, path, tmp_path / "codes.npy", chunk_rows=777, progress=False)
    assert compiled_programs() == after


def test_memory_is_bounded_by_the_chunk_not_the_file(encoder64, tmp_path):
    encoder = encoder64
    n, chunk = 200_000, 4096
    pixels = np.random.default_rng(0).integers(0, 256, (n, 64), dtype=np.uint8)
    path = tmp_path / "big.npy"
    np.save(path, pixels)
    del pixels
    file_bytes = path.stat().st_size  # 12.8 MB
    out = tmp_path / "codes.npy"
    # Compile both programs first: the measurement is about data, not XLA's compiler.
    encoder.encode(np.zeros((chunk, 64), np.uint8))
    encoder.encode(np.zeros((n % chunk, 64), np.uint8))

    # tracemalloc sees NumPy's buffers and Python objects; not pages of the mapped
    # files (the OS page cache) and not XLA's own buffers (device memory, or host
    # memory on the CPU backend), which bench/test_bench_stream.py measures as RSS.
    tracemalloc.start()
    try:
        rows = encode_file(encoder, path, out, chunk_rows=chunk, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert rows == (n, 8)
    codes = np.load(out, mmap_mode="r")
    assert codes.shape == (n, 8) and codes.dtype == np.float32
    # Four chunk-sized buffers of 4096 x 64 bytes (jaxae/stream.py's bound) and the
    # codes: about 1.3 MB against 12.8 MB.
    assert peak < file_bytes / 4, f"peak {peak / 1e6:.1f} MB for a {file_bytes / 1e6:.1f} MB file"
    assert peak < 8 * chunk * 64, f"peak {peak / 1e6:.2f} MB for chunks of {chunk * 64} bytes"
    np.testing.assert_allclose(
        codes[-100:], encoder.encode(np.load(path, mmap_mode="r")[-100:]), rtol=1e-5, atol=1e-6
    )


def test_is_streamable(tmp_path):
    np.savez(tmp_path / "a.npz", x=images(3))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "text.gz").write_bytes(gzip.compress(b"hello"))
    assert not is_streamable(tmp_path / "a.npz")
    assert not is_streamable(tmp_path / "notes.txt")
    assert not is_streamable(tmp_path / "text.gz")
    assert not is_streamable(tmp_path)
    assert not is_streamable("digits")
    assert is_streamable(write(tmp_path / "a.npy", "npy", images(3)))


def test_open_rows_reads_any_slice(tmp_path):
    pixels = images(50, np.float32)
    for kind in ("npy", "idx", "gz"):
        with open_rows(write(tmp_path / f"in.{kind}", kind, pixels)) as rows:
            assert (rows.n_rows, rows.width, rows.dtype) == (50, 784, np.float32)
            np.testing.assert_array_equal(rows.read(10, 20), pixels[10:20].reshape(10, 784))
            np.testing.assert_array_equal(rows.read(0, 5), pixels[:5].reshape(5, 784))


def assert_fails(encoder, path, out, match, **kwargs):
    with pytest.raises(JaxaeError, match=match):
        encode_file(encoder, path, out, progress=False, **kwargs)
    # Nothing written and no temporary file left behind.
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))


def test_width_mismatch(encoder64, tmp_path):
    path = write(tmp_path / "in.npy", "npy", images(10))
    assert_fails(
        encoder64,
        path,
        tmp_path / "c.npy",
        "rows have 784 values but this model was trained on 64",
    )


def test_nan_row_names_the_rows_and_leaves_the_old_output(encoder, tmp_path):
    pixels = images(2500, np.float32)
    pixels[2100, 3, 4] = np.nan
    path = write(tmp_path / "in.npy", "npy", pixels)
    assert_fails(
        encoder, path, tmp_path / "c.npy", r"rows 2000-2499, first row 2100", chunk_rows=1000
    )
    out = tmp_path / "old.npy"
    np.save(out, np.zeros(3))
    with pytest.raises(JaxaeError, match="non-finite"):
        encode_file(encoder, path, out, chunk_rows=1000, progress=False)
    np.testing.assert_array_equal(np.load(out), np.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "old.npy"]


def test_float64_beyond_float32_is_non_finite(encoder, tmp_path):
    pixels = images(20, np.float64)
    pixels[7, 0, 0] = 1e300
    path = write(tmp_path / "in.npy", "npy", pixels)
    assert_fails(encoder, path, tmp_path / "c.npy", "first row 7")


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("truncated raw IDX", idx_bytes(images(10))[:-5], "truncated: header declares 7840 bytes"),
        ("raw IDX with extra bytes", idx_bytes(images(10)) + b"\0", "1 unexpected bytes"),
        ("bad magic", b"\x01\x02\x08\x03" + bytes(100), "not an IDX file"),
        ("IDX labels", idx_bytes(np.zeros(10, np.uint8))[:4] + bytes(14), "declares 1 dimensions"),
        ("truncated gzip IDX", gzip.compress(idx_bytes(images(10)))[:-50], "corrupt gzip"),
        ("gzip IDX short of data", gzip.compress(idx_bytes(images(10))[:-784]), "truncated"),
        ("gzip IDX with extra bytes", gzip.compress(idx_bytes(images(10)) + b"x"), "unexpected"),
        ("gzip IDX header declaring GBs", gzip.compress(HUGE_HEADER), "more than its"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",  # never the bytes: gzip stamps the time
)
def test_malformed_idx(encoder, tmp_path, name, content, match):
    path = tmp_path / "in"
    path.write_bytes(content)
    assert_fails(encoder, path, tmp_path / "c.npy", match)


def test_malformed_npy(encoder, tmp_path):
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([[1, "a"]], dtype=object), allow_pickle=True)
    assert_fails(encoder, objects, tmp_path / "c.npy", r"not a \.npy of numbers")
    flat = write(tmp_path / "flat.npy", "npy", np.zeros(784, np.uint8))
    assert_fails(encoder, flat, tmp_path / "c.npy", r"shape \(784,\)")
    empty = write(tmp_path / "empty.npy", "npy", np.zeros((0, 784), np.uint8))
    assert_fails(encoder, empty, tmp_path / "c.npy", "no images")
    truncated = write(tmp_path / "truncated.npy", "npy", images(10))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    assert_fails(encoder, truncated, tmp_path / "c.npy", "mmap length is greater than file size")
    words = write(tmp_path / "words.npy", "npy", np.full((2, 784), "a"))
    assert_fails(encoder, words, tmp_path / "c.npy", "dtype <U1")


def test_bad_arguments_and_paths(encoder, tmp_path):
    path = write(tmp_path / "in.npy", "npy", images(10))
    assert_fails(encoder, tmp_path / "missing.npy", tmp_path / "c.npy", "does not exist")
    too_many = r"n=11 is larger than the 10 images in .*in.npy: pass n=10 or less"
    assert_fails(encoder, path, tmp_path / "c.npy", too_many, n=11)
    assert_fails(encoder, path, tmp_path / "c.npy", "n must be at least 1, got 0: pass n=1", n=0)
    assert_fails(encoder, path, tmp_path / "c.npy", "n must be an integer, got True", n=True)
    assert_fails(encoder, path, tmp_path / "c.npy", "chunk_rows must be at least 1", chunk_rows=0)
    assert_fails(encoder, path, tmp_path / "no" / "c.npy", "cannot write")


# --- the output is the input, a FIFO input, bool images, a failed clean-up -------------------


@pytest.mark.parametrize("link", ["same path", "symlink", "hard link", "relative path"])
def test_output_that_is_the_input_is_refused(encoder, tmp_path, monkeypatch, link):
    path = write(tmp_path / "X.npy", "npy", images(10))
    before = path.read_bytes()
    out = {"same path": path, "symlink": tmp_path / "link.npy", "hard link": tmp_path / "hard.npy"}
    out = out.get(link, "X.npy")
    if link == "symlink":
        out.symlink_to(path)
    elif link == "hard link":
        os.link(path, out)
    elif link == "relative path":
        monkeypatch.chdir(tmp_path)
    with pytest.raises(JaxaeError, match=r"out_path=.* is the input file .*X\.npy") as info:
        encode_file(encoder, path, out, progress=False)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before  # the images are still there
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_fifo_input_is_refused_at_once(encoder, tmp_path):
    fifo = tmp_path / "in.npy"
    os.mkfifo(fifo)
    assert not is_streamable(fifo)  # decided without blocking: the CLI asks this first
    done, errors = threading.Event(), []

    def run():
        try:
            encode_file(encoder, fifo, tmp_path / "c.npy", progress=False)
        except JaxaeError as e:
            errors.append(str(e))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(10), "encode_file blocked on a FIFO"
    assert len(errors) == 1 and "FIFO" in errors[0] and str(fifo) in errors[0]
    assert not (tmp_path / "c.npy").exists()


def test_bool_images_encode_as_zeros_and_ones(encoder, tmp_path):
    pixels = np.random.default_rng(2).random((300, 784)) > 0.5
    path = write(tmp_path / "b.npy", "npy", pixels)
    encode_file(encoder, path, tmp_path / "c.npy", chunk_rows=128, progress=False)
    expected = encoder.encode(pixels.astype(np.float32))
    np.testing.assert_allclose(np.load(tmp_path / "c.npy"), expected, rtol=1e-5, atol=1e-6)


def test_failed_cleanup_does_not_hide_the_error(encoder, tmp_path, monkeypatch):
    # On a read-only file system unlink raises (EROFS) even for a missing file: the user
    # must see why the write failed, not the cleanup's error.
    path = write(tmp_path / "in.npy", "npy", images(10))
    real_unlink = type(path).unlink

    def unlink(self, missing_ok=False):
        if ".tmp-" in self.name:
            raise OSError(30, "Read-only file system")
        real_unlink(self, missing_ok=missing_ok)

    def no_space(*args, **kwargs):  # a full disk, as posix_fallocate reports it
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(path), "unlink", unlink)
    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(JaxaeError, match=r"cannot write .*c\.npy \(No space left on device\)"):
        encode_file(encoder, path, tmp_path / "c.npy", progress=False)
