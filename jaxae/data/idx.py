"""MNIST's IDX files: one header parser and one row reader, for loading and for streaming.

An IDX file is 2 zero bytes, a dtype code, the number of dimensions, each
dimension as a big-endian uint32, then the data, big-endian, row-major; MNIST
ships them gzip-compressed. :func:`open_idx` gives a :class:`RowSource` over
one (raw files memory-mapped, gzip files decompressed as rows are read);
:func:`read_idx` reads a whole file with it; :func:`read_idx_folder` and
:func:`read_idx_images` find the labels beside the images.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from jaxae.data.source import (
    GZIP_MAGIC,
    ArrayRows,
    RowSource,
    concat,
    count_rest,
    gzip_errors,
    open_file,
)
from jaxae.errors import JaxaeError

DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Far above MNIST (47 MB); stops a corrupt header from asking for terabytes when
# a file is loaded into memory. Streaming passes NO_LIMIT: it is for big files.
MAX_BYTES = 2**34
NO_LIMIT = 2**63 - 1
# Deflate cannot compress better than 1032:1, so a gzip file of S bytes holds
# at most 1032 * S: a corrupt header that declares more is caught up front.
DEFLATE_MAX_RATIO = 1032
IMAGES_RE = re.compile(r"images([-.])idx3-ubyte")


class IdxHeader(NamedTuple):
    """An IDX header: ``dims``, the stored (big-endian) ``dtype``, and the data's ``offset``."""

    dims: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def data_bytes(self) -> int:
        return math.prod(self.dims) * self.dtype.itemsize


def read_header(f: BinaryIO, path: Path, *, max_bytes: int = MAX_BYTES) -> IdxHeader:
    """Reads and checks an IDX header; ``f`` is left at the data.

    Refuses bad magic bytes, unknown dtype codes, 0 or more than 4 dimensions, a
    truncated header, and declared sizes over ``max_bytes`` (a zero dim does not
    hide the others: NumPy would refuse them anyway).

    Raises:
      JaxaeError: naming ``path`` and the fault.
    """
    head = f.read(4)
    if head[:2].strip(b"\0"):
        raise JaxaeError(
            f"{path} is not an IDX file (bad magic bytes {head.hex(' ')}): "
            "pass MNIST IDX files such as t10k-images-idx3-ubyte.gz"
        )
    if len(head) < 4:
        raise JaxaeError(f"{path} is truncated: an IDX header needs 4 bytes, found {len(head)}")
    code, ndim = head[2], head[3]
    if code not in DTYPES:
        raise JaxaeError(
            f"{path} has unknown IDX dtype code 0x{code:02X}: expected one of "
            f"{', '.join(f'0x{c:02X}' for c in DTYPES)}; the file is corrupt or not IDX"
        )
    if not 1 <= ndim <= 4:
        raise JaxaeError(f"{path} declares {ndim} dimensions: IDX files need 1 to 4")
    dims_bytes = f.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise JaxaeError(
            f"{path} is truncated: its IDX header needs {4 + 4 * ndim} bytes, "
            f"found {4 + len(dims_bytes)}"
        )
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    dtype = DTYPES[code]
    declared = math.prod(dims) * dtype.itemsize
    nonzero = math.prod(d for d in dims if d) * dtype.itemsize
    if max(declared, nonzero) > max_bytes:
        size = f"{declared} bytes" if declared else f"{nonzero} bytes without its zero dims"
        raise JaxaeError(
            f"{path} declares shape {dims} ({size}), over the {max_bytes}-byte "
            "limit: the header is corrupt; download the file again"
        )
    return IdxHeader(dims, dtype, 4 + 4 * ndim)


class GzipIdxRows(RowSource):
    """A gzip IDX file, decompressed a slice at a time (forward reads are cheap)."""

    def __init__(self, path: Path, raw: BinaryIO, header: IdxHeader):
        super().__init__(path, header.dims, header.dtype)
        self._raw = raw
        self._file = gzip.GzipFile(fileobj=raw)
        self._stored = header.dtype
        self._offset = header.offset

    def read(self, start: int, stop: int) -> np.ndarray:
        row_bytes = self.width * self._stored.itemsize
        rows = np.empty((stop - start, self.width), self._stored)
        if rows.size == 0:  # a memoryview cannot be cast over zero-sized dims
            return rows.astype(self.dtype)
        buf = memoryview(rows).cast("B")
        got = 0
        with gzip_errors(self.path):
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
        with gzip_errors(self.path):
            self._file.seek(self._offset + self.n_rows * self.width * self._stored.itemsize)
            extra = count_rest(self._file)
        if extra:
            raise JaxaeError(
                f"{self.path} has {extra} unexpected bytes after the data: the file is corrupt; "
                "download it again"
            )

    def close(self) -> None:
        self._file.close()
        self._raw.close()


def open_idx(
    path: str | os.PathLike, *, max_bytes: int = MAX_BYTES, images: bool = False
) -> RowSource:
    """Opens an IDX file, raw or gzip (told apart by its first bytes), for reading rows.

    A raw file's size is checked against its header and the file is
    memory-mapped; a gzip file's header is checked against what its
    compressed size can hold, and rows are decompressed as they are read.

    Args:
      path: the file.
      max_bytes: refuse headers that declare more data than this.
      images: require 2 to 4 dimensions (an images file, not labels).

    Returns:
      A :class:`RowSource` whose ``shape`` is the header's dims and whose
      ``dtype`` is the IDX dtype in native byte order.

    Raises:
      JaxaeError: the file is missing, not a regular file, unreadable, not IDX,
        corrupt or truncated, or (raw files) has bytes after the declared data.
    """
    path = Path(path)
    f = open_file(path, expected="IDX file")
    try:
        gz = f.read(2) == GZIP_MAGIC
        f.seek(0)
        if gz:
            return _open_gzip(path, f, max_bytes=max_bytes, images=images)
        with f:
            return _open_raw(path, f, max_bytes=max_bytes, images=images)
    except OSError as e:
        f.close()
        raise JaxaeError(f"cannot read {path} ({e.strerror or e}): pass a readable IDX file") from e
    except BaseException:
        f.close()
        raise


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file, gzip-compressed or raw (detected from its first bytes).

    Returns:
      The array with the shape the header declares and the IDX dtype
      (uint8, int8, int16, int32, float32 or float64) in native byte order.

    Raises:
      JaxaeError: the file is missing, unreadable, not IDX, corrupt or
        truncated, or has bytes after the declared data.
    """
    with open_idx(path) as rows:
        return rows.read_all()


def read_idx_images(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """One IDX images file and, when it lies beside it, its labels file."""
    path = Path(path)
    labels_path = labels_for(path)
    return read_idx(path), None if labels_path is None else read_idx(labels_path)


def read_idx_folder(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads every images file in ``folder``: train first, then t10k/test, then others.

    Returns:
      ``(images, labels)`` as stored, concatenated; ``labels`` is ``None`` when
      no images file has a labels file.

    Raises:
      JaxaeError: no images file, labels for some parts only, parts that do
        not fit together, or any fault of :func:`read_idx`.
    """
    folder = Path(folder)
    image_files = idx_image_files(folder)
    if not image_files:
        raise JaxaeError(
            f"{folder} has no IDX images file (expected a name like "
            "train-images-idx3-ubyte.gz or t10k-images.idx3-ubyte): pass the folder holding MNIST"
        )
    label_files = [labels_for(p) for p in image_files]
    if any(label_files) and not all(label_files):
        missing = image_files[label_files.index(None)]
        raise JaxaeError(
            f"{folder} has labels for some images files but none for {missing.name}: "
            "add its labels-idx1-ubyte file or remove the other labels files"
        )
    images = concat([read_idx(p) for p in image_files], folder)
    labels = concat([read_idx(p) for p in label_files], folder) if all(label_files) else None
    return images, labels


def idx_image_files(folder: Path) -> list[Path]:
    """The IDX images files in ``folder``: train first, then t10k/test, then others; maybe none.

    Raises:
      JaxaeError: the folder cannot be listed.
    """
    found: dict[str, Path] = {}
    try:
        for p in sorted(folder.iterdir()):
            # A raw copy next to its .gz holds the same data: read one of them.
            if IMAGES_RE.search(p.name) and p.is_file():
                found.setdefault(p.name.removesuffix(".gz"), p)
    except OSError as e:
        raise JaxaeError(f"cannot list {folder} ({e.strerror or e}): pass a readable folder") from e

    def split_order(p: Path) -> tuple[int, str]:
        rank = 0 if p.name.startswith("train") else 1 if p.name.startswith(("t10k", "test")) else 2
        return rank, p.name

    return sorted(found.values(), key=split_order)


def labels_for(images_file: Path) -> Path | None:
    """The labels file next to an IDX images file (``.gz`` or raw), if any."""
    name = IMAGES_RE.sub(r"labels\1idx1-ubyte", images_file.name)
    if name == images_file.name:
        return None
    stem = name.removesuffix(".gz")
    for candidate in (name, stem, stem + ".gz"):
        if (images_file.parent / candidate).is_file():
            return images_file.parent / candidate
    return None


def _check_images(header: IdxHeader, path: Path) -> None:
    if len(header.dims) < 2:
        raise JaxaeError(
            f"{path} declares 1 dimensions: an IDX images file needs 2 to 4 "
            "(a labels file has 1); pass the images file"
        )


def _open_raw(path: Path, f: BinaryIO, *, max_bytes: int, images: bool) -> RowSource:
    header = read_header(f, path, max_bytes=max_bytes)
    if images:
        _check_images(header, path)
    available = os.fstat(f.fileno()).st_size - header.offset
    declared = header.data_bytes
    # Checked before anything is mapped or allocated: a corrupt header cannot ask for memory.
    if available < declared:
        raise JaxaeError(
            f"{path} is truncated: header declares {declared} bytes of data, "
            f"found {available}: download it again"
        )
    if available > declared:
        raise JaxaeError(
            f"{path} has {available - declared} unexpected bytes after the data: "
            "the file is corrupt; download it again"
        )
    if declared == 0:  # nothing to map (mmap refuses an empty range)
        return ArrayRows(path, np.zeros(header.dims, header.dtype))
    array = np.memmap(f, dtype=header.dtype, mode="r", offset=header.offset, shape=header.dims)
    return ArrayRows(path, array)


def _open_gzip(path: Path, raw: BinaryIO, *, max_bytes: int, images: bool) -> RowSource:
    size = os.fstat(raw.fileno()).st_size
    with gzip_errors(path), gzip.GzipFile(fileobj=raw) as head:
        header = read_header(head, path, max_bytes=max_bytes)
        if images:
            _check_images(header, path)
        declared = header.data_bytes
        if header.offset + declared > DEFLATE_MAX_RATIO * size:
            # Counting what the file holds is cheap: at most 1032 times its size.
            found = count_rest(head)
            raise JaxaeError(
                f"{path} is truncated: header declares {declared} bytes of data, found {found}, "
                f"more than its {size} compressed bytes can hold: the header is corrupt; "
                "download the file again"
            )
    raw.seek(0)
    return GzipIdxRows(path, raw, header)
