"""The digits a benchmark trains on: a path, the MNIST cache, or scikit-learn's digits.

Never a path of the repository: installed, the package knows only what it is given
(``--data``) and jaxae.data's own cache folder.
"""

from __future__ import annotations

import os

import numpy as np

from jaxae.data import data_dir, load_dataset
from jaxae.data.mnist import CACHE_NAME

MNIST_CACHE = CACHE_NAME  # what load_dataset("mnist") keeps in data_dir()


def _resolve(source: str | os.PathLike | None) -> tuple[str, str]:
    """(what to load, a note): ``source``, or where it is None, MNIST when
    ``load_dataset("mnist")`` has it cached (no download), else scikit-learn's digits."""
    if source is not None:
        return str(source), ""
    cache = data_dir() / MNIST_CACHE
    if cache.is_file():
        return "mnist", ""
    note = (
        f"; no MNIST cache at {cache}: pass --data PATH (MNIST IDX files or a .npz) "
        "or --data mnist (downloads once) to time the 784-pixel model"
    )
    return "digits", note


def load_images(source: str | os.PathLike | None, n: int) -> tuple[np.ndarray, str]:
    """(n, D) float32 raw pixels, tiled to ``n`` rows, and a line saying where they came from.

    Args:
      source: anything ``load_dataset`` takes (a path to MNIST IDX files or a .npz,
        ``"mnist"``, ``"digits"``); None: MNIST when ``load_dataset("mnist")`` has it
        cached (no download), else scikit-learn's 8x8 digits (D = 64), with a note.
      n: rows wanted; the images are repeated when there are fewer.

    Raises:
      JaxaeError: ``source`` cannot be loaded.
    """
    source, note = _resolve(source)
    images = load_dataset(source).images
    tiled = f", tiled to {n:,}" if n > len(images) else ""
    described = f"{source} ({len(images):,} images of {images.shape[1]} pixels{tiled}){note}"
    return np.resize(images, (n, images.shape[1])).astype(np.float32), described


def load_labelled(
    source: str | os.PathLike | None, n: int
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The first ``n`` images, never tiled (copies would be one point to UMAP), their
    labels (None where the source has none) and a line saying where they came from.

    ``source`` as for :func:`load_images`.
    """
    source, note = _resolve(source)
    ds = load_dataset(source)
    n = min(n, len(ds.images))
    labels = None if ds.labels is None else np.asarray(ds.labels[:n])
    described = f"{source} (the first {n:,} of {len(ds.images):,} images){note}"
    return np.asarray(ds.images[:n], np.float32), labels, described
