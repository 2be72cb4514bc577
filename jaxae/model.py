"""The Flax modules, and nothing else."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


class AutoEncoder(nn.Module):
    """MLP autoencoder ``input_dim-hidden-code_dim-hidden-input_dim``.

    ReLU on the hidden and code layers, a linear output, Glorot-uniform kernels
    and zero biases, as in the original Keras recipe. Parameters are float32;
    ``dtype`` is the compute dtype (``jnp.bfloat16`` runs the matrix products
    in bfloat16).

    Example::

        model = AutoEncoder(input_dim=64, hidden=16, code_dim=8)
        params = model.init(jax.random.key(0), jnp.zeros((1, 64)))
        codes = model.apply(params, x, method=AutoEncoder.encode)  # (N, 8)
    """

    input_dim: int = 784
    hidden: int = 256
    code_dim: int = 100
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        dense = functools.partial(
            nn.Dense,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=nn.initializers.glorot_uniform(),
            bias_init=nn.initializers.zeros,
        )
        self.encoder_hidden = dense(self.hidden)
        self.encoder_code = dense(self.code_dim)
        self.decoder_hidden = dense(self.hidden)
        self.decoder_output = dense(self.input_dim)

    def encode(self, x: jax.Array) -> jax.Array:
        """(N, input_dim) standardised pixels -> (N, code_dim) codes."""
        return self.code_from_hidden(nn.relu(self.encoder_hidden(x)))

    def code_from_hidden(self, h: jax.Array) -> jax.Array:
        """(N, hidden) first-layer activations -> (N, code_dim) codes."""
        return nn.relu(self.encoder_code(h))

    def decode(self, z: jax.Array) -> jax.Array:
        """(N, code_dim) codes -> (N, input_dim) reconstructed standardised pixels."""
        return self.decoder_output(nn.relu(self.decoder_hidden(z)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))
