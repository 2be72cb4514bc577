"""scikit-learn estimators: a transformer around ``fit`` and ``Encoder``, and the
whole experiment as a clusterer."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from jaxae.config import ModelConfig, TrainConfig
from jaxae.encoder import Encoder
from jaxae.train import fit


class AutoEncoderTransformer(TransformerMixin, BaseEstimator):
    """Learn codes with an autoencoder; ``transform`` returns them.

    Example::

        from sklearn.cluster import KMeans
        from sklearn.pipeline import Pipeline
        pipe = Pipeline([("ae", AutoEncoderTransformer(epochs=50)), ("km", KMeans(10))])
        clusters = pipe.fit_predict(images)    # images: (N, D) raw pixels
    """

    def __init__(
        self,
        *,
        hidden: int = 256,
        code_dim: int = 100,
        epochs: int = 500,
        batch_size: int = 100,
        lr: float = 0.01,
        dtype: str = "float32",
        seed: int = 0,
        progress: bool = False,
    ):
        self.hidden = hidden
        self.code_dim = code_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.dtype = dtype
        self.seed = seed
        self.progress = progress

    def fit(self, X, y=None):
        X = np.asarray(X)
        model_config = ModelConfig(
            input_dim=X.shape[1], hidden=self.hidden, code_dim=self.code_dim, dtype=self.dtype
        )
        train_config = TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed
        )
        result = fit(
            X, model_config=model_config, train_config=train_config, progress=self.progress
        )
        self.encoder_ = Encoder(result.state.params, model_config)
        self.loss_history_ = result.loss_history
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "encoder_")
        return self.encoder_.encode(X)


class AutoEncoderClusterer(ClusterMixin, BaseEstimator):
    """The whole experiment as a scikit-learn clusterer: train, cluster, predict.

    ``preset`` names a recipe of ``jaxae.presets``; the keyword arguments
    override its fields (``epochs``, ``method``, ``clusters``, ...). ``fit``
    runs ``run_experiment`` on ``X`` (one model, ``seed``); ``labels_`` are its
    clusters and ``predict`` assigns new images to them.

    Example::

        est = AutoEncoderClusterer(preset="n2d-fast", epochs=20, clusters=10)
        labels = est.fit_predict(images)        # (N, D) raw pixels
        new = est.predict(more_images)
    """

    def __init__(
        self,
        *,
        preset: str = "seed",
        method: str | None = None,
        clusters: int = 10,
        epochs: int | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        progress: bool = False,
    ):
        self.preset = preset
        self.method = method
        self.clusters = clusters
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress

    def fit(self, X, y=None):
        from jaxae.config import ClusterConfig, DataConfig, ExperimentConfig
        from jaxae.data.dataset import validated
        from jaxae.experiment import run_experiment
        from jaxae.presets import preset_fields

        fields = preset_fields(self.preset)
        fields["cluster"]["clusters"] = self.clusters
        if self.method is not None:
            fields["cluster"]["method"] = self.method
        for name, value in (("epochs", self.epochs), ("batch_size", self.batch_size)):
            if value is not None:
                fields["train"][name] = value
        dataset = validated(np.asarray(X), None, name="X")
        config = ExperimentConfig(
            data=DataConfig(source="X", n="all"),
            model=ModelConfig(input_dim=dataset.images.shape[1], **fields["model"]),
            train=TrainConfig(seed=self.seed, **fields["train"]),
            cluster=ClusterConfig(seed=self.seed, **fields["cluster"]),
        )
        experiment = run_experiment(config, dataset=dataset, progress=self.progress)
        self.model_ = experiment.encoder
        self.labels_ = np.asarray(experiment.clusters)
        self.n_features_in_ = dataset.images.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict(X)

    def transform(self, X) -> np.ndarray:
        """The codes of ``X`` (the refined encoder's, after DEC or IDEC)."""
        check_is_fitted(self, "model_")
        return self.model_.encode(X)
