"""Loading image datasets and standardising each image.

Sources: scikit-learn's bundled 8x8 digits, MNIST from OpenML (cached as
``<data_dir>/mnist_784.npz``), or a path to MNIST IDX files or a ``.npz``.
Loading validates at the boundary and raises :class:`~jaxae.errors.JaxaeError`;
:func:`standardize` is pure JAX and does no validation.

Example:
  >>> from jaxae.data import load_dataset
  >>> from jaxae.preprocess import standardize
  >>> ds = load_dataset("digits", n=100)
  >>> ds.images.shape, ds.image_shape
  ((100, 64), (8, 8))
  >>> standardize(ds.images).shape
  (100, 64)
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import tempfile
import tokenize
import zipfile
import zlib
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from sklearn.datasets import fetch_openml, load_digits

from jaxae.errors import JaxaeError

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Far above MNIST (47 MB); stops a corrupt header from asking for terabytes.
_IDX_MAX_BYTES = 2**34
_CHUNK = 16 * 2**20
_NPY_MAGIC = np.lib.format.MAGIC_PREFIX
_IMAGES_RE = re.compile(r"images([-.])idx3-ubyte")
_SOURCES_HINT = "use digits, mnist, or a path to MNIST IDX files or a .npz"


class Dataset(NamedTuple):
    """Images with optional labels.

    Attributes:
      images: ``(N, D)`` float32 raw pixel values (not standardised), finite.
      labels: ``(N,)`` int64, or ``None`` when the source has no labels.
      name: ``"digits"``, ``"mnist"``, or the path that was given.
      image_shape: ``(H, W)`` with ``H * W == D``, for figures.
    """

    images: np.ndarray
    labels: np.ndarray | None
    name: str
    image_shape: tuple[int, int]


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Folder for downloads and caches: ``explicit``, ``$JAXAE_DATA``, or ``~/.cache/jaxae``."""
    chosen = explicit or os.environ.get("JAXAE_DATA") or Path.home() / ".cache" / "jaxae"
    return Path(chosen).expanduser()


def load_dataset(
    source: str = "digits",
    *,
    n: int | None = None,
    data_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Loads and validates a dataset.

    Args:
      source: ``"digits"`` (scikit-learn's 1,797 8x8 digits, no network),
        ``"mnist"`` (70,000 28x28 digits from OpenML, cached after the first
        download), or a path: a folder of MNIST IDX files (train before t10k),
        one IDX images file (labels found next to it), or a ``.npz`` with
        Keras' ``x_train/y_train/x_test/y_test`` or with ``x`` and optional ``y``.
      n: keep only the first ``n`` images; all when ``None``.
      data_dir: cache folder for MNIST; see :func:`data_dir`.

    Returns:
      A :class:`Dataset` with ``(N, D)`` float32 images and ``(N,)`` int64
      labels (or ``None``).

    Raises:
      JaxaeError: unknown source, unreadable or malformed files, no network for
        a first MNIST download, non-finite pixels, mismatched labels, bad ``n``.
    """
    if source == "digits":
        images, labels = load_digits(return_X_y=True)
    elif source == "mnist":
        images, labels = _load_mnist(data_dir)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise JaxaeError(
                f"unknown dataset {source!r} (no such file or folder): {_SOURCES_HINT}"
            )
        images, labels = _read_path(path)
    return _validated(images, labels, name=str(source), n=n)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file, gzip-compressed or raw (detected from its first bytes).

    Returns:
      The array with the shape the header declares and the IDX dtype
      (uint8, int8, int16, int32, float32 or float64) in native byte order.

    Raises:
      JaxaeError: the file is missing, unreadable, not IDX, corrupt or
        truncated, or has bytes after the declared data.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            if raw.read(2) == _GZIP_MAGIC:
                raw.seek(0)
                with gzip.GzipFile(fileobj=raw) as f:
                    return _parse_idx(f, path, size=None)
            raw.seek(0)
            return _parse_idx(raw, path, size=os.fstat(raw.fileno()).st_size)
    except FileNotFoundError as e:
        raise JaxaeError(f"{path} does not exist: check the path") from e
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise JaxaeError(
            f"{path} is a corrupt gzip file ({_one_line(e)}): "
            "download it again or pass the raw file"
        ) from e
    except OSError as e:
        raise JaxaeError(
            f"cannot read {path} ({e.strerror or _one_line(e)}): pass a readable IDX file"
        ) from e


def read_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads images and labels from a ``.npz`` (never unpickling).

    Keras' ``mnist.npz`` layout (``x_train``, ``y_train``, ``x_test``,
    ``y_test``) gives train then test, concatenated; otherwise the archive
    must hold ``x`` and optionally ``y``.

    Returns:
      ``(images, labels)`` as stored (e.g. ``(N, 28, 28)`` uint8 and ``(N,)``
      uint8); ``labels`` is ``None`` when the archive has none.

    Raises:
      JaxaeError: the file is missing, not a valid ``.npz``, holds object
        arrays, or has no image array.
    """
    path = Path(path)
    try:
        # Opened here, not by np.load, which leaks its handle when the zip is corrupt.
        with open(path, "rb") as f:
            # A .npy would be read whole by np.load before it is refused.
            is_npy = f.read(len(_NPY_MAGIC)) == _NPY_MAGIC
            f.seek(0)
            arrays = None
            if not is_npy:
                with np.load(f, allow_pickle=False) as loaded:
                    _check_npz_members(loaded.zip, path)
                    arrays = {key: loaded[key] for key in loaded.files}
    except FileNotFoundError as e:
        raise JaxaeError(f"{path} does not exist: check the path") from e
    except JaxaeError:
        raise
    except (
        ValueError,
        OSError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        NotImplementedError,
        RuntimeError,
        SyntaxError,
        tokenize.TokenError,
    ) as e:
        # np.load raises ValueError for object (pickled) arrays and for files
        # that are neither .npz nor .npy; zipfile raises NotImplementedError and
        # RuntimeError for features it does not support (compression methods,
        # encryption); NumPy's .npy header parser lets tokenize's errors through.
        raise JaxaeError(
            f"{path} is not a valid .npz of numeric arrays ({_one_line(e)}): "
            "save images with np.savez(path, x=images, y=labels)"
        ) from e
    if arrays is None:
        raise JaxaeError(
            f"{path} is a single .npy array, not a .npz archive: "
            "save images with np.savez(path, x=images, y=labels)"
        )
    if "x_train" in arrays:
        splits = [s for s in ("train", "test") if f"x_{s}" in arrays]
        images = _concat([arrays[f"x_{s}"] for s in splits], path)
        ys = [arrays[f"y_{s}"] for s in splits if f"y_{s}" in arrays]
        labels = _concat(ys, path) if ys else None
    elif "x" in arrays:
        images, labels = arrays["x"], arrays.get("y")
    else:
        raise JaxaeError(
            f"{path} has no images (arrays: {', '.join(arrays) or 'none'}): "
            "store them as x (labels as y), or as x_train/y_train/x_test/y_test"
        )
    return images, labels


def _check_npz_members(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuses a member whose .npy header declares more data than it holds.

    np.load allocates the declared array before reading any data, so a small
    file could otherwise ask for gigabytes. The member's data is counted, not
    kept, since the sizes in the zip's directory can lie too.
    """
    fmt = np.lib.format
    for info in archive.infolist():
        with archive.open(info) as member:
            if member.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
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
                available = _count_rest(member, limit=declared)
            if available < declared:
                raise JaxaeError(
                    f"{path} is truncated or corrupt: its {info.filename} declares shape "
                    f"{shape} ({declared} bytes of data), found {max(available, 0)}: "
                    "save it again with np.savez(path, x=images, y=labels)"
                )


def read_idx_header(
    f: BinaryIO, path: Path, *, max_bytes: int = _IDX_MAX_BYTES
) -> tuple[tuple[int, ...], np.dtype]:
    """Reads and checks an IDX header: (dims, big-endian dtype); ``f`` is left at the data.

    Refuses bad magic bytes, unknown dtype codes, 0 or more than 4 dimensions, a
    truncated header, and declared sizes over ``max_bytes`` (a zero dim does not
    hide the others: NumPy would refuse them anyway).
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
    if code not in _IDX_DTYPES:
        raise JaxaeError(
            f"{path} has unknown IDX dtype code 0x{code:02X}: expected one of "
            f"{', '.join(f'0x{c:02X}' for c in _IDX_DTYPES)}; the file is corrupt or not IDX"
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
    dtype = _IDX_DTYPES[code]
    declared = math.prod(dims) * dtype.itemsize
    nonzero = math.prod(d for d in dims if d) * dtype.itemsize
    if max(declared, nonzero) > max_bytes:
        size = f"{declared} bytes" if declared else f"{nonzero} bytes without its zero dims"
        raise JaxaeError(
            f"{path} declares shape {dims} ({size}), over the {max_bytes}-byte "
            "limit: the header is corrupt; download the file again"
        )
    return dims, dtype


def _parse_idx(f: BinaryIO, path: Path, *, size: int | None) -> np.ndarray:
    """Parses an IDX stream; ``size`` is the file's byte count when known (raw files)."""
    dims, dtype = read_idx_header(f, path)
    ndim, declared = len(dims), math.prod(dims) * dtype.itemsize
    # Never read by the declared size alone: check the raw size first and read
    # gzip streams in chunks, so a corrupt header cannot trigger a huge allocation.
    available = None if size is None else size - 4 - 4 * ndim
    if available is not None and available < declared:
        data = b""
    else:
        data = _read_at_most(f, declared)
        available = len(data)
    if available < declared:
        raise JaxaeError(
            f"{path} is truncated: header declares {declared} bytes of data, found {available}"
        )
    extra = _count_rest(f)
    if extra:
        raise JaxaeError(
            f"{path} has {extra} unexpected bytes after the data: the file is corrupt; "
            "download it again"
        )
    return np.frombuffer(data, dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def _read_at_most(f: BinaryIO, limit: int) -> bytearray:
    buf = bytearray()
    while len(buf) < limit:
        chunk = f.read(min(_CHUNK, limit - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _count_rest(f: BinaryIO, limit: int | None = None) -> int:
    """Bytes left in ``f`` (at most about ``limit``), read in chunks and dropped."""
    count = 0
    while (limit is None or count < limit) and (chunk := f.read(_CHUNK)):
        count += len(chunk)
    return count


def _read_path(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if path.is_dir():
        return _read_idx_folder(path)
    if path.suffix.lower() == ".npz":
        return read_npz(path)
    labels_path = _labels_for(path)
    return read_idx(path), None if labels_path is None else read_idx(labels_path)


def _read_idx_folder(folder: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads every images file in ``folder``: train first, then t10k/test, then others."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        # A raw copy next to its .gz holds the same data: read one of them.
        if p.is_file() and _IMAGES_RE.search(p.name):
            found.setdefault(p.name.removesuffix(".gz"), p)
    if not found:
        raise JaxaeError(
            f"{folder} has no IDX images file (expected a name like "
            "train-images-idx3-ubyte.gz or t10k-images.idx3-ubyte): pass the folder holding MNIST"
        )

    def split_order(p: Path) -> tuple[int, str]:
        rank = 0 if p.name.startswith("train") else 1 if p.name.startswith(("t10k", "test")) else 2
        return rank, p.name

    image_files = sorted(found.values(), key=split_order)
    label_files = [_labels_for(p) for p in image_files]
    if any(label_files) and not all(label_files):
        missing = image_files[label_files.index(None)]
        raise JaxaeError(
            f"{folder} has labels for some images files but none for {missing.name}: "
            "add its labels-idx1-ubyte file or remove the other labels files"
        )
    images = _concat([read_idx(p) for p in image_files], folder)
    labels = _concat([read_idx(p) for p in label_files], folder) if all(label_files) else None
    return images, labels


def _labels_for(images_file: Path) -> Path | None:
    """The labels file next to an IDX images file (``.gz`` or raw), if any."""
    name = _IMAGES_RE.sub(r"labels\1idx1-ubyte", images_file.name)
    if name == images_file.name:
        return None
    stem = name.removesuffix(".gz")
    for candidate in (name, stem, stem + ".gz"):
        if (images_file.parent / candidate).is_file():
            return images_file.parent / candidate
    return None


def _concat(arrays: list[np.ndarray], source: Path) -> np.ndarray:
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


def _load_mnist(explicit_dir: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    root = data_dir(explicit_dir)
    cache = root / "mnist_784.npz"
    if cache.is_file():
        return read_npz(cache)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise JaxaeError(
            f"cannot create the data folder {root} ({e.strerror or _one_line(e)}): "
            "set JAXAE_DATA or pass a writable data folder"
        ) from e
    try:
        bunch = fetch_openml(
            "mnist_784",
            version=1,
            as_frame=False,
            parser="liac-arff",
            data_home=root / "openml",
        )
    # URLError and HTTPError are OSErrors; sklearn's OpenMLError is a ValueError.
    except (OSError, HTTPException, ValueError) as e:
        raise JaxaeError(
            f"cannot download MNIST from OpenML ({_one_line(e)}; no network?): download it once "
            "on a machine with network (jaxae run --dataset mnist), or pass IDX files or "
            "mnist.npz with --dataset PATH"
        ) from e
    x = np.asarray(bunch.data)
    y = np.asarray(bunch.target).astype(np.int64)  # OpenML labels are strings
    if not (np.array_equal(x, x.astype(np.uint8)) and np.array_equal(y, y.astype(np.uint8))):
        raise JaxaeError(
            "OpenML's mnist_784 is not 0-255 pixels with 0-255 labels: "
            f"pass IDX files or mnist.npz with --dataset PATH instead (cache folder {root})"
        )
    _save_atomic(cache, x=x.astype(np.uint8), y=y.astype(np.uint8))
    return x, y


def _save_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Writes a compressed ``.npz`` so that readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise JaxaeError(
            f"cannot write {path} ({e.strerror or _one_line(e)}): "
            "free disk space or set JAXAE_DATA to a writable folder"
        ) from e


def _validated(
    images: np.ndarray, labels: np.ndarray | None, *, name: str, n: int | None
) -> Dataset:
    images = np.asarray(images)
    if images.dtype.kind not in "biuf":
        raise JaxaeError(f"images in {name} have dtype {images.dtype}: store numeric pixels")
    if images.ndim == 3:
        image_shape = images.shape[1:]
        images = images.reshape(len(images), math.prod(image_shape))
    elif images.ndim == 2:
        side = math.isqrt(images.shape[1])
        image_shape = (side, side) if side * side == images.shape[1] else (1, images.shape[1])
    else:
        raise JaxaeError(
            f"images in {name} have shape {images.shape}: store them as (N, D) or (N, H, W)"
        )
    if images.size == 0:
        raise JaxaeError(f"{name} has no images (shape {images.shape}): pass a non-empty dataset")
    if labels is not None:
        labels = _validated_labels(np.asarray(labels), len(images), name)
    if n is not None:
        if n < 1:
            raise JaxaeError(f"n must be at least 1, got {n}: pass --n 1 or more")
        if n > len(images):
            raise JaxaeError(
                f"n={n} is larger than the {len(images)} images in {name}: "
                f"pass --n {len(images)} or less"
            )
        images = images[:n]
        labels = None if labels is None else labels[:n]
    # Cast first: float64 values beyond float32's range become inf and are caught here.
    with np.errstate(over="ignore", invalid="ignore"):
        images = images.astype(np.float32)
    if not np.isfinite(images).all():
        raise JaxaeError(
            f"images contain non-finite values (NaN or inf) in {name}: clean the data "
            "(e.g. np.nan_to_num) before loading it"
        )
    return Dataset(images, labels, name, tuple(int(s) for s in image_shape))


def _validated_labels(labels: np.ndarray, count: int, name: str) -> np.ndarray:
    if labels.ndim != 1:
        raise JaxaeError(f"labels in {name} have shape {labels.shape}: store them as (N,)")
    if len(labels) != count:
        raise JaxaeError(
            f"{count} images but {len(labels)} labels in {name}: "
            "pass one label per image, or no labels"
        )
    integral = labels.dtype.kind in "iu" or (
        labels.dtype.kind == "f"
        and np.isfinite(labels).all()
        and (labels == np.round(labels)).all()
    )
    if not integral:
        raise JaxaeError(
            f"labels in {name} are not integers (dtype {labels.dtype}): store class indices"
        )
    if labels.size and labels.dtype.kind in "uf":
        # Beyond int64 the cast would wrap (uint64) or give garbage (floats).
        low, high = labels.min().item(), labels.max().item()  # Python numbers: exact
        if high >= 2**63 or (labels.dtype.kind == "f" and low < -(2**63)):
            raise JaxaeError(
                f"labels in {name} range from {low} to {high}, beyond int64: store class indices"
            )
    return labels.astype(np.int64)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
