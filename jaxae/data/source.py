"""What every file reader shares: opening a file safely, reading rows, error text.

:class:`RowSource` is the row reader that loading (:mod:`jaxae.data.idx`,
:mod:`jaxae.data.npz`) and streaming (:mod:`jaxae.stream`) both use.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import stat
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from jaxae._validate import check_int
from jaxae.errors import JaxaeError

GZIP_MAGIC = b"\x1f\x8b"
NPY_MAGIC = np.lib.format.MAGIC_PREFIX
CHUNK_BYTES = 16 * 2**20

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class RowSource:
    """Rows of an image file, read a slice at a time without loading the file.

    Attributes:
      path: the file.
      shape: the stored shape, rows first (``(N, H, W)``, ``(N, D)``; ``(N,)`` for labels).
      n_rows: number of rows (images), ``shape[0]``.
      width: values per row, the product of ``shape[1:]`` (1 for labels).
      dtype: the stored dtype, in native byte order.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.n_rows = self.shape[0]
        self.width = math.prod(self.shape[1:])
        self.dtype = np.dtype(dtype).newbyteorder("=")

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new ``(stop - start, width)`` array of :attr:`dtype`."""
        raise NotImplementedError

    def read_all(self) -> np.ndarray:
        """Every row, checked to the end of the file, in :attr:`shape`."""
        rows = self.read(0, self.n_rows)
        self.verify_end()
        return rows.reshape(self.shape)

    def verify_end(self) -> None:
        """Raises :class:`JaxaeError` if the file turns out corrupt past the rows read."""

    def close(self) -> None:
        pass

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ArrayRows(RowSource):
    """An ``(N, ...)`` array, usually memory-mapped: a ``.npy``, or a raw IDX file."""

    def __init__(self, path: Path, array: np.ndarray):
        super().__init__(path, array.shape, array.dtype)
        self._array = array.reshape(self.n_rows, self.width)

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.array(self._array[start:stop], dtype=self.dtype, order="C")

    def close(self) -> None:
        self._array = None  # unmaps once the last view is gone


def file_kind(path: str | os.PathLike) -> str | None:
    """``"a FIFO (named pipe)"``, ``"a folder"`` and so on; ``None`` for a regular file.

    Follows symlinks; raises ``OSError`` (``FileNotFoundError``) when ``path`` is missing.
    """
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_file(path: Path, *, expected: str) -> BinaryIO:
    """Opens a regular file for binary reading, refusing anything else at once.

    A FIFO is opened without blocking (a plain ``open`` waits for a writer
    forever) and refused, like folders, devices and sockets.

    Args:
      path: the file.
      expected: what the caller reads, for the message: ``"IDX file"``.

    Raises:
      JaxaeError: ``path`` is missing, not a regular file, or unreadable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as e:
        raise JaxaeError(f"{path} does not exist: check the path") from e
    except OSError as e:
        raise JaxaeError(
            f"cannot read {path} ({e.strerror or one_line(e)}): pass a readable {expected}"
        ) from e
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise JaxaeError(f"cannot read {path} ({kind}): pass a readable {expected}")
    # O_NONBLOCK does nothing for regular files; the flag only kept a FIFO from blocking.
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def gzip_errors(path: Path) -> Iterator[None]:
    """Turns zlib's, gzip's and read errors inside the block into one-line :class:`JaxaeError`."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise JaxaeError(
            f"{path} is a corrupt gzip file ({one_line(e)}): download it again or pass the raw file"
        ) from e
    except OSError as e:  # after BadGzipFile, which is one
        raise JaxaeError(
            f"cannot read {path} ({e.strerror or one_line(e)}): pass a readable file"
        ) from e


def count_rest(f: BinaryIO, limit: int | None = None) -> int:
    """Bytes left in ``f`` (at most about ``limit``), read in chunks and dropped."""
    count = 0
    while (limit is None or count < limit) and (chunk := f.read(CHUNK_BYTES)):
        count += len(chunk)
    return count


def concat(arrays: list[np.ndarray], source: Path) -> np.ndarray:
    """Parts of one dataset (train, test) stacked along rows."""
    if len(arrays) == 1:
        return arrays[0]
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1 or any(a.ndim == 0 for a in arrays):
        raise JaxaeError(
            f"{source} holds parts of different shapes {[a.shape for a in arrays]}: "
            "keep only files of one dataset together"
        )
    try:
        return np.concatenate(arrays)
    except TypeError as e:  # dtypes without a common type, e.g. numbers and datetimes
        raise JaxaeError(
            f"{source} holds parts of incompatible dtypes {[str(a.dtype) for a in arrays]}: "
            "keep only files of one dataset together"
        ) from e


def check_n(n: int | None, available: int, source: str | os.PathLike) -> int:
    """How many rows to take: ``available`` when ``n`` is None, else ``n`` checked against it.

    Raises:
      JaxaeError: ``n`` is not an integer (bools are refused), below 1, or
        more than ``available``.
    """
    if n is None:
        return available
    n = check_int("n", n, minimum=1)
    if n > available:
        raise JaxaeError(
            f"n={n} is larger than the {available} images in {source}: pass n={available} or less"
        )
    return n


def one_line(e: BaseException) -> str:
    """An exception's message on one line (its type name when it has none)."""
    return " ".join(str(e).split()) or type(e).__name__
