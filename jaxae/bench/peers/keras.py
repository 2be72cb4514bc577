"""The Keras peer, written as the anchors write it: a ``Sequential`` of ``Dense`` layers,
``compile(optimizer=Adam, loss="mse")`` and ``model.fit(x, x, shuffle=True)``
(the original recipe's Keras code; XifengGuo/DEC-keras and rymc/n2d pretrain so).

``build_model`` is also the Keras model that ``bench/studies/seed_study.py`` trains with
Keras' own initialisation. tensorflow and keras are imported when a model is built.
"""

from __future__ import annotations

import os
import time

from jaxae.bench.peers.common import Recipe, Workload, init_params, numpy_loss


def import_keras():
    """keras on the tensorflow backend (set before keras is first imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    version = keras.__version__
    if int(version.split(".")[0]) >= 3 and keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"keras {version} runs on the {keras.backend.backend()!r} backend: "
            "set KERAS_BACKEND=tensorflow before keras is first imported"
        )
    return keras


def build_model(recipe: Recipe, input_dim: int, *, dtype: str = "float32"):
    """(autoencoder, encoder): the recipe as Keras layers, compiled with Adam and MSE.

    Keras' own Glorot-uniform initialisation; ``encoder`` shares the layers up to the code.
    """
    keras = import_keras()
    policy = "mixed_bfloat16" if dtype == "bfloat16" else "float32"
    inputs = keras.Input((input_dim,))
    h, code = inputs, None
    widths = recipe.widths(input_dim)[1:]
    for i, (width, act) in enumerate(zip(widths, recipe.activations(), strict=True)):
        h = keras.layers.Dense(width, activation=None if act == "linear" else act, dtype=policy)(h)
        if i == len(recipe.hidden):
            code = h
    autoencoder = keras.Model(inputs, h)
    optimizer = keras.optimizers.Adam(learning_rate=recipe.lr, epsilon=recipe.eps)
    autoencoder.compile(optimizer=optimizer, loss="mse")
    return autoencoder, keras.Model(inputs, code)


class _Keras:
    def __init__(self, workload: Workload):
        keras = import_keras()
        import tensorflow as tf

        self.w = workload
        tf.random.set_seed(workload.seed)  # fit's shuffling
        d = workload.x.shape[1]
        self.model, _ = build_model(workload.recipe, d, dtype=workload.dtype)
        self.model.set_weights(
            [a for pair in init_params(workload.recipe.widths(d), workload.seed) for a in pair]
        )
        steps = len(workload.x) // workload.batch_size
        self._x = workload.x[: steps * workload.batch_size]  # fit would train a partial batch
        start = time.perf_counter()
        self._fit(workload.warmup_epochs)
        self.compile_seconds = time.perf_counter() - start
        gpus = tf.config.list_physical_devices("GPU")
        where = (
            tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
            if gpus
            else "cpu"
        )
        self.device = f"{where} (keras {keras.__version__}, tensorflow {tf.__version__})"

    def _fit(self, n_epochs: int) -> None:
        if n_epochs:
            history = self.model.fit(
                self._x,
                self._x,
                batch_size=self.w.batch_size,
                epochs=n_epochs,
                shuffle=True,
                verbose=0,
            )
            history.history["loss"][-1]  # a Python float: the device has finished

    def run(self) -> float:
        start = time.perf_counter()
        self._fit(self.w.epochs)
        return time.perf_counter() - start

    def final_loss(self) -> float:
        weights = self.model.get_weights()
        return numpy_loss(
            list(zip(weights[::2], weights[1::2])), self.w.x, self.w.recipe.activations()
        )


IMPLEMENTATIONS = {"keras": _Keras}
