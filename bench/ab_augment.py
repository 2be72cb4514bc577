"""A/B: what random affine augmentation (jaxae.augment) adds to a DEC pretraining step.

The target: augmenting the batch inside the compiled step costs at most 15% of
the step on the CPU. The model is DEC's d-500-500-2000-10 autoencoder (784 inputs,
linear code, pixels / 255, Adam 1e-3, batch 256) on real digits. Each variant is one
jitted program that scans ``--steps`` optimiser steps (state donated); the batch rows
are gathered from the data on the device, and the augmenting variants warp the batch
with a fresh key per step (``fold_in(key, step)``) before the loss, as the training
step would. All programs are compiled and warmed first (compilation timed apart),
then timed in alternation: round r runs every variant once, the order rotated each
round, so a drifting machine (this CPU is shared) moves them alike. Prints, per
variant, wall time per step and the median [min, max] over rounds of its wall time
and process CPU time over the plain step's in the same round.
Its result is in docs/benchmarks.md (augmentation) and
bench/results/augment-cost.md; bench/test_bench_augment.py runs the same measurement.

  PYTHONPATH=$PWD python bench/ab_augment.py        # 9 rounds of 20 steps
  PYTHONPATH=$PWD python bench/ab_augment.py --rounds 7 --variants plain,augment,augment-only

(PYTHONPATH: a script's folder, not the working directory, starts sys.path, and the
jaxae to time is the checkout's.)

Variants:
  plain          the step without augmentation
  augment        the step on augment(batch), AugmentConfig() (shift 0.1, rotate 10,
                 nearest fill: DEC-DA's settings)
  augment-zero   the same with zero fill
  augment-all    shift 0.1, rotate 10, scale 0.1, shear 10 (the same work per pixel)
  augment-only   only the augmentation of each batch, no training step (its own cost;
                 the augmented batches are written out, as the step's input would be)
  augment-1g     the step on a slower formulation of the warp: one gather of
                 (B, 4 HW) and lerps (``one_gather_warp`` below), kept to compare
  only-1g        augment-only with that warp
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.augment import AugmentConfig, affine_matrices, augment
from jaxae.config import ModelConfig, TrainConfig
from jaxae.data import load_dataset
from jaxae.model import build_model
from jaxae.train import train_step
from jaxae.train_state import build_optimizer, create_train_state, split_seed

SHAPE = (28, 28)
CONFIGS = {
    "plain": None,
    "augment": AugmentConfig(),
    "augment-zero": AugmentConfig(fill="zero"),
    "augment-all": AugmentConfig(shift=0.1, rotate=10.0, scale=0.1, shear=10.0),
    "augment-only": AugmentConfig(),
    "augment-1g": AugmentConfig(),
    "only-1g": AugmentConfig(),
}
MODEL = ModelConfig(
    input_dim=784, hidden=(500, 500, 2000), code_dim=10, code_activation="linear", scaling="unit"
)


def one_gather_warp(images, matrices, image_shape):
    """A slower formulation of jaxae.augment.warp (commit ff36c06, nearest fill), kept to
    compare: the four neighbours' indices concatenated into one gather of (B, 4 HW), then
    interpolated as a + f (b - a). XLA writes the concatenated index array to memory
    before the gather instead of fusing the index arithmetic into it."""
    h, w = image_shape
    gy, gx = np.divmod(np.arange(h * w, dtype=np.int32), w)
    gx = jnp.asarray(gx, jnp.float32)[None, :]
    gy = jnp.asarray(gy, jnp.float32)[None, :]
    m = matrices
    sx = m[:, 0, 0:1] * gx + m[:, 0, 1:2] * gy + m[:, 0, 2:3]
    sy = m[:, 1, 0:1] * gx + m[:, 1, 1:2] * gy + m[:, 1, 2:3]
    x0, y0 = jnp.floor(sx), jnp.floor(sy)
    fx, fy = sx - x0, sy - y0
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    xa, xb = jnp.clip(x0, 0, w - 1), jnp.clip(x0 + 1, 0, w - 1)
    ya, yb = jnp.clip(y0, 0, h - 1) * w, jnp.clip(y0 + 1, 0, h - 1) * w
    idx = jnp.concatenate([ya + xa, ya + xb, yb + xa, yb + xb], axis=1)
    v = jnp.take_along_axis(images, idx, axis=1, mode="promise_in_bounds")
    hw = h * w
    v00, v01, v10, v11 = v[:, :hw], v[:, hw : 2 * hw], v[:, 2 * hw : 3 * hw], v[:, 3 * hw :]
    top = v00 + fx * (v01 - v00)
    bottom = v10 + fx * (v11 - v10)
    return top + fy * (bottom - top)


def program(name: str, train_config: TrainConfig):
    """jit(run(state, x, idx (S, B), key, first) -> (state, (S,) losses)), state donated."""
    config = CONFIGS[name]
    model = build_model(MODEL)
    optimizer = build_optimizer(train_config)

    def run(state, x, idx, key, first):
        def one(state, i):
            batch = x.at[idx[i]].get(mode="promise_in_bounds")
            step_key = jax.random.fold_in(key, first + i)
            if name.endswith("1g"):
                m = affine_matrices(step_key, batch.shape[0], config, SHAPE)
                batch = one_gather_warp(batch, m, SHAPE)
            elif config is not None:
                batch = augment(step_key, batch, config, SHAPE)
            if name in ("augment-only", "only-1g"):
                # No step; the augmented batches are the scan's output, written to
                # memory as the step's input is (a sum could fuse the warp away).
                return state, batch
            return train_step(state, batch, model=model, optimizer=optimizer)

        return jax.lax.scan(one, state, jnp.arange(idx.shape[0]))

    return jax.jit(run, donate_argnums=0)


def measure(x, names, *, rounds=9, steps=20, batch=256, log=print) -> dict:
    """Time the variants ``names`` (the first must be ``plain``) on scaled images ``x``.

    Returns ``{name: {"wall": (rounds,), "cpu": (rounds,), "compile_seconds": float}}``,
    seconds per call of ``steps`` steps, and ``"load"``: /proc/loadavg before and after.
    """
    if names[0] != "plain":
        raise ValueError("the first variant must be plain: the ratios are over it")
    train_config = TrainConfig(batch_size=batch, lr=1e-3)
    init_key, _ = split_seed(0)
    load_before = _loadavg()
    rng = np.random.default_rng(0)
    key = jax.random.key(1)

    def batches():
        return jax.device_put(rng.integers(0, x.shape[0], (steps, batch), dtype=np.int32))

    programs, states, out = {}, {}, {}
    for name in names:
        run = program(name, train_config)
        state = create_train_state(init_key, jnp.float32(train_config.lr), MODEL, train_config)
        start = time.perf_counter()
        compiled = run.lower(state, x, batches(), key, 0).compile()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        state, _ = jax.block_until_ready(compiled(state, x, batches(), key, 0))  # warm-up
        log(
            f"{name}: compiled in {compile_s:.1f} s, first call {time.perf_counter() - start:.2f} s"
        )
        programs[name], states[name] = compiled, state
        out[name] = {"wall": [], "cpu": [], "compile_seconds": compile_s}
    step = steps
    for r in range(rounds):
        idx = batches()  # the same rows for every variant of a round
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t0, c0 = time.perf_counter(), time.process_time()
            states[name], losses = programs[name](states[name], x, idx, key, step)
            jax.block_until_ready((states[name], losses))
            out[name]["wall"].append(time.perf_counter() - t0)
            out[name]["cpu"].append(time.process_time() - c0)
        step += steps
    for row in out.values():
        row["wall"], row["cpu"] = np.asarray(row["wall"]), np.asarray(row["cpu"])
    out["load"] = {"before": load_before, "after": _loadavg()}
    return out


def ratios(times: dict, name: str, kind: str = "wall") -> tuple[float, float, float]:
    """Median, min and max over rounds of ``name``'s time over plain's in the same round."""
    r = times[name][kind] / times["plain"][kind]
    return float(np.median(r)), float(r.min()), float(r.max())


def _loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())  # 1, 5 and 15 minutes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("JAXAE_BENCH_DATA", "../shared/data/mnist-5k"))
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--steps", type=int, default=20, help="optimiser steps per timed call")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--variants", default="plain,augment,augment-only")
    args = p.parse_args()
    names = args.variants.split(",")
    if names[0] != "plain":
        p.error("the first variant must be plain: the ratios are over it")
    ds = load_dataset(args.data)
    x = jax.device_put(jnp.asarray(ds.images, jnp.float32) / 255.0)
    print(
        f"data: {args.data} ({x.shape[0]} x {x.shape[1]}); {jax.default_backend()} "
        f"{jax.devices()[0].device_kind}; jax {jax.__version__}; "
        f"{os.cpu_count()} CPUs; load {_loadavg()}"
    )
    times = measure(x, names, rounds=args.rounds, steps=args.steps, batch=args.batch)
    print(
        f"{args.rounds} rounds of {args.steps} steps, batch {args.batch}; "
        f"load after {times['load']['after']}"
    )
    for name in names:
        w = times[name]["wall"]
        mw, lw, hw = ratios(times, name, "wall")
        mc, lc, hc = ratios(times, name, "cpu")
        print(
            f"  {name:13} {1e3 * np.median(w) / args.steps:7.2f} ms/step "
            f"(min {1e3 * w.min() / args.steps:.2f})   wall / plain: median {mw:.3f} "
            f"[{lw:.3f}, {hw:.3f}]   CPU time / plain: median {mc:.3f} [{lc:.3f}, {hc:.3f}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
