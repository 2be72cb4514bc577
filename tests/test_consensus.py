"""One answer from many seeds: the medoid partition, blind to how clusters are numbered."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from jaxae.consensus import consensus
from jaxae.errors import JaxaeError

RNG = np.random.default_rng(0)
TRUTH = RNG.integers(0, 5, 400)


def noisy(share: float, seed: int) -> np.ndarray:
    """TRUTH with ``share`` of its labels redrawn at random."""
    rng = np.random.default_rng(seed)
    out = TRUTH.copy()
    hit = rng.random(len(out)) < share
    out[hit] = rng.integers(0, 5, hit.sum())
    return out


def test_identical_clusterings_give_that_clustering():
    found = consensus([TRUTH] * 4)
    assert found.chosen == 0
    np.testing.assert_allclose(found.agreement, 1.0)


def test_permuted_cluster_numbers_change_nothing():
    partitions = [noisy(0.1, 1), noisy(0.3, 2), noisy(0.05, 3), noisy(0.6, 4)]
    found = consensus(partitions)
    renamed = [RNG.permutation(5)[p] for p in partitions]  # each renumbered its own way
    again = consensus(renamed)
    assert again.chosen == found.chosen
    np.testing.assert_allclose(again.agreement, found.agreement, atol=1e-12)


def test_the_outlier_is_not_chosen_and_agreement_is_the_mean_ari():
    partitions = [noisy(0.1, 1), noisy(0.1, 2), noisy(0.1, 3), RNG.integers(0, 5, 400)]
    found = consensus(partitions)
    assert found.chosen != 3
    want = [
        np.mean([adjusted_rand_score(p, q) for j, q in enumerate(partitions) if j != i])
        for i, p in enumerate(partitions)
    ]
    np.testing.assert_allclose(found.agreement, want, rtol=1e-12)
    assert found.chosen == int(np.argmax(want))


def test_ties_go_to_the_preferred_order():
    assert consensus([TRUTH, TRUTH, TRUTH], ties=[2, 0, 1]).chosen == 2
    assert consensus([TRUTH]).chosen == 0


@pytest.mark.parametrize(
    ("partitions", "ties", "message"),
    [
        ([], None, "partitions is empty"),
        ([TRUTH, TRUTH[:10]], None, "the same items"),
        ([TRUTH, TRUTH], [0, 0], "ties must order all 2"),
    ],
)
def test_bad_input_is_one_line(partitions, ties, message):
    with pytest.raises(JaxaeError, match=message):
        consensus(partitions, ties=ties)
