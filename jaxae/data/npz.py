"""NumPy's files: ``.npz`` archives of images and labels, and ``.npy`` arrays of images.

Nothing is ever unpickled (``allow_pickle=False``), and no header may make
the reader allocate more than the file holds.
"""

from __future__ import annotations

import math
import os
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from jaxae.data.source import NPY_MAGIC, ArrayRows, concat, count_rest, one_line, open_file
from jaxae.errors import JaxaeError

_SAVE_NPZ = "save images with np.savez(path, x=images, y=labels)"
_SAVE_NPY = "save images with np.save(path, images) as uint8 or float32"
# np.load's errors for what is not an archive or array, and the errors of the
# readers under it: zipfile raises NotImplementedError and RuntimeError for
# features it does not support (compression methods, encryption); NumPy's .npy
# header parser lets tokenize's errors through.
_LOAD_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    SyntaxError,
    tokenize.TokenError,
)


def read_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads images and labels from a ``.npz`` (never unpickling).

    Keras' ``mnist.npz`` layout (``x_train``, ``y_train``, ``x_test``,
    ``y_test``) gives train then test, concatenated; otherwise the archive
    must hold ``x`` and optionally ``y``.

    Returns:
      ``(images, labels)`` as stored (e.g. ``(N, 28, 28)`` uint8 and ``(N,)``
      uint8); ``labels`` is ``None`` when the archive has none.

    Raises:
      JaxaeError: the file is missing, not a regular file, not a valid
        ``.npz``, holds object arrays, or has no image array.
    """
    path = Path(path)
    # Opened here, not by np.load, which leaks its handle when the zip is corrupt.
    with open_file(path, expected=".npz file") as f:
        try:
            # A .npy would be read whole by np.load before it is refused.
            if f.read(len(NPY_MAGIC)) == NPY_MAGIC:
                raise JaxaeError(f"{path} is a single .npy array, not a .npz archive: {_SAVE_NPZ}")
            f.seek(0)
            with np.load(f, allow_pickle=False) as loaded:
                _check_members(loaded.zip, path)
                arrays = {key: loaded[key] for key in loaded.files}
        except _LOAD_ERRORS as e:
            if isinstance(e, JaxaeError):
                raise
            raise JaxaeError(
                f"{path} is not a valid .npz of numeric arrays ({_reason(e)}): {_SAVE_NPZ}"
            ) from e
    if "x_train" in arrays:
        splits = [s for s in ("train", "test") if f"x_{s}" in arrays]
        images = concat([arrays[f"x_{s}"] for s in splits], path)
        ys = [arrays[f"y_{s}"] for s in splits if f"y_{s}" in arrays]
        labels = concat(ys, path) if ys else None
    elif "x" in arrays:
        images, labels = arrays["x"], arrays.get("y")
    else:
        raise JaxaeError(
            f"{path} has no images (arrays: {', '.join(arrays) or 'none'}): "
            "store them as x (labels as y), or as x_train/y_train/x_test/y_test"
        )
    return images, labels


def open_npy(path: str | os.PathLike) -> ArrayRows:
    """Memory-maps a ``.npy`` of numeric ``(N, D)`` or ``(N, H, W)`` images (never unpickling).

    Returns:
      An :class:`~jaxae.data.source.ArrayRows` over the mapped array: rows
      are read from disk only when asked for.

    Raises:
      JaxaeError: the file is missing, not a regular file, not a ``.npy``,
        holds objects or non-numbers, declares more data than it holds, or has
        another shape.
    """
    path = Path(path)
    with open_file(path, expected=".npy file"):
        pass  # refuses FIFOs, devices and folders before np.load opens the path
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except _LOAD_ERRORS as e:  # objects (pickled), malformed headers, short files
        raise JaxaeError(f"{path} is not a .npy of numbers ({_reason(e)}): {_SAVE_NPY}") from e
    if not isinstance(array, np.ndarray):  # np.load of an archive gives an NpzFile
        array.close()
        raise JaxaeError(f"{path} is a .npz archive, not a .npy array: {_SAVE_NPY}")
    if array.dtype.kind not in "biuf":
        raise JaxaeError(f"images in {path} have dtype {array.dtype}: store numeric pixels")
    if array.ndim not in (2, 3):
        raise JaxaeError(
            f"images in {path} have shape {array.shape}: store them as (N, D) or (N, H, W)"
        )
    return ArrayRows(path, array)


def read_npy(path: str | os.PathLike, *, n: int | None = None) -> np.ndarray:
    """The first ``n`` images (all when ``None``) of a ``.npy``; only those are read.

    Returns:
      ``(n, D)`` or ``(n, H, W)`` in the stored dtype (native byte order).

    Raises:
      JaxaeError: as :func:`open_npy`.
    """
    with open_npy(path) as rows:
        count = rows.n_rows if n is None else min(n, rows.n_rows)
        return rows.read(0, count).reshape(count, *rows.shape[1:])


def _check_members(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuses a member whose .npy header declares more data than it holds.

    np.load allocates the declared array before reading any data, so a small
    file could otherwise ask for gigabytes. The member's data is counted, not
    kept, since the sizes in the zip's directory can lie too.
    """
    fmt = np.lib.format
    for info in archive.infolist():
        with archive.open(info) as member:
            if member.read(len(NPY_MAGIC)) != NPY_MAGIC:
                continue  # np.load returns such a member as bytes
            member.seek(0)
            version = fmt.read_magic(member)
            if version not in ((1, 0), (2, 0), (3, 0)):
                continue  # np.load refuses it before allocating
            read_header = (
                fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            )
            shape, _, dtype = read_header(member)
            declared = math.prod(shape) * dtype.itemsize
            available = info.file_size - member.tell()
            if available >= declared:
                available = count_rest(member, limit=declared)
            if available < declared:
                raise JaxaeError(
                    f"{path} is truncated or corrupt: its {info.filename} declares shape "
                    f"{shape} ({declared} bytes of data), found {max(available, 0)}: "
                    "save it again with np.savez(path, x=images, y=labels)"
                )


def _reason(e: BaseException) -> str:
    # np.load's own words suggest allow_pickle=True, which would run code from the
    # file: say what the file is instead.
    message = one_line(e)
    if isinstance(e, ValueError) and "Object arrays" in message:
        return "it holds object arrays, which jaxae never unpickles"
    if isinstance(e, ValueError) and "pickle" in message:  # neither a zip nor a .npy
        return "neither a zip archive of .npy arrays nor a .npy array"
    return message
