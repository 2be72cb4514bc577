"""One answer from many seeds: the medoid partition, blind to how clusters are numbered,
and one clustering of all models' codes side by side."""

import jax
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


# --- all models' codes side by side -----------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    """Three small autoencoders of the digits (3 epochs), their params on a model axis."""
    import jaxae
    from jaxae.config import ModelConfig, TrainConfig

    data = jaxae.load_dataset("digits")
    config = ModelConfig(input_dim=64, hidden=(32,), code_dim=8)
    result = jaxae.fit(
        data.images, model_config=config, train_config=TrainConfig(epochs=3), seeds=range(3),
        progress=False,
    )  # fmt: skip
    return data, config, result.state.params


def _side_by_side(params, data, config, alive=(True, True, True), method="kmeans"):
    from jaxae.config import ClusterConfig
    from jaxae.consensus import cluster_side_by_side

    return cluster_side_by_side(
        params, data.images, alive, model_config=config,
        cluster_config=ClusterConfig(method=method, n_init=3), seed=0,
    )  # fmt: skip


def test_side_by_side_of_one_model_copied_is_that_models_clustering(trained):
    from jaxae.config import ClusterConfig
    from jaxae.encoder import Encoder
    from jaxae.methods import fit_features

    data, config, params = trained
    first = jax.tree.map(lambda a: a[:1], params)
    copies = jax.tree.map(lambda a: np.concatenate([a] * 3), first)
    together = _side_by_side(copies, data, config)
    codes = Encoder(jax.tree.map(lambda a: a[0], params), config).encode(data.images)
    alone = fit_features(codes, ClusterConfig(method="kmeans", n_init=3), None)
    assert adjusted_rand_score(alone.labels, together.labels) == 1.0
    fitted = together.fitted
    np.testing.assert_allclose(fitted.shift, np.tile(codes.mean(0), (3, 1)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fitted.scale, codes.std(0).mean(), rtol=1e-4)


def test_side_by_side_is_blind_to_the_order_of_models_and_skips_diverged_ones(trained):
    data, config, params = trained
    together = _side_by_side(params, data, config)
    assert together.fitted.models.tolist() == [0, 1, 2]
    reversed_ = _side_by_side(jax.tree.map(lambda a: a[::-1], params), data, config)
    assert adjusted_rand_score(together.labels, reversed_.labels) == 1.0
    without = _side_by_side(params, data, config, alive=(True, False, True))
    assert without.fitted.models.tolist() == [0, 2] and without.fitted.shift.shape == (2, 8)
    assert _side_by_side(params, data, config, alive=(False, True, False)) is None


def test_side_by_side_predicts_each_image_alone_as_on_the_training_images(trained):
    from jaxae.encoder import Encoder

    data, config, params = trained
    for method in ("kmeans", "umap-gmm"):
        together = _side_by_side(params, data, config, method=method)
        first = jax.tree.map(lambda a: a[0], params)
        ae = Encoder(first, config, clusterer=together, members=params)
        np.testing.assert_array_equal(ae.predict(data.images), together.labels)
        alone = [int(ae.predict(data.images[i : i + 1])[0]) for i in range(0, 300, 37)]
        assert alone == together.labels[0:300:37].tolist()
        with pytest.raises(JaxaeError, match="side by side: load the run folder"):
            Encoder(first, config, clusterer=together).predict(data.images[:2])
