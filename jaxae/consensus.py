"""One answer from many seeds: all models' codes side by side, clustered once.

A run trains S models at once: S views of the same images. Where one seed went
wrong (a bad start, a merged pair of clusters), the others rarely went wrong the
same way. The run's answer (its ``clusters.npy``, figures and ``predict``) is one
clustering of every model's codes side by side (:func:`cluster_side_by_side`):
each model's codes centred and divided by their mean standard deviation, so every
model weighs the same, concatenated to ``S * code_dim`` features, and clustered by
the run's first clustering method (the method itself, or a DEC/IDEC refinement's
start). ``predict`` encodes a new image with every one of those models in one
program and assigns it the same way (:class:`SideBySideFit`). No labels enter it.

Measured beside three rules over the S partitions (the medoid below, a vote, and a
cut of the images-to-clusters graph; ``bench/studies/consensus_rules.py``,
``bench/results/consensus-rules.md``): on MNIST the codes side by side beat every
rule and the seeds' mean (mnist-5k, five seeds: 0.972 against the medoid's 0.961
and the mean's 0.952); on Fashion-MNIST, over four runs, they average 0.601 against
the mean's 0.587 and the medoid's 0.581, below the mean on one run, and UMAP's seed
moves one fit by up to 8 points.

The medoid (:func:`consensus`), the partition with the highest mean adjusted Rand
index with the others, still names the run's *kept model*: the one whose encoder
``jaxae.load(run).encode`` gives, whose loss and reconstructions are drawn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from sklearn.metrics import adjusted_rand_score

from jaxae import methods
from jaxae.cluster import scores
from jaxae.config import ClusterConfig, ModelConfig
from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError

# The keys SideBySideFit adds to its method's arrays in clusterer.npz.
MEMBER_KEYS = ("members_models", "members_shift", "members_scale")


class Consensus(NamedTuple):
    """Which of the partitions a run keeps, and why.

    Attributes:
      chosen: index (into the partitions given) of the one kept.
      agreement: ``(S,)`` mean adjusted Rand index of each partition with the
        others (1.0 for a single one).
    """

    chosen: int
    agreement: np.ndarray


def consensus(partitions: Sequence[np.ndarray], *, ties: Sequence[int] | None = None) -> Consensus:
    """The partition that agrees most with the others, by mean adjusted Rand index.

    Args:
      partitions: S label arrays ``(N,)`` of the same N items.
      ties: an order of preference among the partitions (default: as given); of
        those with the highest agreement (to 1e-12), the first in this order wins.

    Example::

        >>> a = np.array([0, 0, 1, 1]); b = np.array([1, 1, 0, 0]); c = np.array([0, 1, 0, 1])
        >>> consensus([c, a, b]).chosen
        1
    """
    partitions = [np.asarray(p).reshape(-1) for p in partitions]
    if not partitions:
        raise JaxaeError("partitions is empty: pass at least one clustering")
    n = {len(p) for p in partitions}
    if len(n) != 1:
        raise JaxaeError(f"partitions must all label the same items, got lengths {sorted(n)}")
    s = len(partitions)
    ari = np.eye(s)
    for i in range(s):
        for j in range(i + 1, s):
            ari[i, j] = ari[j, i] = adjusted_rand_score(partitions[i], partitions[j])
    agreement = (ari.sum(axis=1) - 1.0) / max(s - 1, 1) if s > 1 else np.ones(1)
    order = list(range(s)) if ties is None else [int(i) for i in ties]
    if sorted(order) != list(range(s)):
        raise JaxaeError(f"ties must order all {s} partitions, got {list(ties)}")
    best = agreement.max()
    chosen = next(i for i in order if agreement[i] >= best - 1e-12)
    return Consensus(chosen, agreement)


def kept_model(models: list[dict], clusterings: list, dtype: str) -> tuple[int, list[float | None]]:
    """The run's kept model (whose encoder ``encode`` gives, whose loss and
    reconstructions are drawn, and whose clusters are the run's when it has one
    model alive), and each model's agreement with the others.

    The medoid of the models' clusterings (:func:`consensus`); among equally
    agreeing ones, the model at the median of final loss first.
    Chosen without labels, as every choice among seeds is: a run with labels keeps
    the model a run without them would keep (the scores of all models are reported).
    """
    alive = [i for i, m in enumerate(models) if not m.get("diverged")]
    if not alive:
        hint = " or use dtype=float32" if dtype != "float32" else ""
        raise JaxaeError(f"every model diverged: lower the learning rate (lr=){hint}")
    by_loss = sorted(alive, key=lambda i: models[i]["final_loss"])
    median = by_loss[(len(by_loss) - 1) // 2]
    ties = [median] + [i for i in by_loss if i != median]
    found = consensus([clusterings[i].labels for i in alive], ties=[alive.index(i) for i in ties])
    agreement: list[float | None] = [None] * len(models)
    for j, i in enumerate(alive):
        agreement[i] = float(found.agreement[j])
    return alive[found.chosen], agreement


@dataclasses.dataclass(frozen=True)
class SideBySideFit:
    """A method fitted on several models' codes side by side, and how new codes get there.

    Attributes:
      fitted: the method's fit (``jaxae.cluster.registry``) on ``(N, M * code_dim)``
        features.
      models: ``(M,)`` the run's models whose codes stand side by side, in order.
      shift: ``(M, code_dim)`` float32, what each model's codes are centred by.
      scale: ``(M,)`` float32, what each model's centred codes are divided by.

    ``jaxae.encoder.side_by_side_fn`` turns pixels into these features, and the
    ``Encoder`` predicts through it when its clusterer is one of these.
    """

    fitted: Any
    models: np.ndarray
    shift: np.ndarray
    scale: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return self.fitted.labels

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.fitted.predict(features)

    def labels_program(self):
        program = getattr(self.fitted, "labels_program", None)
        return None if program is None else program()

    def labels_fn(self):
        """The method's pure ``labels(features)`` (umap-gmm's JAX backend), else None."""
        labels_fn = getattr(self.fitted, "labels_fn", None)
        return None if labels_fn is None else labels_fn()

    def arrays(self) -> dict[str, np.ndarray] | None:
        inner = self.fitted.arrays()
        if inner is None:
            return None
        values = (np.asarray(self.models, np.int64), self.shift, self.scale)
        return {**inner, **dict(zip(MEMBER_KEYS, values))}

    @classmethod
    def split(cls, arrays: dict[str, np.ndarray]) -> tuple[dict, tuple | None]:
        """``clusterer.npz``'s arrays -> (the method's own, ``(models, shift, scale)``
        or None for a fit of one model's codes)."""
        if not any(k in arrays for k in MEMBER_KEYS):
            return arrays, None
        rest = {k: v for k, v in arrays.items() if k not in MEMBER_KEYS}
        models, shift, scale = (arrays[k] for k in MEMBER_KEYS)
        m = len(models)
        if models.ndim != 1 or shift.ndim != 2 or shift.shape[0] != m or scale.shape != (m,):
            raise ValueError(f"members of shapes {models.shape}, {shift.shape}, {scale.shape}")
        return rest, (models.astype(np.int64), shift.astype(np.float32), scale.astype(np.float32))


def cluster_side_by_side(
    params: Any,
    images: np.ndarray,
    alive: Sequence[bool],
    *,
    model_config: ModelConfig,
    cluster_config: ClusterConfig,
    seed: int,
    devices: int | str | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
) -> methods.Clustering | None:
    """One clustering of every alive model's codes side by side; None for fewer than two.

    ``params``: the models' final encoder parameters, leading model axis (DEC/IDEC:
    refined, or the start where the guard kept it). The method is the run's first
    (``methods.start_method``), seeded with ``seed``.
    """
    models = np.flatnonzero(np.asarray(alive, bool))
    if len(models) < 2:
        return None
    members = jax.tree.map(lambda a: np.asarray(a)[models], params)
    m, width = len(models), model_config.code_dim
    ones = (np.zeros((m, width), np.float32), np.ones(m, np.float32))
    raw = Encoder.side_by_side(members, model_config, images, *ones).reshape(-1, m, width)
    raw = raw.astype(np.float64)
    shift = raw.mean(axis=0).astype(np.float32)
    scale = raw.std(axis=0).mean(axis=1)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # a model of constant codes
    features = Encoder.side_by_side(members, model_config, images, shift, scale)
    method = methods.start_method(cluster_config)
    config = dataclasses.replace(cluster_config, method=method, seed=int(seed))
    found = methods.fit_features(features, config, devices, should_stop, progress)
    return dataclasses.replace(found, fitted=SideBySideFit(found.fitted, models, shift, scale))


def consensus_entry(
    models: list[dict],
    selected: int,
    agreement: list[float | None],
    together: methods.Clustering | None,
    labels: np.ndarray | None,
    *,
    key: str,
) -> dict:
    """The report's ``consensus``: the kept model, each model's agreement, the rule that
    made the run's clusters, the models whose codes stand side by side, and the run's
    clusters' scores under ``key`` (with labels)."""
    entry = {"model": selected, "seed": models[selected]["seed"], "agreement": agreement}
    if together is None:  # one model alive
        entry["rule"] = "the kept model's own clustering"
        entry["metrics"] = models[selected].get("metrics", {})
        return entry
    members = [int(i) for i in together.fitted.models]
    entry["rule"] = (
        f"the codes of {len(members)} models side by side, clustered once by {together.method}"
    )
    entry["models"] = members
    entry["metrics"] = {} if labels is None else {key: scores(labels, together.labels)}
    return entry
