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
