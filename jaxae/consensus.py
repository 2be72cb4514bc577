"""One answer from many seeds: the clustering that agrees most with the others.

A run trains S models at once and clusters each one's codes: S partitions of the
same images. Where one seed went wrong (a bad start, a merged pair of clusters),
the others rarely went wrong the same way, so the partition with the highest mean
agreement with the rest (the medoid under the adjusted Rand index) is the one a
run hands out: its ``clusters.npy``, its figures and its ``predict``, which is that
model's own predict, so new images get the consensus's answer by construction and
predict on the training images still gives ``clusters.npy``. No labels of the data
enter the choice; permuting a partition's cluster numbers does not change it.

A vote (cluster numbers matched to the medoid's, then each image's most frequent
label), a cut of the images-to-clusters graph, or one clustering of all models'
codes side by side would need every model to predict a new image. Measured on MNIST
and Fashion-MNIST (``bench/studies/consensus_rules.py``,
``bench/results/consensus-rules.md``), the codes side by side are the best of them on
MNIST and level with the seeds' mean on Fashion-MNIST, where the medoid and the vote
fall below it on two runs of three.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from sklearn.metrics import adjusted_rand_score

from jaxae.errors import JaxaeError


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
