"""Images as rows read on demand: a ``.npy``, an IDX file (raw or gzip), a folder of images.

:func:`open_rows` is what :func:`jaxae.stream.encode_file` reads; the readers
themselves are :func:`jaxae.data.npz.open_npy`, :func:`jaxae.data.idx.open_idx`
and :func:`jaxae.data.folder.open_folder`.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from jaxae.data.folder import is_image_folder, list_images, open_folder, refuse_image_size
from jaxae.data.idx import NO_LIMIT, open_idx
from jaxae.data.npz import open_npy
from jaxae.data.source import GZIP_MAGIC, NPY_MAGIC, RowSource, open_file
from jaxae.errors import JaxaeError


def is_streamable(path: str | os.PathLike) -> bool:
    """Whether :func:`open_rows` reads ``path``: a ``.npy``, an IDX file, raw or gzip, or
    a folder of images (one with images and without IDX files).

    A file is decided from its first bytes, not its name; folders of IDX files,
    FIFOs and devices, ``.npz`` archives and dataset names (``digits``, ``mnist``)
    are not streamable. Never blocks.
    """
    if os.fspath(path) in ("digits", "mnist"):  # names, whatever lies in the working folder
        return False
    if is_image_folder(path):
        try:
            return bool(list_images(Path(path))[0])
        except JaxaeError:  # no images, or not laid out as a folder of them
            return False
    try:
        with open_file(Path(path), expected="file") as f:
            head = f.read(len(NPY_MAGIC))
            if head[:2] == GZIP_MAGIC:
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as g:
                    head = g.read(4)
            elif head.startswith(NPY_MAGIC):
                return True
    except (JaxaeError, OSError, EOFError, zlib.error):
        return False
    return len(head) >= 4 and head[:2] == b"\0\0"


def open_rows(path: str | os.PathLike, *, image_size: tuple[int, int] | None = None) -> RowSource:
    """Opens a ``.npy``, an IDX images file or a folder of images for reading rows without
    loading it.

    A ``.npy`` must hold a numeric ``(N, D)`` or ``(N, H, W)`` array; an IDX
    file 2 to 4 dimensions, rows first. ``.npy`` and raw IDX files are
    memory-mapped; gzip IDX files are decompressed as rows are read, and a
    folder's images are decoded as they are read (``image_size``: resized to
    ``(H, W)``; refused for files). No size limit beyond what the file holds:
    streaming is for big files.

    Returns:
      A :class:`~jaxae.data.source.RowSource`; ``read(start, stop)`` gives
      ``(stop - start, width)`` rows in the stored dtype (native byte order).

    Raises:
      JaxaeError: the file is missing, not a regular file, unreadable, neither
        ``.npy`` nor IDX, malformed, truncated, has bytes after the data, or is
        not numeric rows; see :func:`jaxae.data.folder.open_folder` for folders.
    """
    path = Path(path)
    if is_image_folder(path):
        return open_folder(path, image_size=image_size)
    refuse_image_size(image_size, path)
    with open_file(path, expected=".npy or IDX file") as f:
        is_npy = f.read(len(NPY_MAGIC)) == NPY_MAGIC
    if is_npy:
        return open_npy(path)
    return open_idx(path, max_bytes=NO_LIMIT, images=True)
