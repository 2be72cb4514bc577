"""Figures of a run, drawn on ``matplotlib.figure.Figure`` and written atomically.

No pyplot and no ``matplotlib.use``: importing jaxae leaves the user's backend
as it was, and a figure drawn here never appears in a notebook by accident.
"""

from __future__ import annotations

import io
import os

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from jaxae._files import atomic_write


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write(path, buf.getvalue())


def _mosaic(rows: list[list[np.ndarray]], shape: tuple[int, ...], gap: int = 2) -> np.ndarray:
    """The images as one array, a row of the grid per list, each image scaled to
    [0, 1] by its own range (as ``imshow`` would draw it alone); NaN between them
    and where a row is short. ``shape`` is ``(H, W)``, or ``(H, W, 3)`` for RGB
    (the mosaic then has 3 channels too). One ``imshow`` of this draws in a
    fraction of the time of an axes per image."""
    h, w = shape[:2]
    width = max((len(r) for r in rows), default=0)
    size = (len(rows) * (h + gap) - gap, max(width * (w + gap) - gap, 1))
    out = np.full(size + tuple(shape[2:]), np.nan)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            image = np.asarray(image, np.float64).reshape(shape)
            low, high = image.min(), image.max()
            cell = (image - low) / (high - low) if high > low else np.zeros(shape)
            out[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = cell
    return out


def _show_mosaic(ax, mosaic: np.ndarray, shape: tuple[int, ...], labels, gap: int = 2) -> None:
    """``mosaic`` drawn on white (greyscale dark, RGB in its colours), each grid row
    labelled on the left."""
    if mosaic.ndim == 3:
        ax.imshow(np.nan_to_num(mosaic, nan=1.0), interpolation="nearest")
    else:
        cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="white")
        ax.imshow(mosaic, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    step = shape[0] + gap
    ax.set_yticks([i * step + (shape[0] - 1) / 2 for i in range(len(labels))], labels, fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def clusters_figure(
    images: np.ndarray,
    clusters: np.ndarray,
    image_shape: tuple[int, ...],
    path: str | os.PathLike,
    *,
    per_cluster: int = 10,
    title: str | None = None,
) -> None:
    """One row per cluster with up to ``per_cluster`` of its images (the original
    figure), labelled with the cluster and its size."""
    ids = np.unique(clusters)
    rows = [images[np.flatnonzero(clusters == c)[:per_cluster]] for c in ids]
    fig = Figure(figsize=(per_cluster * 0.8, len(ids) * 0.8))
    ax = fig.subplots()
    labels = [f"{c} ({np.sum(clusters == c)})" for c in ids]
    _show_mosaic(ax, _mosaic(list(rows), image_shape), image_shape, labels)
    if title:
        ax.set_title(title)
    save_figure(fig, path)


def loss_figure(loss_history: np.ndarray, path: str | os.PathLike, *, selected: int = 0) -> None:
    """Training loss per epoch, log scale; (models, epochs) draws every model, ``selected`` bold."""
    histories = np.atleast_2d(loss_history)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    epochs = np.arange(1, histories.shape[1] + 1)
    for i, h in enumerate(histories):
        if i != selected:
            ax.plot(epochs, h, color="0.7", lw=0.8)
    ax.plot(
        epochs, histories[selected], color="C0", label="shown model" if len(histories) > 1 else None
    )
    if len(histories) > 1:
        ax.legend()
    finite = histories[np.isfinite(histories)]
    if finite.size and (finite > 0).all():  # a zero loss (constant images) has no log
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error (scaled pixels)")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def reconstructions_figure(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    image_shape: tuple[int, ...],
    path: str | os.PathLike,
) -> None:
    """Originals (top row) above their reconstructions (bottom row)."""
    n = len(originals)
    fig = Figure(figsize=(n * 0.9, 2.1))
    ax = fig.subplots()
    mosaic = _mosaic([list(originals), list(reconstructions)], image_shape)
    _show_mosaic(ax, mosaic, image_shape, ["original", "decoded"])
    save_figure(fig, path)


def codes_figure(
    codes: np.ndarray, clusters: np.ndarray, path: str | os.PathLike, *, title: str | None = None
) -> None:
    """The codes in 2-D (their first two principal components), coloured by cluster."""
    from sklearn.decomposition import PCA

    xy = PCA(n_components=2, random_state=0).fit_transform(codes) if codes.shape[1] > 2 else codes
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.scatter(xy[:, 0], xy[:, -1], c=clusters, cmap="tab10", s=2, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def confusion_figure(
    labels: np.ndarray,
    clusters: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    label_names: list[str] | tuple[str, ...] | None = None,
) -> None:
    """Counts of each label (rows) in each cluster (columns), clusters ordered by best match;
    rows named by ``label_names[label]`` where given (a folder's classes), else by number."""
    from scipy.optimize import linear_sum_assignment

    label_ids, cluster_ids = np.unique(labels), np.unique(clusters)
    counts = np.zeros((len(label_ids), len(cluster_ids)), np.int64)
    np.add.at(
        counts, (np.searchsorted(label_ids, labels), np.searchsorted(cluster_ids, clusters)), 1
    )
    rows, cols = linear_sum_assignment(-counts)
    order = list(cols[np.argsort(rows)]) + [c for c in range(len(cluster_ids)) if c not in cols]
    counts = counts[:, order]
    fig = Figure(figsize=(0.45 * len(cluster_ids) + 1.5, 0.45 * len(label_ids) + 1))
    ax = fig.subplots()
    ax.imshow(counts, cmap="Blues")
    for (i, j), c in np.ndenumerate(counts):
        if c:
            ax.text(j, i, str(c), ha="center", va="center", fontsize=6,
                    color="white" if c > counts.max() / 2 else "black")  # fmt: skip
    ax.set_xticks(range(len(order)), [str(cluster_ids[c]) for c in order], fontsize=7)
    names = [str(v) if label_names is None else label_names[v] for v in label_ids]
    ax.set_yticks(range(len(label_ids)), names, fontsize=7)
    ax.set_xlabel("cluster")
    ax.set_ylabel("label")
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def augmentation_figure(
    images: np.ndarray,
    image_shape: tuple[int, int],
    path: str | os.PathLike,
    *,
    config=None,
    versions: int = 5,
    seed: int = 0,
    title: str | None = None,
) -> None:
    """Each image (a row) as it is, then ``versions`` random augmentations of it.

    Args:
      images: ``(n, H*W)`` float images (a few: one row each), scaled or not.
      image_shape: ``(H, W)``.
      path: where the PNG goes (written atomically).
      config: the :class:`jaxae.augment.AugmentConfig` to draw (default DEC-DA's:
        shift 0.1, rotate 10).
      versions: augmented copies per image; column v uses ``fold_in(key(seed), v)``.
      seed: the key's seed.
      title: drawn above the grid.

    A row shares one grey scale, so an augmented copy looks as dark as its original.
    """
    import jax

    from jaxae.augment import AugmentConfig, augment, check_image_shape

    config = AugmentConfig() if config is None else config
    images = np.asarray(images, np.float32)
    check_image_shape(tuple(image_shape), images.shape[-1])
    key = jax.random.key(seed)
    moved = [
        np.asarray(augment(jax.random.fold_in(key, v), images, config, image_shape))
        for v in range(versions)
    ]
    fig = Figure(figsize=((versions + 1) * 0.9, len(images) * 0.9 + 0.4))
    axes = fig.subplots(len(images), versions + 1, squeeze=False)
    for i, row in enumerate(axes):
        low, high = float(images[i].min()), float(images[i].max())
        for ax, image in zip(row, [images[i]] + [m[i] for m in moved], strict=True):
            ax.imshow(image.reshape(image_shape), cmap="gray_r", vmin=low, vmax=high)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("clean", fontsize=8)
    for v in range(versions):
        axes[0, v + 1].set_title(f"aug. {v + 1}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
