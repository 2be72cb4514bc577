"""Plain JAX peers, as people write them without jaxae: ``jnp`` matmuls and optax.

- ``jax-python-loop``: a jitted step, the batches gathered on the host each step;
- ``jax-scan``: the whole run one compiled program, a ``lax.scan`` over epochs of a
  ``lax.scan`` over batches; the reference jaxae's own loop must match. It keeps no
  loss, so XLA drops the loss's forward reduction as dead code;
- ``jax-scan-loss``: the same program keeping each epoch's mean loss, as jaxae (its loss
  history), PyTorch and Keras do: the same work as jaxae.

They are deliberately self-contained: they must not share jaxae's code.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from jaxae.bench.peers.common import Workload, init_params, numpy_loss


def _step(workload: Workload):
    """optax Adam, and a pure step ``(params, opt_state, batch) -> (params, opt_state, loss)``."""
    import jax
    import jax.numpy as jnp
    import optax

    compute = jnp.bfloat16 if workload.dtype == "bfloat16" else jnp.float32
    activations = workload.recipe.activations()

    def loss_fn(params, batch):
        h = batch.astype(compute)
        for (w, b), act in zip(params, activations, strict=True):
            h = h @ w.astype(compute) + b.astype(compute)[None, :]
            if act == "relu":
                h = jax.nn.relu(h)
        return jnp.mean((h.astype(jnp.float32) - batch) ** 2)

    opt = optax.adam(workload.recipe.lr, b1=0.9, b2=0.999, eps=workload.recipe.eps)

    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return opt, step


def _device() -> str:
    import jax

    return jax.devices()[0].device_kind


class _PythonLoop:
    def __init__(self, workload: Workload):
        import jax

        self.w = workload
        opt, step = _step(workload)
        self._step = jax.jit(step, donate_argnums=(0, 1))
        self.params = jax.device_put(
            init_params(workload.recipe.widths(workload.x.shape[1]), workload.seed)
        )
        self.opt_state = opt.init(self.params)
        self._rng = np.random.default_rng(workload.seed)
        start = time.perf_counter()
        self._step.lower(self.params, self.opt_state, workload.x[: workload.batch_size]).compile()
        self.compile_seconds = time.perf_counter() - start
        self.device = _device()
        self._epochs(workload.warmup_epochs)

    def _epochs(self, n_epochs: int) -> None:
        import jax

        x, b = self.w.x, self.w.batch_size
        for _ in range(n_epochs):
            perm = self._rng.permutation(len(x))
            for i in range(len(x) // b):
                batch = x[perm[i * b : (i + 1) * b]]  # host gather, then a copy to the device
                self.params, self.opt_state, _ = self._step(self.params, self.opt_state, batch)
        jax.block_until_ready((self.params, self.opt_state))

    def run(self) -> float:
        start = time.perf_counter()
        self._epochs(self.w.epochs)
        return time.perf_counter() - start

    def final_loss(self) -> float:
        import jax

        return numpy_loss(jax.device_get(self.params), self.w.x, self.w.recipe.activations())


def _scan_run(params, opt_state, x, key, *, epochs, batch_size, step, keep_loss=False):
    """``epochs`` epochs in one ``lax.scan``; each epoch a scan over its batches.

    Returns the final parameters and optimiser state, and with ``keep_loss`` each
    epoch's mean loss (else None)."""
    import jax

    n_steps = x.shape[0] // batch_size

    def epoch(carry, key):
        idx = jax.random.permutation(key, x.shape[0])[: n_steps * batch_size]

        def body(carry, i):
            params, opt_state, loss = step(*carry, x[i])
            return (params, opt_state), loss if keep_loss else None

        carry, losses = jax.lax.scan(body, carry, idx.reshape(n_steps, batch_size))
        return carry, losses.mean() if keep_loss else None

    carry, losses = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, epochs))
    return carry, losses


class _Scan:
    """The whole run one program: warmed up by one identical run, each timed run from the
    first weights again (the program is the same; only the data it starts from is)."""

    def __init__(self, workload: Workload, *, keep_loss: bool = False):
        import jax

        self.w = workload
        opt, step = _step(workload)
        train = jax.jit(
            functools.partial(
                _scan_run, batch_size=workload.batch_size, step=step, keep_loss=keep_loss
            ),
            static_argnames="epochs",
            donate_argnums=(0, 1),
        )
        self._fresh = lambda: (lambda p: (p, opt.init(p)))(
            jax.device_put(init_params(workload.recipe.widths(workload.x.shape[1]), workload.seed))
        )
        self._x = jax.device_put(workload.x)
        self._key = jax.random.key(workload.seed)
        params, opt_state = self._fresh()
        start = time.perf_counter()
        self._train = train.lower(
            params, opt_state, self._x, self._key, epochs=workload.epochs
        ).compile()
        self.compile_seconds = time.perf_counter() - start
        self.device = _device()
        self.params = params
        if workload.warmup_epochs:
            self.run()

    def run(self) -> float:
        import jax

        params, opt_state = jax.block_until_ready(self._fresh())
        start = time.perf_counter()
        (self.params, _), _ = jax.block_until_ready(
            self._train(params, opt_state, self._x, self._key)
        )
        return time.perf_counter() - start

    def final_loss(self) -> float:
        import jax

        return numpy_loss(jax.device_get(self.params), self.w.x, self.w.recipe.activations())


IMPLEMENTATIONS = {
    "jax-python-loop": _PythonLoop,
    "jax-scan": _Scan,
    "jax-scan-loss": lambda workload: _Scan(workload, keep_loss=True),
}
