import numpy as np
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline

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
