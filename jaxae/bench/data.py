"""The digits a benchmark trains on: a path, the MNIST cache, or scikit-learn's digits.

Never a path of the repository: installed, the package knows only what it is given
(``--data``) and jaxae.data's own cache folder.
"""

from __future__ import annotations

import os

import numpy as np

from jaxae.data import data_dir, load_dataset

MNIST_CACHE = "mnist_784.npz"  # what load_dataset("mnist") keeps in data_dir()


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
    note = ""
    if source is None:
        cache = data_dir() / MNIST_CACHE
        if cache.is_file():
            source = "mnist"
        else:
            source = "digits"
            note = (
                f"; no MNIST cache at {cache}: pass --data PATH (MNIST IDX files or a .npz) "
                "or --data mnist (downloads once) to time the 784-pixel model"
            )
    images = load_dataset(str(source)).images
    tiled = f", tiled to {n:,}" if n > len(images) else ""
    described = f"{source} ({len(images):,} images of {images.shape[1]} pixels{tiled}){note}"
    return np.resize(images, (n, images.shape[1])).astype(np.float32), described
