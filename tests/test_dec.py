"""DEC and IDEC: the formulas against NumPy, the step jitted and not, chunks, resume, predict.

Random (not pretrained) tiny autoencoders on 200 digits: the mechanics do not need a
good code, and initialising is far cheaper than training. One RefineConfig per
behaviour, shared between tests, since each compiles its own program.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae.cluster import (
    RefineConfig,
    RefinementStopped,
    init_refinement,
    refine,
    soft_assignment,
    target_distribution,
)
from jaxae.cluster import dec as dec_module
from jaxae.cluster.dec import batch_rows, encode_models, kl_divergence, refine_loss, refine_step
from jaxae.config import ModelConfig
from jaxae.errors import JaxaeError
from tests.helpers import random_models, standardized_digits

MODEL = ModelConfig.tiny()
SEEDS = [0, 1]
# tol 0: never converges, so every run takes exactly max_iter steps.
RUN = RefineConfig.tiny("dec")
FULL = dataclasses.replace(RUN, tol=0.0)
IDEC = dataclasses.replace(RefineConfig.tiny("idec"), tol=0.0)


@pytest.fixture(scope="module")
def data():
    return standardized_digits(200)


@pytest.fixture(scope="module")
def params():
    return random_models(MODEL, len(SEEDS))


def numpy_q(z, mu, alpha):
    d2 = ((z[:, None, :] - mu[None, :, :]) ** 2).sum(-1)
    q = (1.0 + d2 / alpha) ** (-(alpha + 1) / 2)
    return q / q.sum(1, keepdims=True)


def numpy_p(q):
    w = q**2 / q.sum(0)
    return w / w.sum(1, keepdims=True)


def tree_equal(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(u), np.asarray(v))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_soft_assignment_and_target_against_numpy(alpha):
    rng = np.random.default_rng(0)
    z, mu = rng.normal(size=(50, 6)), rng.normal(size=(4, 6))
    q = np.asarray(jax.jit(soft_assignment, static_argnums=2)(z, mu, alpha), np.float64)
    np.testing.assert_allclose(q, numpy_q(z, mu, alpha), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-6)
    p = np.asarray(jax.jit(target_distribution)(q.astype(np.float32)), np.float64)
    np.testing.assert_allclose(p, numpy_p(q), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)


def test_kl_is_keras_kld_against_numpy():
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(5), 20), rng.dirichlet(np.ones(5), 20)
    q[0, 0] = 0.0  # clipped to 1e-7 as Keras does, not an infinite loss
    pc, qc = np.clip(p, 1e-7, 1), np.clip(q, 1e-7, 1)
    expected = (pc * np.log(pc / qc)).sum(1)
    np.testing.assert_allclose(jax.jit(kl_divergence)(p, q), expected, rtol=1e-5, atol=1e-6)


def test_batches_in_data_order_with_a_short_last_one():
    got = [tuple(map(np.asarray, batch_rows(jnp.int32(s), 10, 4))) for s in range(4)]
    np.testing.assert_array_equal(got[0][0], [0, 1, 2, 3])
    np.testing.assert_array_equal(got[1][0], [4, 5, 6, 7])
    np.testing.assert_array_equal(got[2][0], [8, 9, 9, 9])
    np.testing.assert_array_equal(got[2][1], [1, 1, 0, 0])
    np.testing.assert_array_equal(got[3][0], [0, 1, 2, 3])  # a new pass


@pytest.mark.parametrize("config", [RUN, IDEC], ids=["dec", "idec"])
def test_masked_loss_is_the_loss_of_the_real_rows(data, params, config):
    x, _ = data
    one = jax.tree.map(lambda a: a[0], params)
    trainable = {"autoencoder": one, "centers": jnp.asarray(x[:4, :8])}
    target = np.random.default_rng(0).dirichlet(np.ones(4), 6).astype(np.float32)
    loss = jax.jit(refine_loss, static_argnames=("model_config", "config"))
    mask = np.array([1, 1, 1, 1, 0, 0], np.float32)
    padded = np.concatenate([x[:4], x[:2]])
    short = loss(
        trainable, x[:4], target[:4], np.ones(4, np.float32), model_config=MODEL, config=config
    )
    masked = loss(trainable, padded, target, mask, model_config=MODEL, config=config)
    np.testing.assert_allclose(masked, short, rtol=1e-6)


def test_a_step_jitted_equals_unjitted(data, params):
    """IDEC (both loss terms) with SGD: Adam's first step divides the gradient by its
    own size, which turns rounding of near-zero gradients into differences of the
    order of the step."""
    x = jnp.asarray(data[0])
    config = dataclasses.replace(IDEC, optimizer="sgd", lr=0.01, momentum=0.9)
    one = jax.tree.map(lambda a: a[0], params)
    codes = dec_module.encode(one, x, MODEL)
    trainable = {"autoencoder": one, "centers": codes[:: len(x) // config.clusters][:4]}
    state = dec_module.RefineState(
        params=trainable,
        opt_state=dec_module.build_optimizer(config).init(trainable),
        target=target_distribution(soft_assignment(codes, trainable["centers"])),
        labels=jnp.zeros(len(x), jnp.int32),
        delta=jnp.float32(1),
        step=jnp.int32(2),  # the third batch: rows 64..95
        converged=jnp.bool_(False),
        loss=jnp.float32(0),
        start_labels=jnp.zeros(len(x), jnp.int32),
        start_centers=trainable["centers"],
        guard_step=jnp.int32(-1),
        guard_signal=jnp.int32(0),
        agreement=jnp.float32(0),
    )
    step = lambda s: refine_step(s, x, model_config=MODEL, config=config)
    jitted = jax.jit(step)(state)
    with jax.disable_jit():
        eager = step(state)
    assert int(jitted.step) == int(eager.step) == 3
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # The step moved the encoder, the decoder and the centres.
    for name in ("centers", "autoencoder"):
        assert not tree_equal(jitted.params[name], state.params[name])


def test_first_update_precedes_step_zero(data, params):
    x, _ = data
    state = init_refinement(params, x, model_config=MODEL, config=FULL, seeds=SEEDS)
    kmeans_labels = np.asarray(state.labels)
    codes = np.asarray(encode_models(params, x, model_config=MODEL), np.float64)
    centers = np.asarray(state.params["centers"], np.float64)
    after, ran = dec_module.refine_steps(
        jax.device_put(state), jnp.asarray(x), 0, 1, model_config=MODEL, config=FULL
    )
    assert int(ran) == 1 and np.asarray(after.step).tolist() == [1, 1]
    for m in range(len(SEEDS)):
        q = numpy_q(codes[m], centers[m], 1.0)
        np.testing.assert_allclose(after.target[m], numpy_p(q), rtol=1e-4, atol=1e-6)
        # KMeans' labels are each code's nearest centre: the argmax of q.
        np.testing.assert_array_equal(kmeans_labels[m], q.argmax(1))


@pytest.fixture(scope="module")
def whole(data, params):
    x, _ = data
    chunks = []
    result = refine(
        x,
        params,
        model_config=MODEL,
        config=FULL,
        seeds=SEEDS,
        steps_per_chunk=FULL.max_iter,
        progress=False,
        on_chunk=lambda done, state: chunks.append(done),
    )
    assert chunks == [FULL.max_iter]
    return result


def test_chunked_equals_one_chunk_bitwise(data, params, whole):
    x, _ = data
    seen = []
    chunked = refine(
        x,
        params,
        model_config=MODEL,
        config=FULL,
        seeds=SEEDS,
        steps_per_chunk=5,
        progress=False,
        on_chunk=lambda done, state: seen.append(done),
    )
    assert seen == [5, 10, 15, 20, 24]
    assert np.asarray(whole.steps).tolist() == [FULL.max_iter] * 2
    assert tree_equal(chunked.state, whole.state)
    np.testing.assert_array_equal(chunked.labels, whole.labels)


def test_resume_from_a_host_state_is_exact(data, params, whole):
    x, _ = data
    saved = {}

    def on_chunk(done, state):
        saved.setdefault(done, state)

    polls = iter([False, False, True])  # a signal arrives at the third poll
    with pytest.raises(RefinementStopped, match="refinement stopped after step") as stop:
        refine(
            x,
            params,
            model_config=MODEL,
            config=FULL,
            seeds=SEEDS,
            steps_per_chunk=7,
            progress=False,
            on_chunk=on_chunk,
            should_stop=lambda: next(polls),
        )
    done = stop.value.step  # polled after every call of about two seconds, not per chunk
    assert stop.value.interrupted and 2 < done < FULL.max_iter and list(saved)[-1] == done
    resumed = refine(
        x,
        params,
        model_config=MODEL,
        config=FULL,
        seeds=SEEDS,
        steps_per_chunk=7,
        progress=False,
        initial=saved[done],
        start_step=done,
    )
    assert tree_equal(resumed.state, whole.state)
    np.testing.assert_array_equal(resumed.labels, whole.labels)


def test_each_model_equals_it_refined_alone(data, params, whole):
    x, _ = data
    alone = refine(
        x,
        jax.tree.map(lambda a: a[1:], params),
        model_config=MODEL,
        config=FULL,
        seeds=[1],
        progress=False,
    )
    # Everything but the models' agreement with each other, which one model alone lacks.
    mine = lambda state: state._replace(agreement=None)
    assert tree_equal(mine(alone.state), mine(jax.tree.map(lambda a: a[1:], whole.state)))


def test_vmapped_models_agree_with_mapped(data, params, whole):
    x, _ = data
    vmapped = refine(
        x,
        params,
        model_config=MODEL,
        config=FULL,
        seeds=SEEDS,
        progress=False,
        vectorize_models=True,
    )
    for a, b in zip(jax.tree.leaves(vmapped.state), jax.tree.leaves(whole.state), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_predict_on_training_codes_equals_the_assignments(data, params, whole):
    x, _ = data
    codes = np.asarray(encode_models(whole.params, x, model_config=MODEL))
    for m in range(len(SEEDS)):
        # An independent float64 NumPy Student-t Q: its argmax is the label refine gave.
        q = numpy_q(codes[m].astype(np.float64), whole.centers[m].astype(np.float64), 1.0)
        np.testing.assert_array_equal(q.argmax(1), whole.labels[m])


def test_dec_leaves_the_decoder_alone_idec_trains_it(data, params, whole):
    x, _ = data
    model = dec_module.build_model(MODEL)
    z = np.random.default_rng(0).normal(size=(5, MODEL.code_dim)).astype(np.float32)

    def decoded(p):
        return np.asarray(model.apply(jax.tree.map(lambda a: a[0], p), z, method=model.decode))

    def encoded(p):
        return np.asarray(encode_models(p, x, model_config=MODEL))

    np.testing.assert_array_equal(decoded(whole.params), decoded(params))
    assert not np.array_equal(encoded(whole.params), encoded(params))
    # Without the guard, which may put a degenerating tiny model back at its start.
    config = dataclasses.replace(IDEC, guard=False)
    idec = refine(x, params, model_config=MODEL, config=config, seeds=SEEDS, progress=False)
    assert not np.allclose(decoded(idec.params), decoded(params))


def test_stops_when_assignments_settle(data, params):
    x, _ = data
    # tol 1: at the first update after step 0 fewer than all labels changed.
    config = dataclasses.replace(RUN, tol=1.0)
    result = refine(x, params, model_config=MODEL, config=config, seeds=SEEDS, progress=False)
    assert result.converged.all()
    assert result.steps.tolist() == [config.update_interval] * 2
    np.testing.assert_array_equal(result.labels, np.asarray(result.state.labels))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"method": "deep"}, "unknown method 'deep'"),
        ({"alpha": 0.0}, "alpha must be positive"),
        ({"update_interval": 0}, "update_interval must be at least 1"),
        ({"tol": 1.5}, "tol must be at most 1"),
        ({"max_iter": 0}, "max_iter must be at least 1"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
        ({"lr": -1.0}, "lr must be positive"),
        ({"momentum": 2.0}, "momentum must be at most 1"),
        ({"gamma": float("nan")}, "gamma must be finite"),
        ({"clusters": 2.5}, "clusters must be an integer"),
    ],
)
def test_bad_config_values_give_one_line(overrides, match):
    with pytest.raises(JaxaeError, match=match) as error:
        RefineConfig(**overrides)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"config": dataclasses.replace(RUN, batch_size=500)}, "batch_size=500 is larger"),
        ({"config": dataclasses.replace(RUN, clusters=300)}, "300 clusters is more than"),
        ({"seeds": [0]}, "leading model axis of 1"),
        ({"seeds": [0, -1]}, "seed must be at least 0"),
        ({"x": np.zeros((200, 5), np.float32)}, "x has 5 columns"),
        ({"x": np.zeros((200, 64), np.int32)}, "x must be floats"),
        ({"start_step": -1}, "start_step must be"),
        ({"steps_per_chunk": 0}, "steps_per_chunk must be"),
    ],
)
def test_bad_refine_arguments_give_one_line(data, params, kwargs, match):
    x, _ = data
    arguments = dict(x=x, params=params, model_config=MODEL, config=RUN, seeds=SEEDS)
    arguments.update(kwargs)
    with pytest.raises(JaxaeError, match=match) as error:
        refine(arguments.pop("x"), arguments.pop("params"), progress=False, **arguments)
    assert "\n" not in str(error.value)


def test_a_refinement_starts_from_any_clustering_at_its_means(data, params):
    """``start``: the given clusters' labels, each centre its cluster's mean code."""
    x, _ = data
    given = {}

    def start(codes, seed):
        given[seed] = codes
        return np.arange(len(codes)) % RUN.clusters  # any labels will do

    state = init_refinement(params, x, model_config=MODEL, config=RUN, seeds=SEEDS, start=start)
    codes = np.asarray(encode_models(params, jnp.asarray(x), model_config=MODEL))
    assert sorted(given) == SEEDS
    for m, seed in enumerate(SEEDS):
        np.testing.assert_array_equal(given[seed], codes[m])
        labels = np.arange(len(x)) % RUN.clusters
        np.testing.assert_array_equal(np.asarray(state.labels[m]), labels)
        means = np.stack([codes[m][labels == k].mean(0) for k in range(RUN.clusters)])
        np.testing.assert_allclose(np.asarray(state.params["centers"][m]), means, rtol=1e-5)
    # ... and it refines from there as from KMeans.
    result = refine(x, params, model_config=MODEL, config=RUN, seeds=SEEDS, initial=state,
                    progress=False)  # fmt: skip
    assert result.labels.shape == (len(SEEDS), len(x))


def test_an_empty_starting_cluster_takes_the_farthest_code():
    from jaxae.cluster.refine import cluster_means

    codes = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [0.0, 1.0]], np.float32)
    centers = cluster_means(codes, np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(centers[0], [11 / 3, 0])
    np.testing.assert_allclose(centers[1], [0, 1])
    np.testing.assert_allclose(centers[2], [10, 0])  # 6.3 from its cluster's mean
    with pytest.raises(JaxaeError, match=r"starting labels must be 4 integers in \[0, 2\)"):
        cluster_means(codes, np.array([0, 0, 2, 1]), 2)


def test_a_bad_start_gives_one_line():
    from jaxae.cluster_options import RefineOptions

    with pytest.raises(JaxaeError, match=r"unknown refine\.start 'gmm'") as error:
        RefineOptions(start="gmm")
    assert "\n" not in str(error.value)
