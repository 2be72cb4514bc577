"""Encoding image files larger than memory, a chunk of rows at a time.

:func:`encode_file` reads rows from a ``.npy`` (memory-mapped) or an IDX images
file (raw: memory-mapped; gzip: decompressed a chunk at a time), encodes each
chunk with :meth:`jaxae.Encoder.encode`, and writes the codes into a
memory-mapped float32 ``.npy`` that replaces the target only once it is
complete. :func:`open_rows` gives the row reader on its own.

Memory bound: peak memory depends on the chunk, not on the number of rows.
With the default 65,536-row chunk, 784 pixels and 100-value codes it is about
0.5 GB for uint8 pixels (measured on the CPU backend: 0.52 GB at 1,000,000
rows, against 6 GB for encoding the same file in memory) and at most about
1.2 GB for float32 pixels, plus the operating system's page cache for the
memory-mapped input and output, which it reclaims as needed. Per row, with
``D`` pixels of ``b`` bytes each (1 for uint8, 4 for float32) and the default
hidden width 256 and code 100:

- host (NumPy): ``4 * D * b`` bytes: the chunk being encoded, the next one
  (read ahead on a thread), the encoder's padded copy, and the previous padded
  copy, which JAX's CPU backend releases only at the next garbage collection;
  plus ``D`` bytes for the finiteness check of float input. uint8: 206 MB;
  float32: 873 MB.
- encoder (XLA buffers; host memory on the CPU backend, device memory on a
  GPU): ``4 * (D + 256 + 100)`` bytes for standardised pixels, hidden layer and
  codes: 299 MB.

Both scale linearly with ``chunk_rows``: pass a smaller one to lower them.

Example::

    ae = jaxae.load("runs/my-run")
    rows, code_dim = encode_file(ae, "images.npy", "codes.npy")
    codes = np.load("codes.npy", mmap_mode="r")      # (rows, code_dim) float32
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import math
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jaxae.data import _GZIP_MAGIC, _one_line, read_idx_header
from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError

_NPY_MAGIC = b"\x93NUMPY"
# Deflate cannot compress better than 1032:1, so a gzip file of S bytes holds
# at most 1032 * S: a corrupt IDX header that declares more is caught up front.
_DEFLATE_MAX_RATIO = 1032
_NO_FALLOCATE = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RowSource:
    """Rows of an image file, read a slice at a time without loading the file.

    Attributes:
      path: the file.
      n_rows: number of rows (images).
      width: values per row (``H * W`` for image grids).
      dtype: the stored dtype, in native byte order.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: Path, n_rows: int, width: int, dtype: np.dtype):
        self.path = path
        self.n_rows = n_rows
        self.width = width
        self.dtype = np.dtype(dtype)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new ``(stop - start, width)`` array of :attr:`dtype`."""
        raise NotImplementedError

    def verify_end(self) -> None:
        """Raises :class:`JaxaeError` if the file turns out corrupt past the rows read."""

    def close(self) -> None:
        pass

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _ArraySource(RowSource):
    """A memory-mapped ``(N, ...)`` array: a ``.npy``, or a raw IDX file."""

    def __init__(self, path: Path, array: np.ndarray):
        width = math.prod(array.shape[1:])
        super().__init__(path, array.shape[0], width, array.dtype.newbyteorder("="))
        self._array = array.reshape(array.shape[0], self.width)

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.array(self._array[start:stop], dtype=self.dtype, order="C")

    def close(self) -> None:
        self._array = None  # unmaps once the last view is gone


class _GzipIdxSource(RowSource):
    """A gzip IDX file, decompressed a slice at a time (forward reads are cheap)."""

    def __init__(self, path, raw, n_rows, width, stored: np.dtype, offset: int):
        super().__init__(path, n_rows, width, stored.newbyteorder("="))
        self._raw = raw
        self._file = gzip.GzipFile(fileobj=raw)
        self._stored = stored
        self._offset = offset

    def read(self, start: int, stop: int) -> np.ndarray:
        row_bytes = self.width * self._stored.itemsize
        rows = np.empty((stop - start, self.width), self._stored)
        buf = memoryview(rows).cast("B")
        got = 0
        with _gzip_errors(self.path):
            self._file.seek(self._offset + start * row_bytes)
            # Decompressed straight into the array: no second copy of the chunk.
            while got < len(buf) and (count := self._file.readinto(buf[got:])):
                got += count
        if got < len(buf):
            raise JaxaeError(
                f"{self.path} is truncated: header declares {self.n_rows * row_bytes} bytes "
                f"of data, found {start * row_bytes + got}: download it again"
            )
        return rows if self._stored.isnative else rows.astype(self.dtype)

    def verify_end(self) -> None:
        # Reading to the end also checks the gzip CRC and length trailer.
        with _gzip_errors(self.path):
            self._file.seek(self._offset + self.n_rows * self.width * self._stored.itemsize)
            extra = 0
            while chunk := self._file.read(2**20):
                extra += len(chunk)
        if extra:
            raise JaxaeError(
                f"{self.path} has {extra} unexpected bytes after the data: the file is corrupt; "
                "download it again"
            )

    def close(self) -> None:
        self._file.close()
        self._raw.close()


def is_streamable(path: str | os.PathLike) -> bool:
    """Whether :func:`encode_file` reads ``path``: a ``.npy`` or an IDX file, raw or gzip.

    Decided from the first bytes, not the name; folders, ``.npz`` archives and
    dataset names (``digits``, ``mnist``) are not streamable.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
            if head[:2] == _GZIP_MAGIC:
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as g:
                    head = g.read(4)
            elif head.startswith(_NPY_MAGIC):
                return True
    except (OSError, EOFError, zlib.error):
        return False
    return len(head) >= 4 and head[:2] == b"\0\0"


def open_rows(path: str | os.PathLike) -> RowSource:
    """Opens a ``.npy`` or IDX images file for reading rows without loading it.

    A ``.npy`` must hold a numeric ``(N, D)`` or ``(N, H, W)`` array; an IDX
    file 2 to 4 dimensions, rows first. ``.npy`` and raw IDX files are
    memory-mapped; gzip IDX files are decompressed as rows are read.

    Returns:
      A :class:`RowSource`; ``read(start, stop)`` gives ``(stop - start, width)``
      rows in the stored dtype (native byte order).

    Raises:
      JaxaeError: the file is missing, unreadable, neither ``.npy`` nor IDX,
        malformed, truncated, has bytes after the data, or is not numeric rows.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
            if head.startswith(_NPY_MAGIC):
                return _open_npy(path)
            if head[:2] == _GZIP_MAGIC:
                return _open_gzip_idx(path)
            f.seek(0)
            n_rows, width, stored, offset = _read_idx_header(f, path)
            size = os.fstat(f.fileno()).st_size
        declared = n_rows * width * stored.itemsize
        if size - offset < declared:
            raise JaxaeError(
                f"{path} is truncated: header declares {declared} bytes of data, "
                f"found {size - offset}: download it again"
            )
        if size - offset > declared:
            raise JaxaeError(
                f"{path} has {size - offset - declared} unexpected bytes after the data: "
                "the file is corrupt; download it again"
            )
        array = np.memmap(path, dtype=stored, mode="r", offset=offset, shape=(n_rows, width))
        return _ArraySource(path, array)
    except FileNotFoundError as e:
        raise JaxaeError(f"{path} does not exist: check the path") from e
    except OSError as e:
        raise JaxaeError(
            f"cannot read {path} ({e.strerror or _one_line(e)}): pass a readable .npy or IDX file"
        ) from e


def encode_file(
    encoder: Encoder,
    input_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    n: int | None = None,
    chunk_rows: int = 65536,
    progress: bool = True,
) -> tuple[int, int]:
    """Encodes the rows of a ``.npy`` or IDX file into a ``.npy`` of codes, a chunk at a time.

    Memory stays bounded whatever the file's length (see the module
    docstring). Each chunk goes through ``encoder.encode`` as stored when it is
    uint8, int8 or float32 (uint8 sends a quarter of the bytes to the device)
    and as float32 otherwise. A fixed ``chunk_rows`` means at most two compiled
    programs: full chunks and the last, shorter one. The next chunk is read on
    a background thread while the current one is encoded.

    Args:
      encoder: the trained encoder.
      input_path: a ``.npy`` holding ``(N, D)`` or ``(N, H, W)`` numbers, or
        an IDX images file, raw or gzip; see :func:`open_rows`.
      out_path: the ``.npy`` to write, ``(N, code_dim)`` float32. Codes go to a
        temporary file next to it, renamed to ``out_path`` once complete: the
        target is never half-written, and an error leaves no temporary file.
      n: encode only the first ``n`` rows; all when ``None``.
      chunk_rows: rows per chunk; memory grows with it, not with ``N``.
      progress: show a tqdm bar over rows (after 1 s).

    Returns:
      ``(rows, code_dim)``, the shape written.

    Raises:
      JaxaeError: unreadable or malformed input (see :func:`open_rows`), rows
        of the wrong width, non-finite values (the message names the rows),
        bad ``n`` or ``chunk_rows``, or an output that cannot be written.
    """
    if chunk_rows < 1:
        raise JaxaeError(f"chunk_rows must be at least 1, got {chunk_rows}")
    out_path = Path(out_path)
    with open_rows(input_path) as source:
        rows = _checked_rows(source, encoder, n)
        code_dim = encoder.code_dim
        tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
        try:
            with _write_errors(out_path):
                out = _open_output(tmp, (rows, code_dim))
            bounds = [(s, min(s + chunk_rows, rows)) for s in range(0, rows, chunk_rows)]
            with (
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxae-read") as reader,
                tqdm(
                    total=rows,
                    unit="row",
                    unit_scale=True,
                    delay=1,
                    disable=not progress,
                    desc=f"encoding {source.path.name}",
                ) as bar,
            ):
                pending = reader.submit(_prepared, source, *bounds[0])
                for i, (start, stop) in enumerate(bounds):
                    chunk = pending.result()
                    if i + 1 < len(bounds):
                        pending = reader.submit(_prepared, source, *bounds[i + 1])
                    out[start:stop] = encoder.encode(chunk)
                    del chunk  # dropped before the next is taken: two chunks in flight at most
                    bar.update(stop - start)
            if rows == source.n_rows:
                source.verify_end()
            with _write_errors(out_path):
                out.flush()
                del out  # unmapped before the rename
                os.replace(tmp, out_path)
        finally:
            tmp.unlink(missing_ok=True)
    return rows, code_dim


def _open_npy(path: Path) -> RowSource:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:  # object (pickled) arrays, malformed headers
        raise JaxaeError(
            f"{path} is not a .npy of numbers ({_one_line(e)}): "
            "save images with np.save(path, images) as uint8 or float32"
        ) from e
    if array.dtype.kind not in "biuf":
        raise JaxaeError(f"images in {path} have dtype {array.dtype}: store numeric pixels")
    if array.ndim not in (2, 3):
        raise JaxaeError(
            f"images in {path} have shape {array.shape}: store them as (N, D) or (N, H, W)"
        )
    return _ArraySource(path, array)


def _open_gzip_idx(path: Path) -> RowSource:
    raw = open(path, "rb")
    try:
        size = os.fstat(raw.fileno()).st_size
        with _gzip_errors(path), gzip.GzipFile(fileobj=raw) as head:
            n_rows, width, stored, offset = _read_idx_header(head, path)
        declared = n_rows * width * stored.itemsize
        if offset + declared > _DEFLATE_MAX_RATIO * size:
            raise JaxaeError(
                f"{path} declares {declared} bytes of data, more than its {size} compressed "
                "bytes can hold: the header is corrupt; download the file again"
            )
        raw.seek(0)
        return _GzipIdxSource(path, raw, n_rows, width, stored, offset)
    except BaseException:
        raw.close()
        raise


def _read_idx_header(f, path: Path) -> tuple[int, int, np.dtype, int]:
    """Parses an IDX images header: ``(rows, values per row, stored dtype, data offset)``.

    No size limit beyond what NumPy can address: streaming is for big files.
    """
    dims, dtype = read_idx_header(f, path, max_bytes=2**63 - 1)
    if len(dims) < 2:
        raise JaxaeError(
            f"{path} declares 1 dimensions: an IDX images file needs 2 to 4 "
            "(a labels file has 1); pass the images file"
        )
    return dims[0], math.prod(dims[1:]), dtype, 4 + 4 * len(dims)


def _checked_rows(source: RowSource, encoder: Encoder, n: int | None) -> int:
    expected = encoder.model_config.input_dim
    if source.width != expected:
        raise JaxaeError(
            f"input rows have {source.width} values but this model was trained on {expected}: "
            f"pass images of the training data's size ({source.path})"
        )
    if source.n_rows == 0:
        raise JaxaeError(f"{source.path} has no images: pass a non-empty file")
    if n is None:
        return source.n_rows
    if n < 1:
        raise JaxaeError(f"n must be at least 1, got {n}: pass --n 1 or more")
    if n > source.n_rows:
        raise JaxaeError(
            f"n={n} is larger than the {source.n_rows} images in {source.path}: "
            f"pass --n {source.n_rows} or less"
        )
    return n


def _prepared(source: RowSource, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` ready for the encoder: uint8, int8 or float32, and finite."""
    chunk = source.read(start, stop)
    if chunk.dtype not in (np.uint8, np.int8, np.float32):
        # Cast on the host: float64 beyond float32's range becomes inf and is caught
        # below, and int64 is not silently wrapped to int32 on the device.
        with np.errstate(over="ignore"):
            chunk = chunk.astype(np.float32)
    if chunk.dtype == np.float32 and not np.isfinite(chunk).all():
        bad = start + np.flatnonzero(~np.isfinite(chunk).all(axis=1))
        raise JaxaeError(
            f"{source.path} has non-finite values (NaN or inf) in {len(bad)} of rows "
            f"{start}-{stop - 1}, first row {bad[0]}: clean the data "
            "(e.g. np.nan_to_num) before encoding it"
        )
    return chunk


def _open_output(tmp: Path, shape: tuple[int, int]) -> np.memmap:
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    # Reserve the blocks now: on a full disk this fails with ENOSPC, where a sparse
    # file would kill the process with SIGBUS when a mapped page is first written.
    if hasattr(os, "posix_fallocate"):
        with open(tmp, "r+b") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            except OSError as e:
                if e.errno not in _NO_FALLOCATE:  # the file system cannot reserve: go on
                    raise
    return out


@contextlib.contextmanager
def _write_errors(out_path: Path):
    try:
        yield
    except OSError as e:
        raise JaxaeError(
            f"cannot write {out_path} ({e.strerror or _one_line(e)}): "
            "pass a path in an existing, writable folder with enough free space"
        ) from e


@contextlib.contextmanager
def _gzip_errors(path: Path):
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise JaxaeError(
            f"{path} is a corrupt gzip file ({_one_line(e)}): "
            "download it again or pass the raw file"
        ) from e
