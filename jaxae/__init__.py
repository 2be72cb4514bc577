"""jaxae: fast, honest MLP autoencoders in JAX; train, encode, cluster, score.

Example::

    import jaxae
    data = jaxae.load_dataset("digits")
    result = jaxae.fit(data.images, model_config=jaxae.ModelConfig(input_dim=64),
                       train_config=jaxae.TrainConfig(epochs=50))
    ae = jaxae.Encoder(result.state.params, jaxae.ModelConfig(input_dim=64))
    codes = ae.encode(data.images)           # or: ae = jaxae.load(run_dir)
"""

from importlib.metadata import PackageNotFoundError, version

from jaxae.checkpoint import load, load_checkpoint, save_checkpoint
from jaxae.cluster import cluster_accuracy, kmeans, scores
from jaxae.config import ClusterConfig, ModelConfig, TrainConfig
from jaxae.data import Dataset, load_dataset
from jaxae.encoder import Encoder, encode_fn
from jaxae.errors import JaxaeError
from jaxae.model import AutoEncoder
from jaxae.preprocess import standardize
from jaxae.sklearn_api import AutoEncoderTransformer
from jaxae.train import TrainResult, TrainState, fit

try:
    __version__ = version("jaxae")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "AutoEncoder",
    "AutoEncoderTransformer",
    "ClusterConfig",
    "Dataset",
    "Encoder",
    "JaxaeError",
    "ModelConfig",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "cluster_accuracy",
    "encode_fn",
    "fit",
    "kmeans",
    "load",
    "load_checkpoint",
    "load_dataset",
    "save_checkpoint",
    "scores",
    "standardize",
]
