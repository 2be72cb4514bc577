"""DEC-DA / IDEC-DA: the steps see augmented batches, the target the clean images.

The anchor is XifengGuo/DEC-DA (``FcDEC.py`` ``fit``, ``FcIDEC.py``
``train_on_batch``): the batch of each step goes through ``random_transform``
before the optimiser sees it, IDEC-DA reconstructs that augmented batch, and
``p = target_distribution(self.predict(x))`` is computed on the clean x. Same
setting as test_dec.py: random tiny autoencoders on 200 8x8 digits. Equalities
marked bitwise hold on the CPU, where the models run one after another.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from jaxae.augment import AugmentConfig, augment
from jaxae.cluster import (
    RefineConfig,
    init_refinement,
    refine,
    soft_assignment,
    target_distribution,
)
from jaxae.cluster import dec as dec_module
from jaxae.cluster.dec import augment_keys, batch_rows, build_optimizer, refine_loss, refine_steps
from jaxae.cluster.refine import restore_state, state_template
from jaxae.config import ModelConfig
from jaxae.errors import JaxaeError
from jaxae.preprocess import standardize
from tests.helpers import digits

MODEL = ModelConfig.tiny()
SEEDS = [0, 1]
SHAPE = (8, 8)
DA_OPTIONS = dict(augment=AugmentConfig(shift=0.1, rotate=10.0), image_shape=SHAPE)
# tol 0: never converges, so every run takes exactly max_iter (24) steps.
PLAIN = dataclasses.replace(RefineConfig.tiny("dec"), tol=0.0)
DA = dataclasses.replace(PLAIN, **DA_OPTIONS)
# SGD for IDEC here: Adam's first step divides the gradient by its own size, which
# turns rounding differences into differences of the order of the step.
IDEC_SGD = dataclasses.replace(
    RefineConfig.tiny("idec"), tol=0.0, optimizer="sgd", lr=0.01, momentum=0.9
)
IDEC_DA = dataclasses.replace(IDEC_SGD, **DA_OPTIONS)


@pytest.fixture(scope="module")
def x():
    ds = digits(200)
    assert ds.image_shape == SHAPE
    return jnp.asarray(np.asarray(standardize(ds.images)))


@pytest.fixture(scope="module")
def params():
    model = dec_module.build_model(MODEL)
    keys = jax.random.split(jax.random.key(0), len(SEEDS))
    return jax.vmap(lambda k: model.init(k, jnp.zeros((1, MODEL.input_dim))))(keys)


@pytest.fixture(scope="module")
def start(x, params):
    """The host copy of the starting state (KMeans centres), shared by every config."""
    return jax.device_get(init_refinement(params, x, model_config=MODEL, config=DA, seeds=SEEDS))


def run(state, x, first, count, config, keys=None):
    """``refine_steps`` on a device copy of a host state (the state is donated)."""
    extra = {} if keys is None else {"keys": jnp.asarray(keys)}
    state, ran = refine_steps(
        jax.tree.map(jnp.array, state), x, first, count, model_config=MODEL, config=config, **extra
    )
    return jax.device_get(state), int(ran)


def model(tree, m):
    return jax.tree.map(lambda a: a[m], tree)


def tree_equal(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(u), np.asarray(v))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@jax.jit
def target_of(params, x):
    """P and labels of one model on ``x``, computed apart from refine_steps."""
    codes = dec_module.encode(params["autoencoder"], x, MODEL)
    q = soft_assignment(codes, params["centers"])
    return target_distribution(q), jnp.argmax(q, axis=1)


@pytest.fixture(scope="module")
def whole(x, start):
    """24 DEC-DA steps in one call: six target updates, 24 augmented batches."""
    state, ran = run(start, x, 0, DA.max_iter, DA, augment_keys(SEEDS))
    assert ran == DA.max_iter
    return state


def test_the_target_is_computed_on_the_clean_images(x, start, whole):
    """After 4 augmented steps, the update before step 4 must equal P of the clean x
    under the parameters of step 4; the same P on augmented x is far from it."""
    t = DA.update_interval
    keys = augment_keys(SEEDS)
    before, _ = run(start, x, 0, t, DA, keys)
    after, _ = run(before, x, t, 1, DA, keys)  # the update, then step t
    for m in range(len(SEEDS)):
        p, labels = target_of(model(before.params, m), x)
        np.testing.assert_array_equal(after.target[m], p)
        np.testing.assert_array_equal(after.labels[m], labels)
        # What an update on augmented images would have given: far outside the tolerance.
        moved = augment(jax.random.key(m), x, DA.augment, SHAPE)
        p_moved, _ = target_of(model(before.params, m), moved)
        assert np.abs(p_moved - p).max() > 1e-3
    # The final state's target is the one of the update before step 20, also clean.
    at_20, _ = run(start, x, 0, 20, DA, keys)
    for m in range(len(SEEDS)):
        p, _ = target_of(model(at_20.params, m), x)
        np.testing.assert_array_equal(whole.target[m], p)


@pytest.mark.parametrize(("plain", "da"), [(PLAIN, DA), (IDEC_SGD, IDEC_DA)], ids=["dec", "idec"])
def test_a_step_sees_the_augmented_batch(x, start, plain, da):
    """Step 0 with augmentation equals a step computed by hand on the batch augmented
    with ``fold_in(key, 0)``, and differs from the step on the clean batch; for IDEC
    it also differs from a step that reconstructs the clean batch from augmented input."""
    keys = augment_keys(SEEDS)
    without, _ = run(start, x, 0, 1, plain)
    with_da, _ = run(start, x, 0, 1, da, keys)
    # The update before step 0 is the same: augmentation never reaches the target.
    np.testing.assert_array_equal(with_da.target, without.target)
    rows, mask = batch_rows(jnp.int32(0), x.shape[0], da.batch_size)
    optimizer = build_optimizer(plain)
    ae = dec_module.build_model(MODEL)

    def clean_reconstruction_loss(params, batch, clean, target):
        kl = refine_loss(
            params,
            batch,
            target,
            mask,
            model_config=MODEL,
            config=dataclasses.replace(plain, method="dec"),
        )
        codes = ae.apply(params["autoencoder"], batch, method=ae.encode)
        recon = ae.apply(params["autoencoder"], codes, method=ae.decode)
        mse = jnp.sum(mask * jnp.mean(jnp.square(recon - clean), axis=1)) / jnp.sum(mask)
        return mse + plain.gamma * kl

    @jax.jit
    def by_hand(params, opt_state, target, key):
        clean, target = x[rows], target[rows]
        step_key = jax.random.fold_in(jax.random.wrap_key_data(key), 0)
        batch = augment(step_key, clean, da.augment, SHAPE)
        augmented = functools.partial(refine_loss, model_config=MODEL, config=plain)
        steps = []
        for grads in (
            jax.grad(augmented)(params, batch, target, mask),
            jax.grad(clean_reconstruction_loss)(params, batch, clean, target),
        ):
            updates, _ = optimizer.update(grads, opt_state, params)
            steps.append(optax.apply_updates(params, updates))
        return steps

    def largest_difference(a, b):
        return max(
            np.abs(np.asarray(u) - np.asarray(v)).max()
            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )

    for m in range(len(SEEDS)):
        expected, clean_recon = by_hand(
            model(start.params, m), model(start.opt_state, m), without.target[m], keys[m]
        )
        got = model(with_da.params, m)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        # The step on the clean batch is far from it.
        assert largest_difference(got, model(without.params, m)) > 1e-4
        if plain.method == "idec":  # as FcIDEC.train_on_batch: x in, [p, x] out
            assert largest_difference(got, clean_recon) > 1e-4


def test_chunks_of_any_size_equal_one_call_bitwise(x, start, whole):
    """Chunk boundaries inside and at update intervals: the keys are fold_in(key, step)
    of the state's own step, so a chunk starts exactly where the last one ended."""
    keys = augment_keys(SEEDS)
    state = start
    for first, count in ((0, 3), (3, 5), (8, 1), (9, 15)):
        state, ran = run(state, x, first, count, DA, keys)
        assert ran == count
    assert tree_equal(state, whole)


def test_refine_twice_with_a_seed_is_identical_and_resumes_exactly(x, params):
    kwargs = dict(model_config=MODEL, config=DA, seeds=SEEDS, progress=False)
    saved = {}
    first = refine(
        x, params, steps_per_chunk=10, on_chunk=lambda done, s: saved.update({done: s}), **kwargs
    )
    second = refine(x, params, **kwargs)
    assert tree_equal(first.state, second.state)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert sorted(saved) == [10, 20, 24]
    # A checkpoint's state after 10 steps, resumed with the same seeds.
    resumed = refine(x, params, initial=saved[10], start_step=10, **kwargs)
    assert tree_equal(resumed.state, first.state)
    # Other seeds draw other transforms (and other KMeans starts).
    other = refine(x, params, **{**kwargs, "seeds": [2, 3]})
    assert not tree_equal(other.state.params, first.state.params)


def test_vmapped_models_agree_with_mapped(x, start, whole):
    vmapped, _ = refine_steps(
        jax.tree.map(jnp.array, start),
        x,
        0,
        DA.max_iter,
        model_config=MODEL,
        config=DA,
        vectorize=True,
        keys=jnp.asarray(augment_keys(SEEDS)),
    )
    for a, b in zip(jax.tree.leaves(vmapped), jax.tree.leaves(whole), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_augmentation_off_compiles_the_plain_program(x, start):
    """With AugmentConfig.none() the keys and the image shape change nothing: the
    same lowered program as a config that never heard of augmentation."""
    off = dataclasses.replace(PLAIN, augment=AugmentConfig.none(), image_shape=SHAPE)
    state = jax.tree.map(jnp.asarray, start)
    lower = functools.partial(refine_steps.lower, state, x, 0, 0, model_config=MODEL)
    keys = jnp.asarray(augment_keys(SEEDS))
    plain = lower(config=PLAIN).as_text()
    assert lower(config=off, keys=keys).as_text() == plain
    assert lower(config=DA, keys=keys).as_text() != plain


def test_a_checkpoint_without_keys_restores_for_either_config(x, params, start):
    """Nothing of the augmentation is stored, so a RefineState saved by plain DEC (or
    before DEC-DA existed) fits the template of a DEC-DA run, and back."""
    saved = serialization.to_state_dict(jax.tree.map(np.asarray, start))
    for config in (PLAIN, DA):
        template = state_template(params, x.shape[0], model_config=MODEL, config=config)
        assert tree_equal(restore_state(saved, template), start)


def test_augment_keys_depend_on_the_seed_only():
    keys = augment_keys([0, 1, 0])
    assert keys.shape == (3, 2) and keys.dtype == np.uint32
    np.testing.assert_array_equal(keys[0], keys[2])
    assert not np.array_equal(keys[0], keys[1])
    # Apart from pretraining's split(key(seed)) init and shuffle keys.
    split = np.asarray(jax.random.key_data(jax.random.split(jax.random.key(0))))
    assert not (split == keys[0]).all(axis=1).any()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"augment": AugmentConfig()}, "got image_shape=None"),
        ({"augment": AugmentConfig(), "image_shape": (1, 64)}, "image_shape must be \\(H, W\\)"),
        ({"augment": AugmentConfig(), "image_shape": 64}, "image_shape must be \\(H, W\\)"),
        ({"augment": True}, "augment must be an AugmentConfig, got bool"),
        ({"image_shape": (8, 0)}, "image_shape must be at least 1"),
        ({"image_shape": "8x8"}, "image_shape must be \\(H, W\\) or None"),
    ],
)
def test_bad_augmentation_options_give_one_line(overrides, match):
    with pytest.raises(JaxaeError, match=match) as error:
        RefineConfig(**overrides)
    assert "\n" not in str(error.value)


def test_an_image_shape_that_does_not_fit_x_gives_one_line(x, params, start):
    wrong = dataclasses.replace(DA, image_shape=(7, 7))
    with pytest.raises(
        JaxaeError,
        match=r"image_shape=\(7, 7\) has 49 pixels but the images have 64",
    ) as error:
        refine(x, params, model_config=MODEL, config=wrong, seeds=SEEDS, progress=False)
    assert "\n" not in str(error.value)
    state = jax.tree.map(jnp.asarray, start)
    with pytest.raises(JaxaeError, match="keys must be \\(2, 2\\) raw key data") as error:
        refine_steps(state, x, 0, 1, model_config=MODEL, config=DA)
    assert "\n" not in str(error.value)
