"""jaxae: fast, honest MLP autoencoders in JAX; train, encode, cluster, score.

Example::

    import jaxae
    data = jaxae.load_dataset("digits")
    result = jaxae.fit(data.images, model_config=jaxae.ModelConfig(input_dim=64),
                       train_config=jaxae.TrainConfig(epochs=50))
    ae = jaxae.Encoder(result.state.params, jaxae.ModelConfig(input_dim=64))
    codes = ae.encode(data.images)           # or: ae = jaxae.load(run_dir)
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jaxae")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# Public name -> its home. Imported on first use, so that `import jaxae.cli` (the
# console script) starts in a few milliseconds and can take over Ctrl-C before JAX
# loads, and so that importing one module does not import them all.
_HOMES = {
    "AutoEncoder": "jaxae.model",
    "AutoEncoderClusterer": "jaxae.sklearn_api",
    "AutoEncoderTransformer": "jaxae.sklearn_api",
    "ClusterConfig": "jaxae.config",
    "DataConfig": "jaxae.config",
    "Dataset": "jaxae.data",
    "Encoder": "jaxae.encoder",
    "ExperimentConfig": "jaxae.config",
    "JaxaeError": "jaxae.errors",
    "ModelConfig": "jaxae.config",
    "TrainConfig": "jaxae.config",
    "TrainResult": "jaxae.train",
    "TrainState": "jaxae.train_state",
    "TrainingStopped": "jaxae.train",
    "cluster_accuracy": "jaxae.cluster",
    "encode_file": "jaxae.stream",
    "encode_fn": "jaxae.encoder",
    "fit": "jaxae.train",
    "kmeans": "jaxae.cluster",
    "load": "jaxae.rundir",
    "load_checkpoint": "jaxae.checkpoint",
    "load_dataset": "jaxae.data",
    "run_experiment": "jaxae.experiment",
    "save_checkpoint": "jaxae.checkpoint",
    "scores": "jaxae.cluster",
    "standardize": "jaxae.preprocess",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), *__all__]
