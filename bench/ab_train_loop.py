"""A/B timing of variants of jaxae's epoch loop against the plain whole-run scan, one process.

What costs jaxae's ``run_epochs`` time against a plain ``lax.scan`` over epochs at large
batches? Each variant changes one thing of ``jaxae.train._train_epochs``; all are compiled
first, then timed in alternation (round r runs every variant once, in turn), so that a
drifting machine shifts them alike. Prints the median and min/max over rounds of each
variant's time over the plain scan's in the same round (below 1: faster than the scan).

  python bench/ab_train_loop.py --batch 16384 --rounds 5
  python bench/ab_train_loop.py --batch 1024,4096,16384 --variants jaxae,scan,no-losses

Variants (``jaxae`` is the library's own ``run_epochs``):
  scan          the plain peer: params as (W, b) pairs, matmuls, ``x[i]``, a static
                ``lax.scan`` over epochs (``jaxae.bench.peers.jax_plain``'s program)
  jaxae         ``jaxae.train.run_epochs`` as it is
  no-losses     jaxae's loop without the per-epoch loss bookkeeping (``losses.at[i].set``)
  plain-gather  ``x[idx]`` instead of ``x.at[idx].get(mode="promise_in_bounds")``
  scan-epochs   ``lax.scan`` over a static number of epochs instead of the traced ``fori_loop``
  plain-model   jaxae's loop with the peer's matmul model instead of the Flax module
  mean-loss     the epoch loss as a running sum in the carry, not the stacked step losses
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxae.bench.data import load_images
from jaxae.bench.peers.common import SEED_RECIPE, init_params
from jaxae.config import ModelConfig
from jaxae.preprocess import standardize
from jaxae.train import (
    build_model,
    build_optimizer,
    create_train_state,
    epoch_batches,
    epoch_key,
    run_epochs,
    split_seed,
    train_step,
)

LR, EPS = 0.01, 1e-7


def plain_loss(params, batch):
    h = batch
    for i, (w, b) in enumerate(params):
        h = h @ w + b[None, :]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return jnp.mean((h - batch) ** 2)


def plain_step(state, batch, optimizer):
    params, opt_state = state
    loss, grads = jax.value_and_grad(plain_loss)(params, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss


def variant_program(name, *, model_config, batch_size, chunk):
    """(init(seed) -> state, run(state, x, shuffle_key, lr, first, count) -> (state, losses))."""
    if name == "jaxae":

        def run(state, x, key, lr, first, count):
            return run_epochs(
                state,
                x,
                key,
                lr,
                first,
                count,
                model_config=model_config,
                batch_size=batch_size,
                eps=EPS,
                chunk=chunk,
            )

        return (lambda seed: create_train_state(split_seed(seed)[0], model_config)), run

    plain = name in ("scan", "plain-model")
    if plain:

        def init(seed):
            params = jax.device_put(init_params(SEED_RECIPE.widths(model_config.input_dim), seed))
            return params, optax.adam(LR, eps=EPS).init(params)

    else:
        init = lambda seed: create_train_state(split_seed(seed)[0], model_config)

    def program(state, x, key, lr, first, count):
        if plain:
            step = functools.partial(plain_step, optimizer=optax.adam(lr, eps=EPS))
        else:
            step = functools.partial(
                train_step, model=build_model(model_config), optimizer=build_optimizer(lr, EPS)
            )
        if name == "scan":  # the peer: static epochs, x[i], no loss bookkeeping
            n_steps = x.shape[0] // batch_size
            keys = jax.vmap(lambda e: epoch_key(key, first + e))(jnp.arange(chunk))

            def epoch(carry, k):
                idx = jax.random.permutation(k, x.shape[0])[: n_steps * batch_size]
                carry, _ = jax.lax.scan(
                    lambda c, i: (step(c, x[i])[0], None), carry, idx.reshape(n_steps, batch_size)
                )
                return carry, None

            state, _ = jax.lax.scan(epoch, state, keys)
            return state, jnp.zeros((chunk,), jnp.float32)

        gather = (
            (lambda idx: x[idx])
            if name == "plain-gather"
            else (lambda idx: x.at[idx].get(mode="promise_in_bounds"))
        )

        def batch_step(state, idx):
            return step(state, gather(idx))

        def one_epoch(state, i):
            idx = epoch_batches(epoch_key(key, first + i), x.shape[0], batch_size)
            if name == "mean-loss":
                def summed(carry, j):
                    state, loss = batch_step(carry[0], j)
                    return (state, carry[1] + loss), None

                (state, total), _ = jax.lax.scan(summed, (state, jnp.float32(0.0)), idx)
                return state, total / idx.shape[0]
            state, losses = jax.lax.scan(batch_step, state, idx)
            return state, losses.mean()

        if name == "scan-epochs":
            return jax.lax.scan(one_epoch, state, jnp.arange(chunk))
        if name == "no-losses":
            state = jax.lax.fori_loop(0, count, lambda i, s: one_epoch(s, i)[0], state)
            return state, jnp.zeros((chunk,), jnp.float32)

        def body(i, carry):
            state, losses = carry
            state, loss = one_epoch(state, i)
            return state, losses.at[i].set(loss)

        return jax.lax.fori_loop(0, count, body, (state, jnp.full((chunk,), jnp.nan)))

    return init, jax.jit(program, donate_argnums=0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", default="16384", help="comma-separated batch sizes")
    p.add_argument("--n", type=int, default=70_000)
    p.add_argument("--epochs", type=int, default=1, help="epochs per timed run")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--variants", default="scan,jaxae,no-losses,plain-gather,scan-epochs,plain-model,mean-loss"
    )
    p.add_argument("--data", default=os.environ.get("JAXAE_BENCH_DATA"))
    args = p.parse_args()
    names = args.variants.split(",")
    images, source = load_images(args.data, args.n)
    x = jax.jit(standardize)(images)
    model_config = ModelConfig(input_dim=images.shape[1])
    print(f"data: {source}; {jax.devices()[0].device_kind}; load {os.getloadavg()[0]:.1f}")
    key = split_seed(0)[1]
    lr = jnp.float32(LR)
    for batch in map(int, args.batch.split(",")):
        programs, inits = {}, {}
        for name in names:
            init, run = variant_program(
                name, model_config=model_config, batch_size=batch, chunk=args.epochs
            )
            state = init(0)
            start = time.perf_counter()
            jax.block_until_ready(run(state, x, key, lr, 0, args.epochs))  # compile + warm-up
            programs[name], inits[name] = run, init
            print(
                f"batch {batch} {name}: compiled and warmed in {time.perf_counter() - start:.1f} s"
            )
        times = {name: [] for name in names}
        cpu = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:
                state = jax.block_until_ready(inits[name](0))
                start, start_cpu = time.perf_counter(), time.process_time()
                jax.block_until_ready(programs[name](state, x, key, lr, 0, args.epochs))
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        steps = args.epochs * (args.n // batch)
        base = np.asarray(times.get("scan", times[names[0]]))
        base_cpu = np.asarray(cpu.get("scan", cpu[names[0]]))
        print(
            f"batch {batch}, {steps} steps per run, {args.rounds} rounds, "
            f"load {os.getloadavg()[0]:.1f}"
        )
        for name in names:
            t = np.asarray(times[name])
            r = t / base
            c = np.asarray(cpu[name]) / base_cpu
            print(
                f"  {name:13} {1e3 * np.median(t) / steps:8.2f} ms/step   time / scan: median "
                f"{np.median(r):.3f} [{r.min():.3f}, {r.max():.3f}], fastest / fastest "
                f"{t.min() / base.min():.3f}; CPU time / scan's: median {np.median(c):.3f} "
                f"[{c.min():.3f}, {c.max():.3f}]"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
