"""The whole experiment, computed: data, pretraining, clustering, scores.

``run_experiment(config)`` loads the data, trains one autoencoder per seed and
learning rate in one program, clusters every model's codes with the configured
method, scores them against the labels (when there are any) beside the same
method and KMeans on the pixels, and returns an ``Experiment`` with a typed
``Report``. It writes nothing: ``jaxae.rundir`` writes run folders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxae import cluster, methods
from jaxae.augment import AugmentConfig, check_image_shape
from jaxae.config import DEFAULT_N, DataConfig, ExperimentConfig, ModelConfig
from jaxae.consensus import cluster_side_by_side, consensus_entry, kept_model
from jaxae.data import Dataset, load_dataset
from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError
from jaxae.loop import chunk_for
from jaxae.preprocess import fit_scaling, scale
from jaxae.train import TrainResult, check_batch, fit
from jaxae.train_state import TrainState

METRICS = ("acc", "nmi", "ari")


class Resume(NamedTuple):
    """Where a run stopped: the state (model axis kept) after ``epoch`` epochs, and the
    DEC/IDEC refinement where one had begun (``methods.Refinement``)."""

    state: TrainState
    epoch: int
    history: np.ndarray  # (models, epochs)
    chunk: int
    train_seconds: float = 0.0
    refinement: methods.Refinement | None = None


class Hooks(NamedTuple):
    """What a run folder's owner hears while an experiment computes (all optional).

    ``on_chunk(epoch, state, history)`` between chunks of pretraining;
    ``on_pretrained(result)`` once pretraining is done, before clustering;
    ``on_refine(refinement)`` between chunks of a DEC/IDEC refinement;
    ``should_stop()`` polled every couple of seconds at every stage.
    """

    on_chunk: Callable[[int, TrainState, np.ndarray], None] | None = None
    on_pretrained: Callable[[TrainResult], None] | None = None
    on_refine: Callable[[methods.Refinement], None] | None = None
    should_stop: Callable[[], bool] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Report:
    """What a run found; ``to_dict()`` is report.json (``jaxae.rundir`` adds its ``command``).

    ``metrics`` holds, per method key (``"autoencoder_kmeans"``, ``"pixel_kmeans"``,
    and with another method e.g. ``"autoencoder_gmm"``, ``"pixel_gmm"``), the
    scores as mean with ``std``, ``min``, ``max`` and ``per_seed`` over seeds
    (a single model: its scores); with DEC or IDEC, ``"pretrained_kmeans"`` (or
    ``"pretrained_umap_gmm"``, ``ClusterConfig.refine.start``) scores the clusters
    the refinement started from. ``models`` has one entry per trained model (with
    DEC or IDEC, its ``guard``: whether the refinement guard stopped it, and what
    it kept). ``consensus``: the rule that made the run's clusters (with several
    models alive, all their codes side by side: ``models``, ``jaxae.consensus``) and
    their scores, the kept model (``selected_model``, whose encoder ``encode`` gives)
    and each model's agreement with the others. ``stage_seconds``: wall seconds of
    ``pretraining`` (this process's part of it), ``clustering`` (for DEC/IDEC split
    further into ``kmeans_start`` or ``umap_gmm_start``, and ``refinement``),
    ``side_by_side`` (several models) and ``baselines``.
    """

    dataset: str
    n: int
    input_dim: int
    image_shape: tuple[int, ...]  # (H, W), or (H, W, 3) for RGB
    class_names: list[str] | None  # a label's name at its index (a folder's classes)
    fingerprint: str
    model: dict
    train: dict
    cluster: dict
    epochs: int
    batch_size: int
    lr: float
    seed: int
    seeds: list[int]
    lrs: list[float]
    method: str
    backend: str
    device_kind: str
    device_count: int
    process_count: int
    jax_version: str
    jaxae_version: str
    compile_seconds: float
    train_seconds: float
    steps: int
    models_trained: int
    steps_per_second: float
    samples_per_second: float
    cluster_seconds: float
    baseline_seconds: float
    stage_seconds: dict[str, float]
    final_loss: float | None
    loss_history: list[float | None]
    selected_model: int
    consensus: dict
    alive_code_units: list[int]
    metrics: dict
    metrics_by_lr: dict | None
    models: list[dict]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["metrics_by_lr"] is None:
            del out["metrics_by_lr"]
        # Keys of the first report format, kept for readers of report.json.
        out.update(
            hidden=list(self.model["hidden"]),
            code_dim=self.model["code_dim"],
            dtype=self.model["dtype"],
            clusters=self.cluster["clusters"],
            n_init=self.cluster["n_init"],
            kmeans_seconds=self.cluster_seconds,
        )
        return out


class Experiment(NamedTuple):
    config: ExperimentConfig  # with the model's input_dim filled in
    dataset: Dataset
    result: TrainResult  # leading model axis on every leaf, M = 1 included
    params: Any  # the models' final encoder parameters (refined by DEC/IDEC), model axis
    clusterings: list[methods.Clustering | None]  # per model; None where it diverged
    refinement: methods.Refinement | None  # DEC/IDEC's final state, for the checkpoint
    selected: int  # the kept model: its encoder, loss and reconstructions
    kept: methods.Clustering  # the run's clusters: all models' codes side by side, or one's
    chunk: int
    report: Report

    @property
    def encoder(self) -> Encoder:
        """The kept model's encoder, with the run's clusterer (and every model, which a
        clusterer of the codes side by side predicts with)."""
        params = jax.tree.map(lambda a: a[self.selected], self.params)
        return Encoder(params, self.config.model, clusterer=self.kept, members=self.params)

    @property
    def clusters(self) -> np.ndarray:
        return self.kept.labels


def load_data(config: DataConfig) -> Dataset:
    """The configured images; ``n=None`` keeps the first 3,000 where there are more."""
    n = None if config.n in (None, "all") else config.n
    dataset = load_dataset(
        config.source, n=n, data_dir=config.data_dir, image_size=config.image_size
    )
    if config.n is None and len(dataset.images) > DEFAULT_N:  # the original's data[:3000]
        dataset = dataset._replace(
            images=dataset.images[:DEFAULT_N],
            labels=None if dataset.labels is None else dataset.labels[:DEFAULT_N],
        )
    return dataset


def fingerprint(dataset: Dataset) -> str:
    """Rows, width and a SHA-256 of the images and labels: resume refuses other data."""
    h = hashlib.sha256(np.ascontiguousarray(dataset.images, np.float32).tobytes())
    if dataset.labels is not None:
        h.update(np.ascontiguousarray(dataset.labels, np.int64).tobytes())
    n, d = dataset.images.shape
    return f"{n}x{d}:{h.hexdigest()[:32]}"


def resolve(config: ExperimentConfig, dataset: Dataset) -> ExperimentConfig:
    """``config`` with the model's ``input_dim`` taken from the data, and checked against it."""
    n, d = dataset.images.shape
    model = config.model or ModelConfig(input_dim=d)
    if model.input_dim != d or model.image_shape is None:
        model = dataclasses.replace(model, input_dim=d, image_shape=tuple(dataset.image_shape))
    cluster.check_clusters(config.cluster.clusters, n)
    if model.scaling == "standardize" and (d < 2 or not np.ptp(dataset.images, axis=1).any()):
        raise JaxaeError(
            f"every image of {dataset.name} is constant ({d} pixel(s) each): standardised "
            "per image they are all zeros and there is nothing to learn; pass scaling=unit, "
            "or images with more than one value"
        )
    model = fit_scaling(model, dataset.images)
    for name in dict.fromkeys((config.cluster.method, methods.start_method(config.cluster))):
        method = cluster.METHODS[name]
        if method.check is not None:  # what the method needs, before training, not after
            method.check(config.cluster, n)
    check_batch(config.train.batch_size, n)  # before a run folder is claimed
    if augmentation(config) is not None:
        check_image_shape(model.image_shape, d)
    return dataclasses.replace(config, model=model)


def augmentation(config: ExperimentConfig) -> AugmentConfig | None:
    """The augmentation a run applies: pretraining's, else its DEC/IDEC refinement's
    (``--dec-shift``, ``--dec-rotate``; other methods do not refine); None for none."""
    refines = cluster.METHODS[config.cluster.method].refines_encoder
    stages = (config.train.augment, config.cluster.refine.augment if refines else None)
    return next((a for a in stages if a is not None and a.enabled), None)


def plan_chunk(config: ExperimentConfig, dataset: Dataset) -> int:
    """Epochs per compiled call for this run (checkpoints fall between them)."""
    return chunk_for(config.train, len(dataset.images), config.checkpoint_every)


def run_experiment(
    config: ExperimentConfig,
    *,
    dataset: Dataset | None = None,
    resume: Resume | None = None,
    progress: bool = True,
    hooks: Hooks | None = None,
    vectorize_models: bool | None = None,
) -> Experiment:
    """Train, cluster and score as ``config`` says; see the module docstring.

    Args:
      config: the experiment; ``config.model`` may leave ``input_dim`` to the data.
      dataset: the images, if already loaded (default: ``load_data(config.data)``).
      resume: continue from a saved state (see ``jaxae.lifecycle``): training from
        its epoch, a refinement from its step; a finished stage is not run again.
      progress, vectorize_models: as for ``jaxae.fit``.
      hooks: checkpoints and signals (:class:`Hooks`).

    Raises:
      jaxae.loop.Stopped: ``hooks.should_stop()`` returned True (or training diverged).

    Returns:
      An ``Experiment``; ``experiment.report.to_dict()`` is what report.json holds.

    Example::

        exp = run_experiment(ExperimentConfig(data=DataConfig(source="digits"), seeds=3))
        print(exp.report.metrics["autoencoder_kmeans"]["acc"])
    """
    hooks = Hooks() if hooks is None else hooks
    dataset = load_data(config.data) if dataset is None else dataset
    config = resolve(config, dataset)
    chunk = resume.chunk if resume is not None else plan_chunk(config, dataset)
    result = fit(
        dataset.images,
        model_config=config.model,
        train_config=config.train,
        seeds=config.seed_list,
        lrs=config.lr_list,
        devices=config.devices,
        epochs_per_chunk=chunk,
        initial=None if resume is None else resume.state,
        start_epoch=0 if resume is None else resume.epoch,
        history=None if resume is None else resume.history,
        progress=progress,
        on_chunk=hooks.on_chunk,
        should_stop=hooks.should_stop,
        vectorize_models=vectorize_models,
        keep_model_axis=True,
    )
    if hooks.on_pretrained is not None and (resume is None or resume.epoch < config.train.epochs):
        hooks.on_pretrained(result)
    if resume is not None:  # the report covers the whole run, not only this call
        steps_per_epoch = len(dataset.images) // config.train.batch_size
        result = result._replace(
            steps=config.train.epochs * steps_per_epoch,
            train_seconds=result.train_seconds + resume.train_seconds,
        )
    alive = np.isfinite(result.loss_history[:, -1])

    start = time.perf_counter()
    params, clusterings, refinement = methods.cluster_models(
        result.state.params,
        dataset.images,
        alive=alive,
        model_config=config.model,
        cluster_config=config.cluster,
        seeds=[seed for seed, _ in result.models],
        progress=progress,
        should_stop=hooks.should_stop,
        refinement=None if resume is None else resume.refinement,
        on_refine=hooks.on_refine,
        devices=config.devices,
    )
    cluster_seconds = time.perf_counter() - start

    start = time.perf_counter()
    baselines = {}
    if dataset.labels is not None:
        model = config.model
        pixels = np.asarray(
            jax.jit(scale, static_argnums=(1, 2))(dataset.images, model.scaling, model.data_range)
        )
        baselines = methods.pixel_baselines(
            pixels,
            config.cluster,
            seeds=sorted(set(config.seed_list)),
            labels=dataset.labels,
            progress=progress,
            should_stop=hooks.should_stop,
            devices=config.devices,
        )
    baseline_seconds = time.perf_counter() - start

    models = []
    for i, (seed, lr) in enumerate(result.models):
        entry = {"seed": seed, "lr": lr, "final_loss": _finite_or_none(result.loss_history[i, -1])}
        if clusterings[i] is None:
            entry["diverged"] = True
        else:
            entry.update(clusterings[i].summary())
            if dataset.labels is not None:
                metrics = {
                    f"autoencoder_{methods.key(config.cluster.method)}": cluster.scores(
                        dataset.labels, clusterings[i].labels
                    )
                }
                before = clusterings[i].before  # DEC/IDEC: what the refinement added
                if before is not None:
                    start = methods.key(config.cluster.refine.start)
                    metrics[f"pretrained_{start}"] = cluster.scores(dataset.labels, before)
                metrics.update({name: per_seed[seed] for name, per_seed in baselines.items()})
                entry["metrics"] = metrics
        models.append(entry)

    selected, agreement = kept_model(models, clusterings, config.model.dtype)
    alive_models = [c is not None for c in clusterings]
    start = time.perf_counter()
    together = cluster_side_by_side(
        params, dataset.images, alive_models, model_config=config.model,
        cluster_config=config.cluster, seed=models[selected]["seed"], devices=config.devices,
        should_stop=hooks.should_stop, progress=progress,
    )  # fmt: skip
    kept = clusterings[selected] if together is None else together
    side_by_side = {} if together is None else {"side_by_side": time.perf_counter() - start}
    codes_alive = [m.get("alive_code_units") for m in models]
    metrics, metrics_by_lr = {}, None
    if dataset.labels is not None:
        by_lr = {lr: _summary([m for m in models if m["lr"] == lr]) for lr in config.lr_list}
        metrics = by_lr[models[selected]["lr"]]
        if len(by_lr) > 1:
            metrics_by_lr = {str(lr): s for lr, s in by_lr.items()}
    from jaxae import __version__

    device = jax.devices()[0]
    n = len(dataset.images)
    report = Report(
        dataset=dataset.name,
        n=n,
        input_dim=config.model.input_dim,
        image_shape=tuple(dataset.image_shape),
        class_names=None if dataset.class_names is None else list(dataset.class_names),
        fingerprint=fingerprint(dataset),
        model=dataclasses.asdict(config.model),
        train=dataclasses.asdict(config.train),
        cluster=config.cluster.to_dict(),
        epochs=config.train.epochs,
        batch_size=config.train.batch_size,
        lr=models[selected]["lr"],
        seed=models[selected]["seed"],
        seeds=config.seed_list,
        lrs=config.lr_list,
        method=config.cluster.method,
        backend=jax.default_backend(),
        device_kind=device.device_kind,
        device_count=jax.device_count(),
        process_count=jax.process_count(),
        jax_version=jax.__version__,
        jaxae_version=__version__,
        compile_seconds=result.compile_seconds,
        train_seconds=result.train_seconds,
        steps=result.steps,
        models_trained=len(result.models),
        steps_per_second=result.steps / max(result.train_seconds, 1e-9),
        samples_per_second=result.steps * config.train.batch_size / max(result.train_seconds, 1e-9),
        cluster_seconds=cluster_seconds,
        baseline_seconds=baseline_seconds,
        stage_seconds={
            "pretraining": result.train_seconds,
            "clustering": cluster_seconds,
            **next((c.seconds for c in clusterings if c is not None and c.seconds), {}),
            **side_by_side,
            "baselines": baseline_seconds,
        },
        final_loss=models[selected]["final_loss"],
        loss_history=[_finite_or_none(v) for v in result.loss_history[selected]],
        selected_model=selected,
        consensus=consensus_entry(
            models,
            selected,
            agreement,
            together,
            dataset.labels,
            key=f"autoencoder_{methods.key(config.cluster.method)}",
        ),
        alive_code_units=[a for a in codes_alive if a is not None],
        metrics=metrics,
        metrics_by_lr=metrics_by_lr,
        models=models,
    )
    return Experiment(
        config, dataset, result, params, clusterings, refinement, selected, kept, chunk, report
    )


def _finite_or_none(v) -> float | None:
    return float(v) if np.isfinite(v) else None


def _summary(models: list[dict]) -> dict:
    """Scores of one model as they are; of several as mean, std, min, max and per-seed values."""
    scored = [m for m in models if "metrics" in m]
    if not scored:
        return {}
    out = {}
    for method in scored[0]["metrics"]:
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
