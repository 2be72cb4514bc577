"""The whole experiment: train, encode, cluster, score; and the run folder it writes.

``run_experiment`` computes and returns everything; ``RunFolder`` and
``Checkpointer`` do the writing: checkpoints between chunks of epochs while
training, then the figures, the final checkpoint and ``report.json`` last, each
file atomically, so a folder with a report is a complete run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxae._files import write_json
from jaxae.checkpoint import save_checkpoint
from jaxae.cluster import check_clusters, kmeans, scores
from jaxae.config import ClusterConfig, ModelConfig, TrainConfig
from jaxae.data import Dataset
from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError
from jaxae.figures import clusters_figure, loss_figure, reconstructions_figure
from jaxae.preprocess import standardize
from jaxae.train import TrainResult, fit

METRICS = ("acc", "nmi", "ari")


class Experiment(NamedTuple):
    dataset: Dataset
    model_config: ModelConfig
    train_config: TrainConfig
    cluster_config: ClusterConfig
    result: TrainResult
    encoder: Encoder  # the selected (median-accuracy) model's
    clusters: np.ndarray  # the selected model's KMeans labels
    selected: int
    report: dict[str, Any]


def run_experiment(
    dataset: Dataset,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    cluster_config: ClusterConfig = ClusterConfig(),
    seeds: Sequence[int] | None = None,
    lrs: Sequence[float] | None = None,
    kmeans_backend: str = "sklearn",
    **fit_kwargs,
) -> Experiment:
    """Train on ``dataset`` (one model per seed and learning rate), cluster each
    model's codes and, with labels, score them and KMeans on the pixels.

    Scores over several seeds are reported as mean, std, min and max with the
    per-seed values; the figures and ``encoder`` are those of the median-accuracy
    model (median final loss without labels). ``kmeans_backend`` clusters the
    codes with scikit-learn or on the device; the pixel baseline always uses
    scikit-learn. ``fit_kwargs`` go to ``fit``.
    """
    n = dataset.images.shape[0]
    check_clusters(cluster_config.clusters, n)
    result = fit(
        dataset.images,
        model_config=model_config,
        train_config=train_config,
        seeds=seeds,
        lrs=lrs,
        **fit_kwargs,
    )
    stacked = len(result.models) > 1
    params = [
        jax.tree.map(lambda a, i=i: a[i], result.state.params) if stacked else result.state.params
        for i in range(len(result.models))
    ]
    histories = result.loss_history.reshape(len(result.models), -1)

    start = time.perf_counter()
    pixel_scores, models = {}, []
    if dataset.labels is not None:
        pixels = np.asarray(jax.jit(standardize)(dataset.images))
        for seed in sorted({seed for seed, _ in result.models}):
            config = dataclasses.replace(cluster_config, seed=seed)
            pixel_scores[seed] = scores(dataset.labels, kmeans(pixels, config))
    clusters = []
    for (seed, lr), p, history in zip(result.models, params, histories):
        entry = {"seed": seed, "lr": lr, "final_loss": _finite_or_none(history[-1])}
        if np.isfinite(history[-1]):
            codes = Encoder(p, model_config).encode(dataset.images)
            config = dataclasses.replace(cluster_config, seed=seed)
            clusters.append(kmeans(codes, config, backend=kmeans_backend))
            if dataset.labels is not None:
                entry["metrics"] = {
                    "autoencoder_kmeans": scores(dataset.labels, clusters[-1]),
                    "pixel_kmeans": pixel_scores[seed],
                }
        else:  # a diverged member of a learning-rate grid
            clusters.append(None)
            entry["diverged"] = True
        models.append(entry)
    kmeans_seconds = time.perf_counter() - start

    selected = _median_model(models)
    device = jax.devices()[0]
    report = {
        "dataset": dataset.name,
        "n": n,
        "input_dim": model_config.input_dim,
        "hidden": model_config.hidden,
        "code_dim": model_config.code_dim,
        "epochs": train_config.epochs,
        "batch_size": train_config.batch_size,
        "lr": models[selected]["lr"],
        "seed": models[selected]["seed"],
        "seeds": sorted({seed for seed, _ in result.models}),
        "lrs": sorted({lr for _, lr in result.models}),
        "dtype": model_config.dtype,
        "clusters": cluster_config.clusters,
        "n_init": cluster_config.n_init,
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "jax_version": jax.__version__,
        "jaxae_version": _version(),
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "steps": result.steps,
        "models_trained": len(result.models),
        "steps_per_second": result.steps / result.train_seconds,
        "samples_per_second": result.steps * train_config.batch_size / result.train_seconds,
        "kmeans_seconds": kmeans_seconds,
        "final_loss": models[selected]["final_loss"],
        "loss_history": [_finite_or_none(v) for v in histories[selected]],
        "selected_model": selected,
        "metrics": {},
        "models": models,
    }
    if dataset.labels is not None:
        lrs_seen = sorted({lr for _, lr in result.models})
        by_lr = {lr: _summary([m for m in models if m["lr"] == lr]) for lr in lrs_seen}
        report["metrics"] = by_lr[models[selected]["lr"]]
        if len(lrs_seen) > 1:
            report["metrics_by_lr"] = {str(lr): s for lr, s in by_lr.items()}
    encoder = Encoder(params[selected], model_config)
    return Experiment(
        dataset,
        model_config,
        train_config,
        cluster_config,
        result,
        encoder,
        clusters[selected],
        selected,
        report,
    )


def _finite_or_none(v) -> float | None:
    return float(v) if np.isfinite(v) else None


def _median_model(models: list[dict]) -> int:
    """The model at the median of accuracy (or of final loss without labels)."""
    alive = [i for i, m in enumerate(models) if not m.get("diverged")]
    if not alive:
        raise JaxaeError(
            "every model diverged: lower the learning rate (--lr) or use --dtype float32"
        )
    if "metrics" in models[alive[0]]:
        key = lambda i: models[i]["metrics"]["autoencoder_kmeans"]["acc"]
    else:
        key = lambda i: models[i]["final_loss"]
    ordered = sorted(alive, key=key)
    return ordered[(len(ordered) - 1) // 2]


def _summary(models: list[dict]) -> dict:
    """Scores of one model as they are; of several as mean, std, min, max and per-seed values."""
    scored = [m for m in models if "metrics" in m]
    out = {}
    for method in ("autoencoder_kmeans", "pixel_kmeans"):
        values = {k: np.array([m["metrics"][method][k] for m in scored]) for k in METRICS}
        if len(models) == 1:
            out[method] = {k: float(v[0]) for k, v in values.items()}
            continue
        out[method] = {k: float(v.mean()) for k, v in values.items()}
        for stat in ("std", "min", "max"):
            out[method][stat] = {k: float(getattr(np, stat)(v)) for k, v in values.items()}
        out[method]["per_seed"] = {k: v.tolist() for k, v in values.items()}
        out[method]["seeds"] = [m["seed"] for m in scored]
        out[method]["diverged"] = len(models) - len(scored)
    return out


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
            f"--out {out} already holds files: pass another folder, --force to replace it, "
            f"or --resume {out} to continue it"
        )
    return out


class RunFolder:
    """A run's folder, made on the first write (so bad input leaves nothing behind).

    With ``force``, a run already there is removed at that first write.
    """

    def __init__(self, path: str | os.PathLike, *, force: bool = False, resume: bool = False):
        self.path = Path(path) if resume else check_out_dir(path, force=force)
        self._clear = force and not resume
        self._ready = False

    def ready(self) -> Path:
        if not self._ready:
            if self._clear and self.path.is_dir():
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            self._ready = True
        return self.path


class Checkpointer:
    """``fit``'s ``on_chunk``: saves the training state between chunks.

    Saves at the first chunk boundary at least ``every_epochs`` epochs after the
    last save (or, when None, ``every_seconds`` seconds after it), and on demand
    (``save_latest``) after an interrupt or a divergence. Only process 0 writes.
    ``saved_epoch`` is the epoch already on disk (a resumed run's), if any.
    """

    def __init__(
        self,
        folder: RunFolder,
        *,
        every_epochs: int | None,
        every_seconds: float = 60.0,
        saved_epoch: int | None = None,
        **checkpoint_kwargs,
    ):
        self.folder, self.every_epochs, self.every_seconds = folder, every_epochs, every_seconds
        self.kwargs = checkpoint_kwargs
        self.latest = None
        self.saved_epoch, self.saved_time = saved_epoch, time.monotonic()

    def __call__(self, epoch: int, state, history: np.ndarray) -> None:
        self.latest = (epoch, state, np.array(history))
        if self.every_epochs is not None:
            due = epoch - (self.saved_epoch or 0) >= self.every_epochs
        else:
            due = time.monotonic() - self.saved_time >= self.every_seconds
        if due:
            self.save_latest()

    def save_latest(self) -> int | None:
        """Save the last state seen (if not saved yet); returns its epoch, or None."""
        if self.latest is None:
            return self.saved_epoch
        epoch, state, history = self.latest
        if epoch != self.saved_epoch and jax.process_index() == 0:
            epochs = self.kwargs["train_config"].epochs
            full = np.full((*history.shape[:-1], epochs), np.nan, np.float32)
            full[..., :epoch] = history
            save_checkpoint(
                self.folder.ready(), state, loss_history=full, epoch=epoch, **self.kwargs
            )
        self.saved_epoch, self.saved_time = epoch, time.monotonic()
        return epoch


@contextlib.contextmanager
def stop_on_signals():
    """While active, SIGINT and SIGTERM set a flag instead of killing the process.

    Yields a callable that says whether a signal came; a second signal
    interrupts at once as usual.
    """
    received = []

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield lambda: False
        return
    try:
        yield lambda: bool(received)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def save_run(experiment: Experiment, folder: RunFolder, *, chunk: int | None, run: dict) -> Path:
    """Write the figures, the final checkpoint and report.json (last) into the folder."""
    if jax.process_index() != 0:
        return folder.path
    out = folder.ready()
    ds, res = experiment.dataset, experiment.result
    save_checkpoint(
        out,
        res.state,
        model_config=experiment.model_config,
        train_config=experiment.train_config,
        loss_history=res.loss_history,
        epoch=experiment.train_config.epochs,
        models=res.models,
        chunk=chunk,
        selected=experiment.selected,
        run=run,
    )
    chosen = experiment.report["models"][experiment.selected]
    acc = chosen.get("metrics", {}).get("autoencoder_kmeans", {}).get("acc")
    title = f"KMeans on autoencoder codes, {Path(ds.name).name}" + (
        f", ACC {acc:.3f}" if acc is not None else ""
    )
    clusters_figure(
        ds.images, experiment.clusters, ds.image_shape, out / "clusters.png", title=title
    )
    loss_figure(res.loss_history, out / "loss.png", selected=experiment.selected)
    sample = ds.images[:10]
    recon = experiment.encoder.reconstruct(sample)
    reconstructions_figure(
        np.asarray(standardize(sample)), recon, ds.image_shape, out / "reconstructions.png"
    )
    write_json(out / "report.json", experiment.report)
    return out
