"""scikit-learn estimators: a transformer around ``fit`` and ``Encoder``, and the
whole experiment as a clusterer."""

from __future__ import annotations

import re

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError
from jaxae.presets import apply_preset
from jaxae.train import fit


class AutoEncoderTransformer(TransformerMixin, BaseEstimator):
    """Learn codes with an autoencoder; ``transform`` returns them.

    ``preset`` names a recipe of ``jaxae.presets`` (its autoencoder and training;
    default ``seed``, the original experiment); the keyword arguments override its
    fields where given. ``scaling`` is ``"standardize"`` (each image on its own) or
    ``"unit"`` (the range of the data ``fit`` sees onto [0, 1], kept for ``transform``).

    Example::

        from sklearn.cluster import KMeans
        from sklearn.pipeline import Pipeline
        pipe = Pipeline([("ae", AutoEncoderTransformer(epochs=50)), ("km", KMeans(10))])
        clusters = pipe.fit_predict(images)    # images: (N, D) raw pixels
    """

    def __init__(
        self,
        *,
        preset: str = "seed",
        hidden: int | tuple[int, ...] | None = None,
        code_dim: int | None = None,
        scaling: str | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        dtype: str | None = None,
        seed: int = 0,
        progress: bool = False,
    ):
        self.preset = preset
        self.hidden = hidden
        self.code_dim = code_dim
        self.scaling = scaling
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.dtype = dtype
        self.seed = seed
        self.progress = progress

    def fit(self, X, y=None):
        X = np.asarray(X)
        model_config, train_config, _ = apply_preset(
            self.preset,
            model=dict(hidden=self.hidden, code_dim=self.code_dim, scaling=self.scaling,
                       dtype=self.dtype),
            train=dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr),
            input_dim=X.shape[1],
            seed=self.seed,
        )  # fmt: skip
        result = fit(
            X, model_config=model_config, train_config=train_config, progress=self.progress
        )
        self.encoder_ = Encoder(result.state.params, result.model_config)
        self.loss_history_ = result.loss_history
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "encoder_")
        return self.encoder_.encode(X)


class AutoEncoderClusterer(ClusterMixin, BaseEstimator):
    """The whole experiment as a scikit-learn clusterer: train, cluster, predict.

    ``preset`` names a recipe of ``jaxae.presets``; the keyword arguments
    override its fields (``epochs``, ``method``, ``clusters``, ``scaling``, ...). ``fit``
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
        scaling: str | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        progress: bool = False,
    ):
        self.preset = preset
        self.method = method
        self.clusters = clusters
        self.scaling = scaling
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress

    def fit(self, X, y=None):
        from jaxae.config import DataConfig, ExperimentConfig
        from jaxae.data.dataset import validated
        from jaxae.experiment import run_experiment

        dataset = validated(np.asarray(X), None, name="X")
        model, train, cluster = apply_preset(
            self.preset,
            model={"scaling": self.scaling},
            train={"epochs": self.epochs, "batch_size": self.batch_size},
            cluster={"clusters": self.clusters, "method": self.method},
            input_dim=dataset.images.shape[1],
            seed=self.seed,
        )
        config = ExperimentConfig(
            data=DataConfig(source="X", n="all"), model=model, train=train, cluster=cluster
        )
        try:
            experiment = run_experiment(config, dataset=dataset, progress=self.progress)
        except JaxaeError as e:
            raise _with_our_fix(e) from None
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


def _with_our_fix(error: JaxaeError) -> JaxaeError:
    """``error`` with a fix this estimator accepts where its own fix sets a method's option
    (``pass umap.neighbors=14 or less``), which the estimator leaves to its preset."""
    from jaxae.cluster_options import OPTION_SECTIONS

    problem, _, _ = str(error).partition(": ")
    option = re.search(rf"\b(?:{'|'.join(OPTION_SECTIONS)})\.[a-z_]+", str(error))
    if option is None:
        return error
    return JaxaeError(
        f"{problem}: AutoEncoderClusterer keeps its preset's {option[0]}; pass more rows in X, "
        "or another method= or preset="
    )
