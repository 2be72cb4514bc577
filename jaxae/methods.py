"""The clustering stage of an experiment: each model's codes clustered by the
configured method, and the same methods on the pixels as baselines.

A ``Clustering`` is what one model's stage leaves: its labels on the training
images, what ``predict`` needs for new images, and a summary for the report.
The algorithms themselves live in ``jaxae.cluster``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxae import cluster
from jaxae.cluster.refine import config_for, restore_state, state_template
from jaxae.config import ClusterConfig, ModelConfig
from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError
from jaxae.loop import check_stop, polled

# A code unit is alive when it is non-zero for at least this share of the images.
ALIVE_FRACTION = 0.01


@dataclasses.dataclass(frozen=True)
class Clustering:
    """One model's clusters: ``labels`` (N,) on the training images, and the
    ``fitted`` method that predicts new codes (``jaxae.cluster.registry``); None in
    a run folder that keeps nothing to predict with, for the reason ``missing``.
    ``before``: for DEC and IDEC, the labels of the clustering of the pretrained
    codes that the refinement started from (``ClusterConfig.refine.start``)."""

    method: str
    labels: np.ndarray
    fitted: Any = None
    alive_code_units: int | None = None
    details: dict | None = None
    missing: str | None = None
    # DEC/IDEC: the labels of the clustering the refinement started from, and the
    # seconds of its stages (not in the report's per-model entries: a resume
    # would change them).
    before: np.ndarray | None = None
    seconds: dict[str, float] | None = None

    def predict(self, codes: np.ndarray) -> np.ndarray:
        """(N, code_dim) codes -> (N,) cluster labels."""
        if self.fitted is None:
            raise JaxaeError(
                self.missing
                or f"this {self.method} run has no saved clusters (it has not finished): "
                "finish it with jaxae run --resume RUN_DIR, then predict"
            )
        return np.asarray(self.fitted.predict(codes))

    def summary(self) -> dict[str, Any]:
        out = {"method": self.method, **(self.details or {})}
        if self.alive_code_units is not None:
            out["alive_code_units"] = self.alive_code_units
        return out


def alive_units(codes: np.ndarray) -> int:
    """Code units that are non-zero for at least 1% of the images (dead ReLUs are not)."""
    return int(((np.abs(codes) > 0).mean(axis=0) >= ALIVE_FRACTION).sum())


class Refinement(NamedTuple):
    """Where a DEC/IDEC refinement is: its host state after ``step`` steps, for ``models``."""

    state: Any
    step: int
    models: list[int]


def cluster_models(
    params: Any,
    images: np.ndarray,
    *,
    alive: np.ndarray,
    model_config: ModelConfig,
    cluster_config: ClusterConfig,
    seeds: Sequence[int],
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
    refinement: Refinement | None = None,
    on_refine: Callable[[Refinement], None] | None = None,
    devices: int | str | None = None,
) -> tuple[Any, list[Clustering | None], Refinement | None]:
    """Cluster each model's codes: the (possibly refined) params, the clusterings and,
    for DEC and IDEC, the final :class:`Refinement`.

    ``params`` has a leading model axis; models that are not ``alive`` (diverged)
    get ``None``. ``should_stop`` is polled between models and every couple of
    seconds of a fit's compiled loops (a refinement, the JAX UMAP, the JAX
    mixture's EM): True raises ``jaxae.loop.Stopped``. A refinement
    resumes from ``refinement`` and hands its state to ``on_refine`` at every
    chunk of steps, when it converges, and before a stop. ``devices``: the run's
    (``ExperimentConfig.devices``), for a method that fits on a mesh (the JAX UMAP).
    """
    method = cluster_config.method
    if cluster.METHODS[method].refines_encoder:
        return _refine(
            params, images, alive, model_config, cluster_config, seeds, progress,
            should_stop, refinement, on_refine, devices,
        )  # fmt: skip
    out: list[Clustering | None] = []
    bar = dict(desc=method, unit="model", delay=2, disable=not progress, leave=False)
    for i, seed in enumerate(tqdm(seeds, **bar)):
        check_stop(should_stop, f"clustering stopped after {i} of {len(seeds)} models")
        if not alive[i]:
            out.append(None)
            continue
        p = jax.tree.map(lambda a, i=i: a[i], params)
        codes = Encoder(p, model_config).encode(images)
        config = dataclasses.replace(cluster_config, seed=seed)
        fitted = fit_features(codes, config, devices, should_stop, progress)
        out.append(dataclasses.replace(fitted, alive_code_units=alive_units(codes)))
    check_stop(should_stop, f"clustering stopped after {len(seeds)} of {len(seeds)} models")
    return params, out, None


def fit_features(
    features: np.ndarray, config: ClusterConfig, devices, should_stop=None, progress=False
) -> Clustering:
    """``config.method`` (one that does not refine the encoder) on (N, F) features,
    polling ``should_stop`` inside (``jaxae.cluster.registry.Method.fit``)."""
    fitted = cluster.METHODS[config.method].fit(
        features, config, devices=devices, should_stop=should_stop, progress=progress
    )
    return Clustering(config.method, fitted.labels, fitted)


def restore_refinement(
    saved: dict, step: int, models: list[int], params: Any, n: int, *,
    model_config: ModelConfig, cluster_config: ClusterConfig,
) -> Refinement:  # fmt: skip
    """A checkpoint's refinement (nested dicts) as the state :func:`cluster_models` resumes."""
    pretrained = jax.tree.map(lambda a: np.asarray(a)[models], params)
    config = config_for(cluster_config, n, model_config.image_shape)
    template = state_template(pretrained, n, model_config=model_config, config=config)
    return Refinement(restore_state(saved, template), step, list(models))


def _refine(params, images, alive, model_config, cluster_config, seeds, progress,
            should_stop, refinement, on_refine, devices):  # fmt: skip
    """DEC or IDEC over every model that did not diverge, in one program."""
    from jaxae.preprocess import scale

    c = cluster_config
    keep = np.flatnonzero(alive)
    if not len(keep):
        return params, [None] * len(seeds), None
    config = config_for(c, len(images), model_config.image_shape)
    x = scale(images, model_config.scaling, model_config.data_range)
    pretrained = jax.tree.map(lambda a: np.asarray(a)[keep], params)
    models = [int(i) for i in keep]
    kept_seeds = [seeds[i] for i in keep]
    # The clusters of the pretrained codes the refinement starts from: their labels
    # are scored beside the refined ones. A resume fits them again (seeded: the same
    # labels).
    start = time.perf_counter()
    starts: list[Clustering] = []  # the start's own fits, kept where the guard fires
    initial = cluster.init_refinement(
        pretrained, x, model_config=model_config, config=config, seeds=kept_seeds,
        start=_start(c, devices, should_stop, starts),
    )  # fmt: skip
    before = np.asarray(jax.device_get(initial.labels))
    start_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = cluster.refine(
        x, pretrained, model_config=model_config, config=config,
        seeds=kept_seeds, progress=progress, should_stop=should_stop,
        initial=initial if refinement is None else refinement.state,
        start_step=0 if refinement is None else refinement.step,
        on_chunk=None if on_refine is None
        else lambda done, state: on_refine(Refinement(state, done, models)),
    )  # fmt: skip
    refine_seconds = time.perf_counter() - start
    refined = jax.tree.map(np.array, params)
    for j, i in enumerate(keep):
        for leaf, new in zip(jax.tree.leaves(refined), jax.tree.leaves(result.params)):
            leaf[i] = new[j]
    out: list[Clustering | None] = [None] * len(seeds)
    for j, i in enumerate(keep):
        p = jax.tree.map(lambda a, i=i: a[i], refined)
        codes = Encoder(p, model_config).encode(images)
        fired = int(result.guard_step[j]) >= 0
        details = {
            "refine_steps": int(result.steps[j]),
            "converged": bool(result.converged[j]) and not fired,
            "guard": guard_details(result, j, config.max_iter, c.refine.start),
        }
        # Same of all models together: they start and refine in one program.
        seconds = {f"{key(c.refine.start)}_start": start_seconds, "refinement": refine_seconds}
        if fired and starts:  # the guard kept the start: its own clusters and predict
            kept = starts[j]
            out[i] = dataclasses.replace(
                kept, alive_code_units=alive_units(codes), details=details,
                before=before[j], seconds=seconds,
            )  # fmt: skip
            continue
        # Labels as predict gives them (nearest centre of the encoder's own codes), so
        # that jaxae.load(run).predict on the training images reproduces them.
        centers = np.asarray(result.centers[j], np.float64)
        labels = cluster.predict_nearest(centers, codes)
        out[i] = Clustering(
            c.method, labels, cluster.KMeansFit(labels, centers),
            alive_code_units=alive_units(codes), details=details, before=before[j],
            seconds=seconds,
        )  # fmt: skip
    done = int(np.max(result.steps))  # the models that did not converge took every step
    return refined, out, Refinement(result.state, done, models)


def guard_details(result, j: int, budget: int, start: str) -> dict:
    """What the guard did to model ``j`` of a ``RefineResult`` in a refinement of at
    most ``budget`` steps, for the report."""
    if int(result.guard_step[j]) < 0:
        return {"fired": False, "budget": budget}
    return {
        "fired": True,
        "signal": str(result.guard_signal[j]),
        "step": int(result.guard_step[j]),
        "budget": budget,
        "kept": f"the {start} start",
    }


def _start(cluster_config: ClusterConfig, devices, should_stop, fits: list | None = None):
    """The refinement's starting clusters as ``init_refinement`` takes them: None for
    DEC's KMeans, else ``(codes, seed) -> labels`` of the method ``refine.start``,
    which first checks ``should_stop`` (a fit cannot be stopped inside) and appends
    each model's :class:`Clustering` to ``fits``."""
    method = cluster_config.refine.start
    if method == "kmeans":
        return None

    def start(codes, seed):
        check_stop(should_stop, f"the {method} start of the refinement stopped")
        config = dataclasses.replace(cluster_config, method=method, seed=seed)
        fitted = fit_features(codes, config, devices, should_stop)
        if fits is not None:
            fits.append(fitted)
        return fitted.labels

    return start


def key(method: str) -> str:
    """A method's name in report keys: ``umap-gmm`` -> ``umap_gmm``."""
    return method.replace("-", "_")


def method_label(method_key: str) -> str:
    """A method's report key as people read it: ``umap_gmm`` -> ``UMAP + GMM``."""
    return {key(name): m.label for name, m in cluster.METHODS.items()}.get(method_key, method_key)


def label(score_key: str) -> str:
    """A key of a report's ``metrics`` as people read it, what was clustered and how:
    ``autoencoder_umap_gmm`` -> ``autoencoder + UMAP + GMM``."""
    source, _, method = score_key.partition("_")
    sources = {"autoencoder": "autoencoder", "pretrained": "pretrained codes", "pixel": "pixels"}
    return f"{sources.get(source, source)} + {method_label(method)}"


def start_method(cluster_config: ClusterConfig) -> str:
    """The method of the run's first clustering of the codes: its own, or for DEC and
    IDEC the one the refinement starts from (``refine.start``)."""
    if cluster.METHODS[cluster_config.method].refines_encoder:
        return cluster_config.refine.start
    return cluster_config.method


def baseline_method(cluster_config: ClusterConfig) -> str | None:
    """The method whose run on the pixels stands beside KMeans' as a baseline: the
    run's own, or for DEC and IDEC the clustering the refinement starts from when it
    is not KMeans; None when KMeans on the pixels is the only baseline."""
    method = start_method(cluster_config)
    return method if cluster.METHODS[method].pixel_baseline else None


def pixel_baselines(
    pixels: np.ndarray,
    cluster_config: ClusterConfig,
    *,
    seeds: Sequence[int],
    labels: np.ndarray,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
    devices: int | str | None = None,
) -> dict[str, dict[int, dict[str, float]]]:
    """Scores of KMeans (and of the method, where it applies) on the scaled pixels, per
    seed; ``devices`` as for :func:`cluster_models`. ``should_stop`` is polled after
    each fit and every couple of seconds inside the JAX UMAP and mixture: True
    raises ``jaxae.loop.Stopped``."""
    out: dict[str, dict[int, dict[str, float]]] = {"pixel_kmeans": {}}
    method = baseline_method(cluster_config)  # DEC and IDEC need an encoder
    if method is not None:
        out[f"pixel_{key(method)}"] = {}
    # Shown from the start (the seeds bar moves only when a seed is done).
    bar = dict(desc="pixel baselines", unit="seed", disable=not progress, leave=False)
    for done, seed in enumerate(tqdm(seeds, **bar)):
        stopped = f"the pixel baselines stopped after {done} of {len(seeds)} seeds"
        check_stop(should_stop, stopped)
        config = dataclasses.replace(cluster_config, seed=seed)
        fitted = polled(lambda c=config: cluster.kmeans(pixels, c), should_stop, stopped)
        check_stop(should_stop, stopped)
        out["pixel_kmeans"][seed] = cluster.scores(labels, fitted)
        if method is not None:
            config = dataclasses.replace(config, method=method)
            fitted = fit_features(pixels, config, devices, should_stop, progress)
            out[f"pixel_{key(method)}"][seed] = cluster.scores(labels, fitted.labels)
    check_stop(should_stop, f"the pixel baselines stopped after {len(seeds)} seeds")
    return out
