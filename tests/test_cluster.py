import dataclasses

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from jaxae.cluster import cluster_accuracy, fit_kmeans, kmeans, predict_nearest, scores
from jaxae.config import ClusterConfig
from jaxae.errors import JaxaeError


@pytest.mark.parametrize(
    "labels, clusters, expected",
    [
        ([0, 0, 1, 1], [1, 1, 0, 0], 1.0),  # relabelled perfectly
        ([0, 0, 1, 1], [0, 1, 0, 1], 0.5),
        ([0, 0, 0, 1, 1, 2], [5, 5, 7, 7, 7, 9], 5 / 6),  # 5->0, 7->1, 9->2
        ([0, 1, 2, 3], [0, 0, 0, 0], 0.25),  # one cluster, four labels
        ([0, 0, 0, 0], [0, 1, 2, 3], 0.25),  # four clusters, one label
        ([3, 3, 8, 8, 8], [2, 2, 2, 1, 1], 4 / 5),
    ],
)
def test_accuracy_hand_worked(labels, clusters, expected):
    assert cluster_accuracy(np.array(labels), np.array(clusters)) == pytest.approx(expected)


def test_accuracy_is_one_to_one():
    # Greedy majority voting would give 1.0 here (both clusters vote label 0).
    assert cluster_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)


def test_scores_on_blobs():
    x, y = make_blobs(n_samples=300, centers=3, cluster_std=0.5, random_state=0)
    s = scores(y, kmeans(x, ClusterConfig(clusters=3)))
    assert s == pytest.approx({"acc": 1.0, "nmi": 1.0, "ari": 1.0})


def test_kmeans_is_deterministic_for_a_seed():
    x = np.random.default_rng(0).normal(size=(200, 5))
    np.testing.assert_array_equal(
        kmeans(x, ClusterConfig(clusters=4)), kmeans(x, ClusterConfig(clusters=4))
    )


def test_more_clusters_than_samples():
    with pytest.raises(JaxaeError, match="11 clusters is more than the 10 samples"):
        kmeans(np.zeros((10, 2)), ClusterConfig(clusters=11))


def test_mismatched_lengths():
    with pytest.raises(JaxaeError, match="3 labels but 2 cluster"):
        cluster_accuracy(np.array([0, 1, 2]), np.array([0, 1]))


def test_scores_of_nothing_is_a_jaxae_error():
    with pytest.raises(JaxaeError, match="labels and clusters are empty"):
        scores(np.array([], int), np.array([], int))


def test_fit_kmeans_predicts_its_own_labels_and_new_points():
    x, _ = make_blobs(n_samples=300, centers=4, n_features=5, random_state=1)
    fit = fit_kmeans(x, clusters=4, n_init=2, seed=0)
    np.testing.assert_array_equal(fit.predict(x), fit.labels)
    np.testing.assert_array_equal(
        fit.labels, kmeans(x, ClusterConfig(clusters=4, n_init=2, seed=0))
    )
    # New points next to a centre go to it.
    near = fit.centers + 1e-3
    np.testing.assert_array_equal(fit.predict(near), np.arange(4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clusters": 0}, "clusters must be at least 1"),
        ({"n_init": 0}, "n_init must be at least 1"),
        ({"tol": -1.0}, "tol must be at least 0"),
        ({"seed": -1}, "seed must be at least 0"),
        ({"backend": "cuda"}, "unknown backend 'cuda'"),
    ],
)
def test_fit_kmeans_bad_values_give_one_line(kwargs, match):
    with pytest.raises(JaxaeError, match=match) as error:
        fit_kmeans(np.zeros((10, 2)), **kwargs)
    assert "\n" not in str(error.value)


def test_predict_nearest_checks_the_width():
    with pytest.raises(JaxaeError, match="3 columns but the centres 2"):
        predict_nearest(np.zeros((2, 2)), np.zeros((5, 3)))


def test_each_method_keeps_its_options_in_its_own_section():
    from jaxae.cluster_options import KMeansOptions, RefineOptions, UMAPOptions

    c = ClusterConfig(method="umap-gmm", umap={"neighbors": 15}, kmeans=KMeansOptions(tol=0.5))
    assert c.umap == UMAPOptions(neighbors=15) and c.umap.dim == 10
    assert c.kmeans == KMeansOptions(tol=0.5) and c.refine == RefineOptions()
    with pytest.raises(JaxaeError, match="umap has no option 'dims': use dim, neighbors"):
        ClusterConfig(umap={"dims": 3})
    with pytest.raises(JaxaeError, match="refine must be a RefineOptions or a dict"):
        ClusterConfig(refine=UMAPOptions())
    with pytest.raises(JaxaeError, match=r"refine\.tol must be at most 1"):
        ClusterConfig(refine={"tol": 2.0})


def test_cluster_config_reads_what_it_wrote_and_an_older_runs_flat_fields():
    import dataclasses

    c = ClusterConfig(method="dec", n_init=20, refine={"update_interval": 30, "tol": 0.01})
    assert ClusterConfig.from_dict(dataclasses.asdict(c)) == c
    # report.json's "cluster" of a run made before the sections (flat fields).
    old = {
        "method": "umap-gmm", "clusters": 10, "n_init": 10, "max_iter": 300, "tol": 0.0001,
        "kmeans_backend": "jax", "umap_dim": 5, "umap_neighbors": 15, "umap_min_dist": 0.1,
        "update_interval": 30, "dec_tol": 0.01, "max_steps": 500, "gamma": 0.2,
        "dec_lr": 0.1, "dec_batch_size": 64, "seed": 3,
    }  # fmt: skip
    c = ClusterConfig.from_dict(old)
    assert (c.method, c.n_init, c.seed) == ("umap-gmm", 10, 3)
    assert (c.kmeans.max_iter, c.kmeans.tol, c.kmeans.backend) == (300, 1e-4, "jax")
    assert (c.umap.dim, c.umap.neighbors, c.umap.min_dist) == (5, 15, 0.1)
    # Made when umap-learn and scikit-learn were the only backends: it used them.
    assert (c.umap.backend, c.gmm.backend) == ("umap-learn", "sklearn")
    assert (ClusterConfig().umap.backend, ClusterConfig().gmm.backend) == ("jax", "jax")
    r = c.refine
    assert (r.update_interval, r.tol, r.max_steps, r.gamma, r.lr, r.batch_size) == (
        30, 0.01, 500, 0.2, 0.1, 64,
    )  # fmt: skip


def test_a_preset_and_its_overrides_merge_option_by_option():
    from jaxae.presets import PRESETS, apply_preset

    before = repr(PRESETS)
    _, _, cluster = apply_preset(
        "n2d-fast", cluster={"umap": {"neighbors": 15, "dim": None}, "n_init": None}
    )
    assert (cluster.method, cluster.n_init) == ("umap-gmm", 10)
    assert (cluster.umap.neighbors, cluster.umap.dim) == (15, 10)
    assert repr(PRESETS) == before  # the preset itself is left as it was


def test_the_dec_da_preset_augments_pretraining_and_refinement_and_a_flag_turns_one_off():
    from jaxae.presets import apply_preset

    _, train, cluster = apply_preset("dec-da")
    assert (train.shift, train.rotate, train.epochs, train.optimizer) == (0.1, 10.0, 500, "sgd")
    assert (cluster.method, cluster.n_init) == ("dec", 20)
    assert cluster.refine.augment.enabled and (cluster.refine.shift, cluster.refine.rotate) == (
        0.1, 10.0,
    )  # fmt: skip
    _, train, cluster = apply_preset("dec-da", cluster={"refine": {"shift": 0.0, "rotate": 0.0}})
    assert train.augment.enabled and not cluster.refine.augment.enabled


def test_the_fast_dec_da_preset_is_n2d_fasts_pretraining_augmented_then_dec_da():
    from jaxae.presets import apply_preset

    model, train, cluster = apply_preset("dec-da-fast")
    _, fast, _ = apply_preset("n2d-fast")
    assert (model.hidden, model.kernel_init) == ((500, 500, 2000), "glorot_uniform")
    assert dataclasses.replace(train, shift=0.0, rotate=0.0) == fast
    assert (train.shift, train.rotate) == (0.1, 10.0)
    assert (cluster.method, cluster.n_init, cluster.refine.update_interval) == ("dec", 20, 30)
    assert (cluster.refine.shift, cluster.refine.rotate) == (0.1, 10.0)


def test_the_n2d_da_fast_preset_is_dec_da_fast_started_from_n2d_fasts_clusters():
    from jaxae.presets import apply_preset

    model, train, cluster = apply_preset("n2d-da-fast")
    fast_model, fast_train, fast_cluster = apply_preset("dec-da-fast")
    _, _, n2d = apply_preset("n2d-fast")
    assert (model, train) == (fast_model, fast_train)  # the same augmented pretraining
    assert (cluster.method, cluster.refine.start) == ("dec", "umap-gmm")
    assert (cluster.n_init, cluster.umap, cluster.gmm) == (n2d.n_init, n2d.umap, n2d.gmm)
    assert dataclasses.replace(cluster.refine, start="kmeans") == fast_cluster.refine


def test_the_n2d_da_preset_is_n2d_da_fast_pretrained_500_epochs_then_idec():
    from jaxae.presets import apply_preset

    model, train, cluster = apply_preset("n2d-da")
    fast_model, fast_train, fast_cluster = apply_preset("n2d-da-fast")
    assert model == fast_model
    assert (train.epochs, dataclasses.replace(train, epochs=fast_train.epochs)) == (500, fast_train)
    assert cluster.method == "idec"
    assert dataclasses.replace(cluster, method="dec") == fast_cluster


def test_a_run_augments_in_pretraining_or_in_a_refinement_but_not_in_other_methods():
    from jaxae.config import ExperimentConfig, TrainConfig
    from jaxae.experiment import augmentation

    da = {"shift": 0.1, "rotate": 10.0}
    assert augmentation(ExperimentConfig()) is None
    assert augmentation(ExperimentConfig(cluster=ClusterConfig(refine=da))) is None  # kmeans
    refined = augmentation(ExperimentConfig(cluster=ClusterConfig(method="dec", refine=da)))
    assert (refined.shift, refined.rotate) == (0.1, 10.0)
    pretrained = augmentation(ExperimentConfig(train=TrainConfig(shift=0.2)))
    assert (pretrained.shift, pretrained.rotate) == (0.2, 0.0)


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        # UMAP's curve is fitted with spread 1: a larger min_dist failed after pretraining.
        ("umap", {"min_dist": 5.0}, "umap.min_dist must be at most 1"),
        ("umap", {"epochs": 2**31}, "umap.epochs must be at most"),  # int32 on the device
        ("kmeans", {"max_iter": 2**31}, "kmeans.max_iter must be at most"),
        ("refine", {"update_interval": 2**31}, "refine.update_interval must be at most"),
        ("refine", {"rotate": float("nan")}, "refine.rotate=nan is out of range"),
        ("refine", {"gamma": float("inf")}, "refine.gamma must be finite.*at least 0"),
    ],
)
def test_every_option_is_checked_when_the_config_is_built(section, value, message):
    """Named as the config spells it; the CLI turns the name into its flag."""
    with pytest.raises(JaxaeError, match=message):
        ClusterConfig(**{section: value})
