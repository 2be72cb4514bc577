"""The refinement guard: its signals against NumPy, a constructed collapse caught and
the start kept, a healthy refinement left alone, and no labels anywhere in it."""

import argparse
import dataclasses
import inspect
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import jaxae
from jaxae import lifecycle
from jaxae.checkpoint import load_checkpoint
from jaxae.cli.run import add_args, experiment_config, summary
from jaxae.cluster import RefineConfig, init_refinement, refine
from jaxae.cluster.dec import _compare_models, encode_models
from jaxae.cluster.guard import (
    GUARD_BALANCE,
    GUARD_EMPTY,
    GUARD_MOVED,
    GUARD_SIGNALS,
    degeneration,
    mean_agreement,
)
from jaxae.cluster.kmeans import predict_nearest
from jaxae.config import ModelConfig
from jaxae.errors import JaxaeError
from tests.helpers import SMALL, digits, random_models, standardized_digits

MODEL = ModelConfig.tiny()
SEEDS = [0, 1]
K = 4
signal = jax.jit(degeneration, static_argnums=2)


def numpy_signal(labels, start, k):
    """The guard's rule written again in NumPy, from its docstring."""
    shares = np.bincount(labels, minlength=k) / len(labels)
    before = np.bincount(start, minlength=k) / len(start)
    effective = lambda s: np.exp(-np.sum(s[s > 0] * np.log(s[s > 0])))
    fired = [
        effective(shares) < effective(before) - GUARD_BALANCE,
        bool(np.any((before > 0) & (shares < GUARD_EMPTY * before))),
        np.mean(labels != start) > GUARD_MOVED,
    ]
    return fired.index(True) + 1 if any(fired) else 0


def test_each_signal_fires_on_its_own_and_healthy_labels_pass():
    start = np.repeat(np.arange(K), 100).astype(np.int32)  # four clusters of 100
    assert int(signal(start, start, K)) == 0
    # 20 labels moved between clusters: 3.96 effective clusters of 4, healthy.
    few = start.copy()
    few[:20] = 1
    assert int(signal(few, start, K)) == numpy_signal(few, start, K) == 0
    # Cluster 3 takes 90 of cluster 2's: shares 0.25, 0.25, 0.01, 0.49, 3.0 effective.
    unbalanced = start.copy()
    unbalanced[200:290] = 3
    assert GUARD_SIGNALS[int(signal(unbalanced, start, K)) - 1] == "unbalanced"
    # A small cluster empties: ten clusters, cluster 0 with 20 codes gives 19 of them
    # to cluster 1; the effective number falls by less than half a cluster.
    ten = np.repeat(np.arange(10), [20] + [100] * 9).astype(np.int32)
    empty = ten.copy()
    empty[:19] = 1
    assert GUARD_SIGNALS[int(signal(empty, ten, 10)) - 1] == "empty"
    assert int(signal(empty, ten, 10)) == numpy_signal(empty, ten, 10)
    # Clusters renumbered in a cycle: the same shares, every label moved.
    moved = (start + 1) % K
    assert GUARD_SIGNALS[int(signal(moved, start, K)) - 1] == "moved"
    for labels in (unbalanced, moved):
        assert int(signal(labels, start, K)) == numpy_signal(labels, start, K)


def test_signal_equals_numpy_on_random_labels():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        k = int(rng.integers(2, 11))
        start = rng.choice(k, 500, p=rng.dirichlet(np.full(k, 0.7))).astype(np.int32)
        labels = start.copy()
        changed = rng.random(500) < rng.random() * 0.6
        labels[changed] = rng.choice(k, changed.sum(), p=rng.dirichlet(np.ones(k)))
        if rng.random() < 0.3:  # drain the smallest cluster into the largest
            counts = np.bincount(start, minlength=k)
            small = np.flatnonzero(counts == counts[counts > 0].min())[0]
            rows = np.flatnonzero(labels == small)
            labels[rows[: int(0.95 * len(rows))]] = int(np.argmax(counts))
        want = numpy_signal(labels, start, k)
        assert int(jax.jit(degeneration, static_argnums=2)(labels, start, k)) == want
        seen.add(want)
    assert seen == {0, 1, 2, 3}  # every outcome was exercised


def test_mean_agreement_is_scikit_learns_mean_adjusted_rand_index():
    rng = np.random.default_rng(1)
    agree = jax.jit(mean_agreement, static_argnums=1)
    for _ in range(40):
        m, k = int(rng.integers(2, 5)), int(rng.integers(2, 11))
        base = rng.integers(0, k, 400)
        parts = np.stack([np.where(rng.random(400) < rng.random(), rng.integers(0, k, 400), base)
                          for _ in range(m)]).astype(np.int32)  # fmt: skip
        want = np.mean([adjusted_rand_score(a, b) for i, a in enumerate(parts)
                        for j, b in enumerate(parts) if i != j])  # fmt: skip
        np.testing.assert_allclose(float(agree(parts, k)), want, rtol=1e-4, atol=1e-5)
    # A renumbering is the same partition; one label for everything agrees with itself.
    a = rng.integers(0, 5, 400).astype(np.int32)
    assert float(agree(np.stack([a, (a + 2) % 5, a]), 5)) == pytest.approx(1.0, abs=1e-6)
    assert float(agree(np.zeros((2, 50), np.int32), 3)) == 1.0


def test_disagree_fires_when_the_seeds_drift_apart_and_not_when_they_agree(data, params):
    x, _ = data
    state = jax.device_get(
        init_refinement(params, x, model_config=MODEL, config=HEALTHY, seeds=SEEDS)
    )
    rng = np.random.default_rng(2)
    n = state.labels.shape[1]
    truth = rng.integers(0, K, n)
    noisy = lambda labels, p: np.where(rng.random(n) < p, rng.integers(0, K, n), labels)
    first = np.stack([noisy(truth, 0.15) for _ in SEEDS]).astype(np.int32)

    def compare(labels, step, **changes):
        at = state._replace(labels=labels, step=np.full(len(SEEDS), step, np.int32), **changes)
        return jax.device_get(jax.jit(_compare_models, static_argnums=1)(at, K))

    # The first update sets the reference, whatever the start's own labels agreed.
    after = compare(first, 0)
    assert (after.guard_step == -1).all() and not after.converged.any()
    reference = float(after.agreement[0])
    assert reference == pytest.approx(adjusted_rand_score(first[0], first[1]), abs=1e-5)
    state = state._replace(agreement=after.agreement)
    # Every model moves towards the same clusters: they agree more, nothing fires.
    closer = np.stack([np.where(rng.random(n) < 0.5, truth, f) for f in first]).astype(np.int32)
    quiet = compare(closer, 30)
    assert (quiet.guard_step == -1).all() and float(quiet.agreement[0]) == reference
    # Each model drifts its own way: every model stops, with the signal "disagree".
    apart = np.stack([noisy(f, 0.35) for f in first]).astype(np.int32)
    fired = compare(apart, 60)
    assert fired.guard_step.tolist() == [60, 60] and fired.converged.all()
    assert [GUARD_SIGNALS[s - 1] for s in fired.guard_signal] == ["disagree", "disagree"]
    # A model its own signal stopped counts with its start's labels, which it keeps.
    one_drifted = np.stack([first[0], apart[1]])
    stopped = np.asarray([-1, 20], np.int32)
    kept = compare(one_drifted, 60, start_labels=first, guard_step=stopped)
    assert kept.guard_step.tolist() == [-1, 20] and not kept.converged[0]
    # One model has no one to agree with.
    alone = jax.tree.map(lambda a: a[:1], state._replace(labels=apart, step=np.full(2, 60)))
    assert int(jax.device_get(_compare_models(alone, K)).guard_step[0]) == -1


def test_guard_must_be_a_bool():
    with pytest.raises(JaxaeError, match="guard must be True or False"):
        RefineConfig(guard="yes")


@pytest.fixture(scope="module")
def data():
    return standardized_digits(200)


@pytest.fixture(scope="module")
def params():
    return random_models(MODEL, len(SEEDS))


# DEC's KL alone with SGD at lr 5: the encoder folds the codes onto few centres within
# a few updates, the collapse the guard exists for.
COLLAPSE = dataclasses.replace(
    RefineConfig.tiny("dec"), clusters=K, lr=5.0, momentum=0.9, tol=0.0, max_iter=200
)
# The same with small steps (SGD lr 0.001) for 16 steps: the centres and the encoder
# move, the clusters keep their shape.
HEALTHY = dataclasses.replace(RefineConfig.tiny("dec"), clusters=K, lr=1e-3, tol=0.0, max_iter=16)


def test_a_collapse_is_caught_and_the_start_kept(data, params):
    x, _ = data
    unguarded = refine(
        x, params, model_config=MODEL, config=dataclasses.replace(COLLAPSE, guard=False),
        seeds=SEEDS, progress=False,
    )  # fmt: skip
    start = init_refinement(params, x, model_config=MODEL, config=COLLAPSE, seeds=SEEDS)
    start_labels = np.asarray(start.labels)
    for m in range(len(SEEDS)):  # without the guard, the clusters do degenerate
        assert numpy_signal(unguarded.labels[m], start_labels[m], K) > 0
    result = refine(x, params, model_config=MODEL, config=COLLAPSE, seeds=SEEDS, progress=False)
    assert (result.guard_step >= 0).all() and (result.guard_step < COLLAPSE.max_iter).all()
    assert set(result.guard_signal) <= set(GUARD_SIGNALS)
    # Stopped where it fired, and put back at its start: the pretrained encoder and the
    # starting centres, in the result and in the state a checkpoint would save.
    np.testing.assert_array_equal(result.steps, result.guard_step)
    for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(result.centers, np.asarray(start.params["centers"]))
    np.testing.assert_array_equal(result.state.params["centers"], result.centers)
    codes = np.asarray(encode_models(params, x, model_config=MODEL))
    for m in range(len(SEEDS)):
        np.testing.assert_array_equal(
            result.labels[m], predict_nearest(result.centers[m], codes[m])
        )


def test_a_healthy_refinement_is_left_alone(data, params):
    x, _ = data
    guarded = refine(x, params, model_config=MODEL, config=HEALTHY, seeds=SEEDS, progress=False)
    free = refine(
        x, params, model_config=MODEL, config=dataclasses.replace(HEALTHY, guard=False),
        seeds=SEEDS, progress=False,
    )  # fmt: skip
    assert (guarded.guard_step == -1).all() and list(guarded.guard_signal) == ["", ""]
    assert (guarded.steps == HEALTHY.max_iter).all()
    codes = lambda p: np.asarray(encode_models(p, x, model_config=MODEL))
    assert not np.array_equal(codes(guarded.params), codes(params))  # it did refine
    np.testing.assert_array_equal(guarded.labels, free.labels)
    for a, b in zip(jax.tree.leaves(guarded.params), jax.tree.leaves(free.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_guarded_refinement_resumes_to_the_same_decision(data, params):
    x, _ = data
    whole = refine(x, params, model_config=MODEL, config=COLLAPSE, seeds=SEEDS, progress=False)
    saved = {}

    def on_chunk(done, state):
        saved.setdefault("first", (done, state))

    refine(
        x, params, model_config=MODEL, config=COLLAPSE, seeds=SEEDS, progress=False,
        steps_per_chunk=4, on_chunk=on_chunk,
    )  # fmt: skip
    done, state = saved["first"]
    assert done == 4
    resumed = refine(
        x, params, model_config=MODEL, config=COLLAPSE, seeds=SEEDS, progress=False,
        initial=state, start_step=done,
    )  # fmt: skip
    np.testing.assert_array_equal(resumed.guard_step, whole.guard_step)
    np.testing.assert_array_equal(resumed.guard_signal, whole.guard_signal)
    np.testing.assert_array_equal(resumed.labels, whole.labels)
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(whole.state), strict=True):
        np.testing.assert_array_equal(a, b)


# A whole run: DEC on 512 digits with a tiny model, three seeds; its tol-0 refinement
# moves most labels away from the KMeans start, which the guard stops.
RUN = [*SMALL, "--epochs", "2", "--method", "dec", "--max-steps", "3000", "--dec-tol", "0"]
RUN += ["--seeds", "3"]


def _config(source: Path):
    parser = argparse.ArgumentParser()
    add_args(parser)
    return experiment_config(parser.parse_args([*RUN, "--dataset", str(source)]))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The 512 digits with their labels, and with the same labels shuffled."""
    ds = digits(512)
    folder = tmp_path_factory.mktemp("data")
    shuffled = np.random.default_rng(0).permutation(ds.labels)
    np.savez(folder / "digits.npz", x=ds.images, y=ds.labels)
    np.savez(folder / "shuffled.npz", x=ds.images, y=shuffled)
    return folder


@pytest.fixture(scope="module")
def whole(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    outcome = lifecycle.start(_config(images / "digits.npz"), out=out, progress=False)
    assert outcome.status == "finished"
    return out


def _report(folder):
    return json.loads((folder / "report.json").read_text())


def test_the_report_carries_the_guard_and_the_consensus(whole, capsys):
    report = _report(whole)
    guards = [m["guard"] for m in report["models"]]
    assert any(g["fired"] for g in guards)  # the constructed collapse was caught
    for m, g in zip(report["models"], guards):
        if g["fired"]:
            assert g["signal"] in GUARD_SIGNALS and 0 < g["step"] < 3000
            assert g["kept"] == "the kmeans start" and m["refine_steps"] == g["step"]
            # The start kept: its labels are the final ones.
            assert m["metrics"]["autoencoder_dec"] == m["metrics"]["pretrained_kmeans"]
    c = report["consensus"]
    assert c["model"] == report["selected_model"] and len(c["agreement"]) == 3
    assert c["model"] == int(np.argmax(c["agreement"]))
    # The run's clusters: the three models' final codes side by side, clustered by the
    # refinement's start method; scored beside the models, and predict gives them back.
    assert c["models"] == [0, 1, 2] and "side by side" in c["rule"]
    labels = np.load(whole / "clusters.npy")
    assert c["metrics"] == {"autoencoder_dec": jaxae.scores(digits(512).labels, labels)}
    ae = jaxae.load(whole)
    np.testing.assert_array_equal(ae.predict(digits(512).images), labels)


def test_the_summary_says_when_the_guard_watched_one_model_alone(whole):
    report = _report(whole)
    alone = "the guard watched one model alone: with --seeds 2 or more"
    assert alone not in summary(report, whole)  # three models: the disagree signal ran
    one = {**report, "models_trained": 1, "models": report["models"][:1]}
    assert alone in summary(one, whole)
    unguarded = {**report["cluster"]["refine"], "guard": False}
    one["cluster"] = {**report["cluster"], "refine": unguarded}
    assert alone not in summary(one, whole)  # no guard, nothing watched


def test_guard_and_consensus_use_no_labels(whole, images, tmp_path):
    out = tmp_path / "run"
    lifecycle.start(_config(images / "shuffled.npz"), out=out, progress=False)
    np.testing.assert_array_equal(np.load(out / "clusters.npy"), np.load(whole / "clusters.npy"))
    a, b = _report(out), _report(whole)
    assert [m["guard"] for m in a["models"]] == [m["guard"] for m in b["models"]]
    assert a["consensus"]["model"] == b["consensus"]["model"]
    assert a["consensus"]["agreement"] == b["consensus"]["agreement"]


def test_a_run_stopped_in_its_refinement_resumes_to_the_same_decisions(whole, images, tmp_path):
    out = tmp_path / "run"
    stops = []

    def inside_the_refinement():  # the first poll after the refinement's first call
        if not stops and any(f.function == "refine" for f in inspect.stack()):
            stops.append(True)
            return True
        return False

    config = _config(images / "digits.npz")
    outcome = lifecycle.start(config, out=out, progress=False, should_stop=inside_the_refinement)
    assert outcome.status == "interrupted" and stops
    assert load_checkpoint(out).refine_step < 3000
    assert lifecycle.resume(out, progress=False).status == "finished"
    np.testing.assert_array_equal(np.load(out / "clusters.npy"), np.load(whole / "clusters.npy"))
    a, b = _report(out), _report(whole)
    assert a["models"] == b["models"] and a["consensus"] == b["consensus"]
    ca, cb = load_checkpoint(out), load_checkpoint(whole)
    for x, y in zip(jax.tree.leaves(ca.refine), jax.tree.leaves(cb.refine), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
