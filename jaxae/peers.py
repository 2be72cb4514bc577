"""The alternatives ("peers") that jaxae's benchmarks time themselves against.

Each peer trains the same recipe on the same data and is timed the same way, so
a benchmark can report jaxae's speed as a ratio measured in one run:

- autoencoder ``D-256-100-256-D``: Dense+ReLU three times, then a linear Dense;
  Glorot-uniform kernels and zero biases, drawn with NumPy from ``seed`` so
  that every peer starts from the same weights;
- MSE over all elements; Adam with lr 0.01, betas 0.9/0.999, eps 1e-7 (Keras'
  default);
- each epoch a fresh random permutation, cut into ``N // B`` full batches.

The JAX peers are deliberately self-contained (plain ``jnp`` and optax): they are
what people would write without jaxae, so they must not share its code. torch and
tensorflow are imported lazily, so ``import jaxae.peers`` works without them.

Example::

    import numpy as np
    from jaxae import peers

    x = np.random.default_rng(0).standard_normal((512, 64), dtype=np.float32)
    for name, reason in peers.available().items():
        if reason is None:
            t = peers.time_peer(name, x, batch_size=64, epochs=1)
            print(f"{name:16} {1e3 * t.seconds_per_step:7.3f} ms/step on {t.device}")
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import itertools
import os
import shutil
import sysconfig
import time
import warnings
from collections.abc import Callable

import numpy as np

from jaxae.errors import JaxaeError

HIDDEN = (256, 100, 256)
LR = 0.01
EPS = 1e-7
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class PeerTiming:
    """One peer's timing.

    Attributes:
      name: the peer, a key of ``PEERS``.
      seconds_per_step: wall time of the timed run over ``steps``, device
        synchronised at the end.
      compile_seconds: compilation (JAX: ``lower().compile()``), or the wall time
        of the warm-up run for torch-compile and keras; 0 for eager peers.
      steps: training steps timed, ``epochs * (N // batch_size)``.
      final_loss: MSE over all of ``x`` after warm-up and timed run, computed in
        float64 NumPy from the peer's weights.
      device: where it ran, e.g. ``"cpu"`` or ``"NVIDIA H200"``.
    """

    name: str
    seconds_per_step: float
    compile_seconds: float
    steps: int
    final_loss: float
    device: str


def _init_params(d: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Glorot-uniform kernels ``(fan_in, fan_out)`` and zero biases, float32."""
    rng = np.random.default_rng(seed)
    dims = (d, *HIDDEN, d)
    params = []
    for fan_in, fan_out in itertools.pairwise(dims):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
        params.append((w, np.zeros(fan_out, np.float32)))
    return params


def _numpy_loss(params, x: np.ndarray) -> float:
    """Reference MSE of the autoencoder ``params`` on ``x``, in float64."""
    x = np.asarray(x, np.float64)
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        if i < len(params) - 1:
            h = np.maximum(h, 0.0)
    return float(np.mean((h - x) ** 2))


def _timing(name, seconds, steps, compile_seconds, params, x, device) -> PeerTiming:
    """A peer's ``steps`` steps took ``seconds``; ``params`` are its weights afterwards."""
    return PeerTiming(name, seconds / steps, compile_seconds, steps, _numpy_loss(params, x), device)


# --- JAX ---------------------------------------------------------------------------------


def _jax_step(dtype: str):
    """optax Adam, and a pure step ``(params, opt_state, batch) -> (params, opt_state, loss)``."""
    import jax
    import jax.numpy as jnp
    import optax

    compute = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32

    def loss_fn(params, batch):
        h = batch.astype(compute)
        for i, (w, b) in enumerate(params):
            h = h @ w.astype(compute) + b.astype(compute)[None, :]
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        return jnp.mean((h.astype(jnp.float32) - batch) ** 2)

    opt = optax.adam(LR, b1=0.9, b2=0.999, eps=EPS)

    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return opt, step


def _jax_device() -> str:
    import jax

    return jax.devices()[0].device_kind


def _jax_python_loop(x, *, batch_size, epochs, warmup_epochs, seed, dtype) -> PeerTiming:
    import jax

    opt, step_fn = _jax_step(dtype)
    step = jax.jit(step_fn, donate_argnums=(0, 1))
    params = jax.device_put(_init_params(x.shape[1], seed))
    opt_state = opt.init(params)
    rng = np.random.default_rng(seed)
    n_steps = len(x) // batch_size

    start = time.perf_counter()
    step.lower(params, opt_state, x[:batch_size]).compile()
    compile_seconds = time.perf_counter() - start

    def run(params, opt_state, n_epochs):
        for _ in range(n_epochs):
            perm = rng.permutation(len(x))
            for i in range(n_steps):
                batch = x[perm[i * batch_size : (i + 1) * batch_size]]  # host gather, then copy
                params, opt_state, _ = step(params, opt_state, batch)
        return jax.block_until_ready((params, opt_state))

    params, opt_state = run(params, opt_state, warmup_epochs)
    start = time.perf_counter()
    params, opt_state = run(params, opt_state, epochs)
    seconds = time.perf_counter() - start
    return _timing(
        "jax-python-loop",
        seconds,
        epochs * n_steps,
        compile_seconds,
        jax.device_get(params),
        x,
        _jax_device(),
    )


def _scan_run(params, opt_state, x, key, *, epochs, batch_size, step):
    """``epochs`` epochs in one ``lax.scan``; each epoch a scan over its batches."""
    import jax

    n_steps = x.shape[0] // batch_size

    def epoch(carry, key):
        idx = jax.random.permutation(key, x.shape[0])[: n_steps * batch_size]

        def body(carry, i):
            params, opt_state, _ = step(*carry, x[i])
            return (params, opt_state), None

        carry, _ = jax.lax.scan(body, carry, idx.reshape(n_steps, batch_size))
        return carry, None

    (params, opt_state), _ = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, epochs))
    return params, opt_state


def _jax_scan(x, *, batch_size, epochs, warmup_epochs, seed, dtype) -> PeerTiming:
    import jax

    opt, step = _jax_step(dtype)
    train = jax.jit(
        functools.partial(_scan_run, batch_size=batch_size, step=step),
        static_argnames="epochs",
        donate_argnums=(0, 1),
    )
    params = jax.device_put(_init_params(x.shape[1], seed))
    opt_state = opt.init(params)
    xd = jax.device_put(x)
    warm_key, key = jax.random.split(jax.random.key(seed))
    n_steps = len(x) // batch_size

    start = time.perf_counter()
    timed = train.lower(params, opt_state, xd, key, epochs=epochs).compile()
    compile_seconds = time.perf_counter() - start
    if warmup_epochs:
        warm = (
            timed
            if warmup_epochs == epochs
            else train.lower(params, opt_state, xd, warm_key, epochs=warmup_epochs).compile()
        )
        params, opt_state = jax.block_until_ready(warm(params, opt_state, xd, warm_key))

    start = time.perf_counter()
    params, opt_state = jax.block_until_ready(timed(params, opt_state, xd, key))
    seconds = time.perf_counter() - start
    return _timing(
        "jax-scan",
        seconds,
        epochs * n_steps,
        compile_seconds,
        jax.device_get(params),
        x,
        _jax_device(),
    )


# --- PyTorch -----------------------------------------------------------------------------


def _torch(x, *, compiled, **options) -> PeerTiming:
    if not compiled:
        return _torch_run(x, compiled=False, **options)
    try:
        # torch.compile warns about its own deprecated internals and gives advice (e.g. "enable
        # TF32"); none of it is the caller's to act on, and under -W error it would abort the
        # compilation.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")
            warnings.filterwarnings("ignore", category=UserWarning, module="torch")
            return _torch_run(x, compiled=True, **options)
    except Exception as e:  # inductor and triton fail in many types
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise RuntimeError(
            f"torch.compile failed on this machine: {type(e).__name__}: {first_line}"
        ) from e


def _torch_run(x, *, batch_size, epochs, warmup_epochs, seed, dtype, compiled) -> PeerTiming:
    import torch

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev.type == "cuda"
    init = _init_params(x.shape[1], seed)
    layers = []
    for i, (w, b) in enumerate(init):
        linear = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, torch.nn.ReLU()] if i < len(init) - 1 else [linear]
    model = torch.nn.Sequential(*layers).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=EPS)
    xt = torch.from_numpy(x).to(dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    n, n_steps = len(x), len(x) // batch_size

    def loss_fn(batch):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            return torch.nn.functional.mse_loss(model(batch).float(), batch)

    if compiled:
        # CUDA graphs (reduce-overhead) are what removes per-step launch cost on a GPU;
        # on a CPU there are none, so the default mode.
        loss_fn = torch.compile(loss_fn, mode="reduce-overhead" if cuda else None)

    def run(n_epochs):
        for _ in range(n_epochs):
            perm = torch.randperm(n, device=dev, generator=gen)
            for i in range(n_steps):
                if compiled and cuda:
                    torch.compiler.cudagraph_mark_step_begin()
                loss = loss_fn(xt[perm[i * batch_size : (i + 1) * batch_size]])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()

    start = time.perf_counter()
    run(warmup_epochs)
    compile_seconds = time.perf_counter() - start if compiled else 0.0
    start = time.perf_counter()
    run(epochs)
    seconds = time.perf_counter() - start
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    weights = [(m.weight.detach().cpu().numpy().T, m.bias.detach().cpu().numpy()) for m in linears]
    return _timing(
        "torch-compile" if compiled else "torch-eager",
        seconds,
        epochs * n_steps,
        compile_seconds,
        weights,
        x,
        torch.cuda.get_device_name(dev) if cuda else "cpu",
    )


# --- Keras -------------------------------------------------------------------------------


def _keras(x, *, batch_size, epochs, warmup_epochs, seed, dtype) -> PeerTiming:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    version = keras.__version__
    if int(version.split(".")[0]) >= 3 and keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"keras {version} runs on the {keras.backend.backend()!r} backend: "
            "set KERAS_BACKEND=tensorflow before keras is first imported"
        )
    tf.random.set_seed(seed)  # fit's shuffling
    policy = "mixed_bfloat16" if dtype == "bfloat16" else "float32"
    d = x.shape[1]
    model = keras.Sequential(
        [keras.Input((d,))]
        + [keras.layers.Dense(h, activation="relu", dtype=policy) for h in HIDDEN]
        + [keras.layers.Dense(d, dtype=policy)]
    )
    model.set_weights([a for pair in _init_params(d, seed) for a in pair])
    model.compile(optimizer=keras.optimizers.Adam(LR), loss="mse")
    n_steps = len(x) // batch_size
    xs = x[: n_steps * batch_size]  # fit would also train on a last, partial batch

    def fit(n_epochs):
        if n_epochs:
            history = model.fit(
                xs, xs, batch_size=batch_size, epochs=n_epochs, shuffle=True, verbose=0
            )
            return history.history["loss"][-1]  # a Python float: the device has finished

    start = time.perf_counter()
    fit(warmup_epochs)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    fit(epochs)
    seconds = time.perf_counter() - start
    weights = model.get_weights()
    gpus = tf.config.list_physical_devices("GPU")
    where = (
        tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
        if gpus
        else "cpu"
    )
    return _timing(
        "keras",
        seconds,
        epochs * n_steps,
        compile_seconds,
        list(zip(weights[::2], weights[1::2])),
        x,
        f"{where} (keras {version}, tensorflow {tf.__version__})",
    )


PEERS: dict[str, Callable[..., PeerTiming]] = {
    "jax-python-loop": _jax_python_loop,
    "jax-scan": _jax_scan,
    "torch-eager": functools.partial(_torch, compiled=False),
    "torch-compile": functools.partial(_torch, compiled=True),
    "keras": _keras,
}


def _missing(*modules: str) -> str | None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed"
    return None


def _compiler_missing() -> str | None:
    """What torch.compile's code generation lacks here (inductor and triton build C/C++)."""
    if not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")):
        return "no C++ compiler (g++ or clang++) for torch.compile"
    if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        return "no Python headers (Python.h) for torch.compile"
    return None


def available() -> dict[str, str | None]:
    """Each peer's name -> ``None`` if it can run here, else a short reason.

    Cheap: looks for the packages without importing them.
    """
    jax = _missing("jax", "optax")
    torch = _missing("torch")
    return {
        "jax-python-loop": jax,
        "jax-scan": jax,
        "torch-eager": torch,
        "torch-compile": torch or _compiler_missing(),
        "keras": _missing("tensorflow", "keras"),
    }


def time_peer(
    name: str,
    x: np.ndarray,
    *,
    batch_size: int = 100,
    epochs: int = 2,
    warmup_epochs: int = 1,
    seed: int = 0,
    dtype: str = "float32",
) -> PeerTiming:
    """Train peer ``name`` on ``x``: a warm-up run, then a timed run.

    Args:
      name: a key of ``PEERS``.
      x: ``(N, D)`` data, standardised per row; converted to float32.
      batch_size: rows per step; each epoch has ``N // batch_size`` steps.
      epochs: epochs timed.
      warmup_epochs: epochs run first, untimed; training continues from them.
        With 0, torch-compile and keras compile inside the timed run.
      seed: the initial weights (the same for every peer) and the shuffling.
      dtype: ``"float32"``, or ``"bfloat16"`` compute with float32 parameters.

    Returns:
      A ``PeerTiming``.

    Raises:
      JaxaeError: bad arguments.
      RuntimeError: the peer cannot run here (see ``available()``).
    """
    if name not in PEERS:
        raise JaxaeError(f"unknown peer {name!r}: use one of {', '.join(PEERS)}")
    if dtype not in DTYPES:
        raise JaxaeError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] < 1:
        raise JaxaeError(f"x must be a 2-D array (N, D), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise JaxaeError("x holds NaN or infinite values: clean or impute them first")
    if not 1 <= batch_size <= len(x):
        raise JaxaeError(f"batch_size must be between 1 and N={len(x)}, got {batch_size}")
    if epochs < 1 or warmup_epochs < 0:
        raise JaxaeError(f"need epochs >= 1 and warmup_epochs >= 0, got {epochs}, {warmup_epochs}")
    reason = available()[name]
    if reason is not None:
        raise RuntimeError(f"peer {name!r} cannot run here: {reason}")
    return PEERS[name](
        x, batch_size=batch_size, epochs=epochs, warmup_epochs=warmup_epochs, seed=seed, dtype=dtype
    )
