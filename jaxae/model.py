"""The Flax modules, and building them from their configuration."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxae.config import ModelConfig

KERNEL_INITS = {
    "glorot_uniform": nn.initializers.glorot_uniform(),
    "glorot_normal": nn.initializers.glorot_normal(),
    "he_uniform": nn.initializers.he_uniform(),
    "he_normal": nn.initializers.he_normal(),
    "lecun_normal": nn.initializers.lecun_normal(),
    # DEC-keras' MNIST initialiser: VarianceScaling(1/3, "fan_in", "uniform").
    "dec_uniform": nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
}


def _layer_name(side: str, i: int) -> str:
    # The first layer keeps the original recipe's name, which seeds its initialisation.
    return f"{side}_hidden" if i == 0 else f"{side}_hidden_{i}"


class AutoEncoder(nn.Module):
    """MLP autoencoder ``input_dim-*hidden-code_dim-*reversed(hidden)-input_dim``.

    ReLU on the hidden layers, ReLU or linear on the code, a linear output;
    zero biases. Parameters are float32; ``dtype`` is the compute dtype
    (``jnp.bfloat16`` runs the matrix products in bfloat16). The default is the
    original Keras recipe, 784-256-100-256-784 with Glorot-uniform kernels.

    Example::

        model = AutoEncoder(input_dim=64, hidden=(16,), code_dim=8)
        params = model.init(jax.random.key(0), jnp.zeros((1, 64)))
        codes = model.apply(params, x, method=AutoEncoder.encode)  # (N, 8)
    """

    input_dim: int = 784
    hidden: tuple[int, ...] = (256,)
    code_dim: int = 100
    code_activation: str = "relu"
    kernel_init: str = "glorot_uniform"
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        hidden = (self.hidden,) if isinstance(self.hidden, int) else tuple(self.hidden)
        dense = functools.partial(
            nn.Dense,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=KERNEL_INITS[self.kernel_init],
            bias_init=nn.initializers.zeros,
        )
        self.encoder_layers = [
            dense(w, name=_layer_name("encoder", i)) for i, w in enumerate(hidden)
        ]
        self.encoder_code = dense(self.code_dim)
        self.decoder_layers = [
            dense(w, name=_layer_name("decoder", i)) for i, w in enumerate(hidden[::-1])
        ]
        self.decoder_output = dense(self.input_dim)

    def encode(self, x: jax.Array) -> jax.Array:
        """(N, input_dim) scaled pixels -> (N, code_dim) codes."""
        for layer in self.encoder_layers:
            x = nn.relu(layer(x))
        z = self.encoder_code(x)
        return nn.relu(z) if self.code_activation == "relu" else z

    def decode(self, z: jax.Array) -> jax.Array:
        """(N, code_dim) codes -> (N, input_dim) reconstructed scaled pixels."""
        for layer in self.decoder_layers:
            z = nn.relu(layer(z))
        return self.decoder_output(z)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))


def build_model(config: ModelConfig) -> AutoEncoder:
    """The ``AutoEncoder`` a ``ModelConfig`` describes."""
    return AutoEncoder(
        input_dim=config.input_dim,
        hidden=config.hidden,
        code_dim=config.code_dim,
        code_activation=config.code_activation,
        kernel_init=config.kernel_init,
        dtype=jnp.dtype(config.dtype),
    )
