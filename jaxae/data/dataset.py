"""The :class:`Dataset` and :func:`load_dataset`: each source to its reader, then validated."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.datasets import load_digits

from jaxae._validate import check_image_size, check_int
from jaxae.data.folder import is_image_folder, open_folder, refuse_image_size
from jaxae.data.idx import read_idx_folder, read_idx_images
from jaxae.data.mnist import load_mnist
from jaxae.data.npz import read_npy, read_npz
from jaxae.data.source import NPY_MAGIC, check_n, file_kind, open_file
from jaxae.errors import JaxaeError

SOURCES_HINT = (
    "use digits, mnist, or a path to MNIST IDX files, a .npz, a .npy or a folder of images"
)


class Dataset(NamedTuple):
    """Images with optional labels.

    Attributes:
      images: ``(N, D)`` float32 raw pixel values (not standardised), finite.
      labels: ``(N,)`` int64, or ``None`` when the source has no labels.
      name: ``"digits"``, ``"mnist"``, or the path that was given.
      image_shape: ``(H, W)`` with ``H * W == D``, or ``(H, W, 3)`` for RGB
        (``H * W * 3 == D``), for figures.
      class_names: a label's name at its index (a folder's class subfolders), or ``None``.
    """

    images: np.ndarray
    labels: np.ndarray | None
    name: str
    image_shape: tuple[int, ...]
    class_names: tuple[str, ...] | None = None


def load_dataset(
    source: str | os.PathLike = "digits",
    *,
    n: int | None = None,
    data_dir: str | os.PathLike | None = None,
    image_size: tuple[int, int] | None = None,
) -> Dataset:
    """Loads and validates a dataset.

    Args:
      source: ``"digits"`` (scikit-learn's 1,797 8x8 digits, no network),
        ``"mnist"`` (70,000 28x28 digits from OpenML, cached after the first
        download), or a path: a folder of MNIST IDX files (train before t10k),
        one IDX images file (labels found next to it), a ``.npz`` with Keras'
        ``x_train/y_train/x_test/y_test`` or with ``x`` and optional ``y``,
        a ``.npy`` of ``(N, D)`` or ``(N, H, W)`` images (no labels; only the
        first ``n`` rows are read), or a folder of images, flat or one
        subfolder per class (see :mod:`jaxae.data.folder`; only the first
        ``n`` are decoded).
      n: keep only the first ``n`` images; all when ``None``.
      data_dir: cache folder for MNIST; see :func:`jaxae.data.data_dir`.
      image_size: ``(H, W)``: resize a folder's images to it; refused for other sources.

    Returns:
      A :class:`Dataset` with ``(N, D)`` float32 images (bools become 0 and 1)
      and ``(N,)`` int64 labels (or ``None``).

    Raises:
      JaxaeError: unknown source, unreadable or malformed files, a FIFO or
        device, no network for a first MNIST download, a corrupt MNIST cache,
        non-finite pixels, mismatched labels, bad ``n``, images of different
        sizes without ``image_size``, ``image_size`` for a source that is not
        a folder of images.
    """
    if n is not None:
        n = check_int("n", n, minimum=1)  # before reading anything
    if image_size is not None:
        image_size = check_image_size(image_size)
    path = Path(source).expanduser()
    if source not in ("digits", "mnist") and is_image_folder(path):
        with open_folder(path, image_size=image_size) as rows:
            count = check_n(n, rows.n_rows, source)
            images = rows.read(0, count).astype(np.float32)
        labels = None if rows.labels is None else rows.labels[:count]
        return Dataset(images, labels, str(source), rows.shape[1:], rows.class_names)
    refuse_image_size(image_size, source)
    if source == "digits":
        images, labels = load_digits(return_X_y=True)
    elif source == "mnist":
        images, labels = load_mnist(data_dir)
    else:
        images, labels = _read_path(path, source, n=n)
    return validated(images, labels, name=str(source), n=n)


def validated(
    images: np.ndarray, labels: np.ndarray | None, *, name: str, n: int | None = None
) -> Dataset:
    """Checks images and labels as stored and gives the :class:`Dataset` of their first ``n``.

    Args:
      images: ``(N, D)`` or ``(N, H, W)`` numbers (bools count as 0 and 1).
      labels: ``(N,)`` integers (integral floats too), or ``None``.
      name: the source, for messages and :attr:`Dataset.name`.
      n: keep the first ``n``; all when ``None``.

    Raises:
      JaxaeError: other dtypes or shapes, no images, non-finite pixels (also
        float64 beyond float32's range), labels that do not match or are not
        integers within int64, bad ``n``.
    """
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
        labels = validated_labels(np.asarray(labels), len(images), name)
    count = check_n(n, len(images), name)
    images = images[:count]
    labels = None if labels is None else labels[:count]
    # Cast first: float64 values beyond float32's range become inf and are caught here.
    with np.errstate(over="ignore", invalid="ignore"):
        images = images.astype(np.float32)
    if not np.isfinite(images).all():
        raise JaxaeError(
            f"images contain non-finite values (NaN or inf) in {name}: clean the data "
            "(e.g. np.nan_to_num) before loading it"
        )
    return Dataset(images, labels, name, tuple(int(s) for s in image_shape))


def validated_labels(labels: np.ndarray, count: int, name: str) -> np.ndarray:
    """``(count,)`` class indices as int64, or a :class:`JaxaeError` naming ``name``."""
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


def _read_path(
    path: Path, source: str | os.PathLike, *, n: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        kind = file_kind(path)
    except FileNotFoundError:
        raise JaxaeError(
            f"unknown dataset {str(source)!r} (no such file or folder): {SOURCES_HINT}"
        ) from None
    except OSError as e:
        raise JaxaeError(f"cannot read {path} ({e.strerror or e}): {SOURCES_HINT}") from e
    if kind == "a folder":
        return read_idx_folder(path)
    if kind is not None:  # a plain open of a FIFO would wait for a writer forever
        raise JaxaeError(f"cannot read {path} ({kind}, not a file or folder): {SOURCES_HINT}")
    if path.suffix.lower() == ".npz":
        return read_npz(path)
    if path.suffix.lower() == ".npy" or _starts_npy(path):
        return read_npy(path, n=n), None
    return read_idx_images(path)


def _starts_npy(path: Path) -> bool:
    with open_file(path, expected="file") as f:
        return f.read(len(NPY_MAGIC)) == NPY_MAGIC
