"""Figures of a run, drawn with matplotlib's Agg backend and written atomically."""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from jaxae._files import atomic_write


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG atomically, then close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def _show(ax, image: np.ndarray, shape: tuple[int, int]) -> None:
    ax.imshow(image.reshape(shape), cmap="gray_r")
    ax.set_xticks([])
    ax.set_yticks([])


def clusters_figure(
    images: np.ndarray,
    clusters: np.ndarray,
    image_shape: tuple[int, int],
    path: str | os.PathLike,
    *,
    per_cluster: int = 10,
    title: str | None = None,
) -> None:
    """One row per cluster with up to ``per_cluster`` of its images (the original figure)."""
    ids = np.unique(clusters)
    fig, axes = plt.subplots(
        len(ids), per_cluster, figsize=(per_cluster * 0.8, len(ids) * 0.8), squeeze=False
    )
    for row, cluster in zip(axes, ids):
        members = np.flatnonzero(clusters == cluster)[:per_cluster]
        for ax in row:
            ax.axis("off")
        for ax, i in zip(row, members):
            ax.axis("on")
            _show(ax, images[i], image_shape)
        row[0].axis("on")
        row[0].set_ylabel(
            f"{cluster}\n({np.sum(clusters == cluster)})", rotation=0, labelpad=18, fontsize=8
        )
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def loss_figure(loss_history: np.ndarray, path: str | os.PathLike, *, selected: int = 0) -> None:
    """Training loss per epoch, log scale; (models, epochs) draws every model, ``selected`` bold."""
    histories = np.atleast_2d(loss_history)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = np.arange(1, histories.shape[1] + 1)
    for i, h in enumerate(histories):
        if i != selected:
            ax.plot(epochs, h, color="0.7", lw=0.8)
    ax.plot(
        epochs, histories[selected], color="C0", label="shown model" if len(histories) > 1 else None
    )
    if len(histories) > 1:
        ax.legend()
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error (standardised pixels)")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def reconstructions_figure(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    image_shape: tuple[int, int],
    path: str | os.PathLike,
) -> None:
    """Originals (top row) above their reconstructions (bottom row)."""
    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(n * 0.9, 2.1), squeeze=False)
    for i in range(n):
        _show(axes[0, i], originals[i], image_shape)
        _show(axes[1, i], reconstructions[i], image_shape)
    axes[0, 0].set_ylabel("original", fontsize=8)
    axes[1, 0].set_ylabel("decoded", fontsize=8)
    save_figure(fig, path)
