"""The whole experiment: train, encode, cluster, score; then write the run folder."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxae.checkpoint import save_checkpoint
from jaxae.cluster import check_clusters, kmeans, scores
from jaxae.config import ClusterConfig, ModelConfig, TrainConfig
from jaxae.data import Dataset, standardize
from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError
from jaxae.figures import clusters_figure, loss_figure, reconstructions_figure
from jaxae.io import write_json
from jaxae.train import TrainResult, fit


class Experiment(NamedTuple):
    dataset: Dataset
    model_config: ModelConfig
    train_config: TrainConfig
    cluster_config: ClusterConfig
    result: TrainResult
    encoder: Encoder
    clusters: np.ndarray
    report: dict[str, Any]


def run_experiment(
    dataset: Dataset,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    cluster_config: ClusterConfig = ClusterConfig(),
    progress: bool = True,
) -> Experiment:
    """Train on ``dataset``, cluster the codes; with labels, score them and the pixel baseline."""
    n = dataset.images.shape[0]
    check_clusters(cluster_config.clusters, n)
    result = fit(
        dataset.images, model_config=model_config, train_config=train_config, progress=progress
    )
    encoder = Encoder(result.state.params, model_config)
    codes = encoder.encode(dataset.images)
    start = time.perf_counter()
    clusters = kmeans(codes, cluster_config)
    kmeans_seconds = time.perf_counter() - start

    metrics = {}
    if dataset.labels is not None:
        pixels = np.asarray(jax.jit(standardize)(dataset.images))
        metrics = {
            "autoencoder_kmeans": scores(dataset.labels, clusters),
            "pixel_kmeans": scores(dataset.labels, kmeans(pixels, cluster_config)),
        }
    device = jax.devices()[0]
    report = {
        "dataset": dataset.name,
        "n": n,
        "input_dim": model_config.input_dim,
        "hidden": model_config.hidden,
        "code_dim": model_config.code_dim,
        "epochs": train_config.epochs,
        "batch_size": train_config.batch_size,
        "lr": train_config.lr,
        "seed": train_config.seed,
        "dtype": model_config.dtype,
        "clusters": cluster_config.clusters,
        "n_init": cluster_config.n_init,
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
        "jaxae_version": _version(),
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "steps": result.steps,
        "steps_per_second": result.steps / result.train_seconds,
        "samples_per_second": result.steps * train_config.batch_size / result.train_seconds,
        "kmeans_seconds": kmeans_seconds,
        "final_loss": float(result.loss_history[-1]),
        "loss_history": [float(v) for v in result.loss_history],
        "metrics": metrics,
    }
    return Experiment(
        dataset, model_config, train_config, cluster_config, result, encoder, clusters, report
    )


def _version() -> str:
    from jaxae import __version__

    return __version__


def check_out_dir(out: str | os.PathLike, *, force: bool = False) -> Path:
    """Refuse an output folder that already holds files, unless ``force``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise JaxaeError(f"--out {out} is a file: pass a folder name")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise JaxaeError(
            f"--out {out} already holds files: pass another folder or --force to replace it"
        )
    return out


def save_run(experiment: Experiment, out: str | os.PathLike, *, force: bool = False) -> Path:
    """Write report.json, the figures and the checkpoint into ``out``.

    Everything is written into a temporary sibling folder that is renamed to
    ``out`` at the end, so ``out`` is either absent, the old run, or complete.
    """
    out = check_out_dir(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write(experiment, tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write(experiment: Experiment, folder: Path) -> None:
    ds, res = experiment.dataset, experiment.result
    save_checkpoint(
        folder,
        res.state,
        model_config=experiment.model_config,
        train_config=experiment.train_config,
        loss_history=res.loss_history,
        epoch=experiment.train_config.epochs,
    )
    acc = experiment.report["metrics"].get("autoencoder_kmeans", {}).get("acc")
    title = f"KMeans on autoencoder codes, {ds.name}" + (
        f", ACC {acc:.3f}" if acc is not None else ""
    )
    clusters_figure(
        ds.images, experiment.clusters, ds.image_shape, folder / "clusters.png", title=title
    )
    loss_figure(res.loss_history, folder / "loss.png")
    sample = ds.images[:10]
    recon = experiment.encoder.reconstruct(sample)
    reconstructions_figure(
        np.asarray(standardize(sample)), recon, ds.image_shape, folder / "reconstructions.png"
    )
    write_json(folder / "report.json", experiment.report)
