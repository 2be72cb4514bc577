import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline

from jaxae.data import load_dataset
from jaxae.sklearn_api import AutoEncoderTransformer


def test_pipeline_with_kmeans():
    from jaxae.data import load_dataset

    images = load_dataset("digits", n=200).images
    ae = AutoEncoderTransformer(hidden=16, code_dim=8, epochs=2, batch_size=50)
    pipe = Pipeline([("ae", ae), ("km", KMeans(5, n_init=1, random_state=0))])
    clusters = pipe.fit_predict(images)
    assert clusters.shape == (200,) and len(np.unique(clusters)) == 5
    codes = pipe.named_steps["ae"].transform(images)
    assert codes.shape == (200, 8)
    np.testing.assert_allclose(ae.fit_transform(images), codes, rtol=1e-6)  # same seed, same codes
    assert clone(ae).get_params() == ae.get_params() and ae.get_params()["code_dim"] == 8


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_clusterer_fit_predict_and_params(method):
    from jaxae.sklearn_api import AutoEncoderClusterer

    x = load_dataset("digits", n=300).images
    est = AutoEncoderClusterer(method=method, epochs=3, batch_size=50, clusters=5)
    labels = est.fit_predict(x)
    assert labels.shape == (300,) and len(np.unique(labels)) <= 5
    np.testing.assert_array_equal(est.predict(x), labels)  # its own clusters back
    assert est.get_params()["method"] == method and est.transform(x[:7]).shape == (7, 100)


def test_one_preset_merge_serves_the_cli_and_both_estimators():
    import argparse

    from jaxae.cli.run import add_args, experiment_config
    from jaxae.presets import apply_preset
    from jaxae.sklearn_api import AutoEncoderClusterer

    model, train, cluster = apply_preset("dec", train={"epochs": 3, "lr": None}, input_dim=64)
    assert model.hidden == (500, 500, 2000) and model.kernel_init == "dec_uniform"
    assert train.epochs == 3 and train.lr == 1.0 and cluster.method == "dec"  # None keeps
    parser = argparse.ArgumentParser()
    add_args(parser)
    args = parser.parse_args(["--preset", "dec", "--epochs", "3"])
    cli = experiment_config(args)
    assert (cli.train, cli.cluster) == (train, cluster) and cli.model == model.__class__(
        **{**model.__dict__, "input_dim": 1}
    )
    x = load_dataset("digits", n=120).images
    ae = AutoEncoderTransformer(preset="n2d-fast", epochs=1, batch_size=40).fit(x)
    assert ae.encoder_.model_config.hidden == (500, 500, 2000) and ae.transform(x).shape == (
        120,
        10,
    )
    assert ae.encoder_.model_config.data_range == (0.0, 16.0)  # the preset's unit scaling
    with pytest.raises(Exception, match="preset"):
        AutoEncoderClusterer(preset="nope").fit(x)


def test_a_method_option_that_does_not_fit_the_data_names_what_the_estimator_takes():
    """UMAP's 20 neighbours need more than 15 rows: the fix is more rows or another method,
    not umap.neighbors=, which the estimator does not take."""
    from jaxae.errors import JaxaeError
    from jaxae.sklearn_api import AutoEncoderClusterer

    images = load_dataset("digits", n=15).images
    with pytest.raises(JaxaeError, match="15 images: AutoEncoderClusterer keeps its") as e:
        AutoEncoderClusterer(method="umap-gmm", epochs=1, clusters=3).fit(images)
    assert "pass more rows in X, or another method= or preset=" in str(e.value)
    assert "umap.neighbors=14" not in str(e.value)
