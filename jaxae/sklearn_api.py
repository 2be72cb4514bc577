"""A scikit-learn transformer around ``fit`` and ``Encoder``."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
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
