"""MNIST from OpenML (``mnist_784``), downloaded once and cached as ``<data_dir>/mnist_784.npz``."""

from __future__ import annotations

import os
from http.client import HTTPException
from pathlib import Path

import numpy as np
from sklearn.datasets import fetch_openml

from jaxae._files import save_npz
from jaxae.data.npz import read_npz
from jaxae.data.source import one_line
from jaxae.errors import JaxaeError

CACHE_NAME = "mnist_784.npz"
_ELSEWHERE = "pass IDX files or mnist.npz with --dataset PATH"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Folder for downloads and caches: ``explicit``, ``$JAXAE_DATA``, or ``~/.cache/jaxae``."""
    chosen = explicit or os.environ.get("JAXAE_DATA") or Path.home() / ".cache" / "jaxae"
    return Path(chosen).expanduser()


def load_mnist(explicit_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's 70,000 images and labels, from the cache or, the first time, from OpenML.

    Args:
      explicit_dir: the data folder; see :func:`data_dir`.

    Returns:
      ``(images, labels)``: ``(70000, 784)`` 0-255 pixels and ``(70000,)`` digits.

    Raises:
      JaxaeError: no network for the first download, an unwritable data
        folder, a download that is not MNIST, or a corrupt cache (the message
        says which file to delete).
    """
    root = data_dir(explicit_dir)
    cache = root / CACHE_NAME
    if cache.is_file():
        return read_cache(cache)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise JaxaeError(
            f"cannot create the data folder {root} ({e.strerror or one_line(e)}): "
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
            f"cannot download MNIST from OpenML ({one_line(e)}; no network?): download it once "
            f"on a machine with network (jaxae run --dataset mnist), or {_ELSEWHERE}"
        ) from e
    x = np.asarray(bunch.data)
    y = np.asarray(bunch.target).astype(np.int64)  # OpenML labels are strings
    if not (np.array_equal(x, x.astype(np.uint8)) and np.array_equal(y, y.astype(np.uint8))):
        raise JaxaeError(
            "OpenML's mnist_784 is not 0-255 pixels with 0-255 labels: "
            f"{_ELSEWHERE} instead (cache folder {root})"
        )
    try:
        save_npz(cache, x=x.astype(np.uint8), y=y.astype(np.uint8))
    except OSError as e:
        raise JaxaeError(
            f"cannot write {cache} ({e.strerror or one_line(e)}): "
            "free disk space or set JAXAE_DATA to a writable folder"
        ) from e
    return x, y


def read_cache(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """The cached ``x`` ``(N, 784)`` uint8 and ``y`` ``(N,)`` uint8, or one line to delete it."""
    fix = f"delete {cache} and load mnist again to download it afresh"
    try:
        images, labels = read_npz(cache)
    except JaxaeError as e:  # its own fix (save it again) is not the user's
        raise JaxaeError(f"the MNIST cache {cache} is corrupt: {fix}") from e
    if (
        images.dtype != np.uint8
        or images.ndim != 2
        or images.shape[1] != 784
        or labels is None
        or labels.shape != images.shape[:1]
    ):
        shape = "no labels" if labels is None else f"labels {labels.shape}"
        raise JaxaeError(
            f"the MNIST cache {cache} is not MNIST (images {images.shape} {images.dtype}, "
            f"{shape}): {fix}"
        )
    return images, labels
