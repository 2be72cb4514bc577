"""jaxae.bench: the report ``jaxae bench`` writes, run in-process at tiny sizes, the harness
that times every implementation, and the arithmetic behind the columns. Nothing here judges
speed."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import bench
from jaxae.bench import clustering, harness, peers, report, suite
from jaxae.bench.data import load_images, load_labelled
from jaxae.bench.peers.common import Workload
from jaxae.config import ModelConfig
from jaxae.errors import JaxaeError
from jaxae.model import build_model
from jaxae.train import loss_fn

DEFAULT_FLOPS = 6 * 452_608  # PERF.md: 6 x the default model's kernel weights


@pytest.fixture(scope="module")
def data_source(tmp_path_factory):
    """A .npz of 300 random 28x28 images: speed does not depend on the pixels."""
    path = tmp_path_factory.mktemp("bench-data") / "pixels.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (300, 784), dtype=np.uint8))
    return str(path)


def test_main_writes_report_with_ratios_from_measured_times(tmp_path, data_source):
    argv = ["--tiny", "--peers", "jax-python-loop", "--sections", "recipe,encode,sweep"]
    assert bench.main([*argv, "--data", data_source, "--out", str(tmp_path)]) == 0

    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((tmp_path / "bench.json").read_text())
    meta = result["metadata"]
    keys = {"backend", "device_kind", "device_count", "versions", "command", "date", "host_cpus"}
    assert keys <= meta.keys()
    assert meta["backend"] == jax.default_backend()
    assert meta["versions"]["jax"] == jax.__version__
    assert "targets" not in result  # they live in bench/results/targets.md

    recipe = {r["implementation"]: r for r in result["train"] if r["section"] == "recipe"}
    assert set(recipe) == {"jaxae", "jax-python-loop"}
    jaxae, loop = recipe["jaxae"], recipe["jax-python-loop"]
    assert jaxae["ratio_vs_jaxae"] == 1.0
    assert loop["ratio_vs_jaxae"] == pytest.approx(
        loop["seconds_per_step"] / jaxae["seconds_per_step"], rel=1e-12
    )
    assert [r["implementation"] for r in result["train"] if r["section"] == "sweep"] == ["jaxae"]
    for r in result["train"]:
        assert r["flops_per_sample"] == DEFAULT_FLOPS
        assert r["samples_per_second"] == pytest.approx(r["batch"] / r["seconds_per_step"])
        assert r["tflops"] == pytest.approx(r["samples_per_second"] * DEFAULT_FLOPS / 1e12)
        assert r["steps"] == r["epochs"] * (r["n"] // r["batch"])
        assert r["seconds_per_step"] == pytest.approx(np.median(r["seconds"]) / r["steps"])
        assert np.isfinite(r["final_loss"]) and r["compile_seconds"] > 0

    encode = {(r["n"], r["input_dtype"], r["path"]): r for r in result["encode"]}
    assert set(encode) == {
        (n, dtype, path) for n in (1, 100) for dtype in ("float32", "uint8")
        for path in ("host", "device")
    }  # fmt: skip
    assert all(0 < r["median_seconds"] <= r["p99_seconds"] for r in encode.values())

    md = (tmp_path / "bench.md").read_text()
    scale = 1e6 if jax.default_backend() == "gpu" else 1e3  # µs or ms per step
    assert f"| jax-python-loop | float32 | 100 | {scale * loop['seconds_per_step']:.4g} |" in md
    assert f"| {loop['ratio_vs_jaxae']:.2f} |" in md
    assert "## Encoding latency" in md and "## Metadata" in md


def test_sweep_alternates_and_reports_the_spread_of_the_ratio(tmp_path, data_source):
    argv = ["--tiny", "--peers", "jax-scan", "--sections", "sweep", "--data", data_source]
    assert bench.main([*argv, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["train"]
    by_name = {r["implementation"]: r for r in rows}
    assert list(by_name) == ["jaxae", "jax-scan"]
    jaxae, scan = by_name["jaxae"], by_name["jax-scan"]
    repeats = suite.SIZES["tiny"].sweep_repeats
    assert len(jaxae["seconds"]) == len(scan["seconds"]) == repeats == 2
    ratios = [a / b for a, b in zip(scan["seconds"], jaxae["seconds"])]  # same steps, per round
    assert scan["ratio_vs_jaxae"] == pytest.approx(np.median(ratios))
    assert (scan["ratio_min"], scan["ratio_max"]) == pytest.approx((min(ratios), max(ratios)))
    md = (tmp_path / "bench.md").read_text()
    assert f"| {scan['ratio_vs_jaxae']:.2f} [{min(ratios):.2f}, {max(ratios):.2f}] |" in md


def test_clustering_section_times_both_backends_on_the_same_codes(tmp_path):
    argv = ["--tiny", "--sections", "clustering", "--peers", "none", "--data", "digits"]
    assert bench.main([*argv, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["train"] == [] and result["encode"] == [] and result["skipped"] == {}
    rows = {r["implementation"]: r for r in result["clustering"]}
    assert list(rows) == ["jax", "umap-learn+sklearn"]
    sizes = suite.SIZES["tiny"]
    for r in rows.values():
        assert (r["n"], r["features"], r["clusters"]) == (sizes.clustering_n, 10, 10)
        assert len(r["seconds"]) == sizes.clustering_repeats == 2
        assert all(np.isfinite(s) and s > 0 for s in [r["first_call_seconds"], *r["seconds"]])
        assert r["median_seconds"] == pytest.approx(np.median(r["seconds"]))
        assert 0.3 < r["acc"] <= 1 and 0 < r["nmi"] <= 1  # 0.1 by chance
    jax_row, ref = rows["jax"], rows["umap-learn+sklearn"]
    ratios = [a / b for a, b in zip(ref["seconds"], jax_row["seconds"])]  # round by round
    assert ref["ratio_vs_jax"] == pytest.approx(np.median(ratios))
    assert (ref["ratio_min"], ref["ratio_max"]) == pytest.approx((min(ratios), max(ratios)))
    assert jax_row["ratio_vs_jax"] == 1.0
    md = (tmp_path / "bench.md").read_text()
    assert "## Clustering: UMAP + Gaussian mixture on the same codes, 200 rows" in md
    cells = f"| umap-learn+sklearn | {ref['first_call_seconds']:.2f} |"
    assert cells in md and f"| {ref['ratio_vs_jax']:.2f} [{min(ratios):.2f}," in md
    assert f"| {ref['acc']:.3f} | {ref['nmi']:.3f} | {ref['ari']:.3f} |" in md
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_clustering_measure_alternates_and_keeps_failures_apart(monkeypatch):
    calls = []

    def fit_stage(codes, name):
        calls.append(name)
        if name == clustering.CLUSTPY:
            raise ValueError("no clustpy\nmore")
        return np.arange(len(codes)) % 2

    monkeypatch.setattr(clustering, "fit_stage", fit_stage)
    names = [clustering.JAX, clustering.REFERENCE, clustering.CLUSTPY]
    rows, failures = clustering.measure(np.zeros((6, 10)), np.arange(6) % 2, names, repeats=3)
    assert calls == names + names[:2] * 3  # a failed one is not tried again
    assert failures == {clustering.CLUSTPY: "ValueError: no clustpy"}
    assert [(r["implementation"], len(r["seconds"]), r["acc"]) for r in rows] == [
        (clustering.JAX, 3, 1.0), (clustering.REFERENCE, 3, 1.0)
    ]  # fmt: skip
    rows, _ = clustering.measure(np.zeros((6, 10)), None, names[:1], repeats=1)
    assert rows[0]["acc"] is None and rows[0]["ratio_vs_jax"] == 1.0

    monkeypatch.setattr(clustering, "fit_stage", lambda codes, name: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # JAX's failure is the bench's
        clustering.measure(np.zeros((6, 10)), None, names, repeats=1)


def test_clustering_lists_clustpy_only_among_the_peers_asked_for():
    assert set(clustering.available([])) == {clustering.JAX, clustering.REFERENCE}
    status = clustering.available(["clustpy"])
    assert status[clustering.JAX] is None
    expected = peers.available()["clustpy"] or status[clustering.REFERENCE]
    assert status[clustering.CLUSTPY] == expected


def test_load_labelled_keeps_labels_and_never_tiles():
    images, labels, where = load_labelled("digits", 5000)
    assert images.shape == (1797, 64) and labels.shape == (1797,)
    assert where.startswith("digits (the first 1,797 of 1,797")
    images, labels, _ = load_labelled("digits", 10)
    assert images.shape == (10, 64) and list(labels) == list(range(10))


def test_main_rejects_unknown_peer(tmp_path):
    with pytest.raises(JaxaeError, match="unknown peer nope"):
        bench.main(["--peers", "nope", "--out", str(tmp_path)])


def test_flops_per_sample_against_xla_cost_analysis():
    """The 6 x kernel-weights rule, and what XLA counts for a gradient of the loss: the
    same less the input's gradient through the first layer (2 x 784 x 256 per sample)."""
    assert peers.SEED_RECIPE.flops_per_sample(784) == DEFAULT_FLOPS
    model = build_model(ModelConfig())
    params = model.init(jax.random.key(0), jnp.zeros((1, 784)))
    batch = jnp.zeros((100, 784))
    grad = jax.jit(jax.value_and_grad(functools.partial(loss_fn, model=model, batch=batch)))
    cost = grad.lower(params).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    # XLA also counts the elementwise work (ReLU, biases, the loss): under 1%.
    assert cost["flops"] == pytest.approx(100 * (DEFAULT_FLOPS - 2 * 784 * 256), rel=0.01)


def test_add_ratios_divides_by_jaxae_in_the_same_group():
    row = lambda impl, batch, seconds: dict(
        section="sweep", dtype="float32", n=70_000, batch=batch, implementation=impl,
        seconds_per_step=seconds,
    )  # fmt: skip
    rows = harness.add_ratios(
        [row("jaxae", 100, 2.0), row("keras", 100, 9.0), row("keras", 1024, 5.0)]
    )
    assert [r["ratio_vs_jaxae"] for r in rows] == [1.0, 4.5, None]


def test_add_ratios_pairs_rounds_and_divides_per_step():
    base = dict(section="dec", dtype="float32", n=1000, batch=100)
    rows = harness.add_ratios([
        dict(base, implementation="jaxae", steps=20, seconds_per_step=0.1, seconds=[2.0, 4.0, 2.0]),
        dict(base, implementation="keras", steps=10, seconds_per_step=0.3, seconds=[3.0, 3.0]),
    ])  # fmt: skip
    # Per step: keras 0.3, 0.3 against jaxae's 0.1, 0.2 in the same rounds; round 3 unpaired.
    assert rows[1]["ratio_vs_jaxae"] == pytest.approx(2.25)
    assert (rows[1]["ratio_min"], rows[1]["ratio_max"]) == pytest.approx((1.5, 3.0))


class _Fake:
    """A stand-in implementation: each run records its name and takes the given time."""

    def __init__(self, name, calls, seconds):
        self.name, self.calls, self._seconds = name, calls, iter(seconds)
        self.compile_seconds, self.device = 0.5, "fake"

    def run(self):
        self.calls.append(self.name)
        return next(self._seconds)

    def final_loss(self):
        return 0.25


def test_measure_alternates_and_keeps_failures_apart(monkeypatch):
    calls = []
    fakes = {
        "jaxae": lambda w: _Fake("jaxae", calls, [1.0, 3.0, 2.0]),
        "jax-scan": lambda w: _Fake("jax-scan", calls, [2.0, 2.0, 2.0]),
        "keras": lambda w: (_ for _ in ()).throw(ValueError("no keras\nmore")),
    }
    monkeypatch.setattr(peers, "IMPLEMENTATIONS", fakes)
    monkeypatch.setattr(peers, "available", lambda: {})
    w = Workload(images=None, x=np.zeros((40, 4), np.float32), batch_size=10, epochs=1)
    entries = [harness.Entry(n, w, repeats=3) for n in ("jaxae", "keras", "jax-scan")]
    timings, failures = harness.measure(entries, required=["jaxae"])
    assert calls == ["jaxae", "jax-scan"] * 3
    assert failures == {"keras": "ValueError: no keras"}
    assert [t.name for t in timings] == ["jaxae", "jax-scan"]
    assert timings[0].seconds == (1.0, 3.0, 2.0) and timings[0].seconds_per_step == 2.0 / 4
    assert timings[0].final_loss == 0.25 and timings[0].compile_seconds == 0.5

    fakes["jaxae"] = fakes["keras"]
    with pytest.raises(ValueError, match="no keras"):
        harness.measure(entries, required=["jaxae"])


def test_train_cases_put_jaxae_first_and_peers_where_asked():
    sizes = suite.SIZES["gpu"]
    cases = suite.train_cases(sizes, ["jax-scan", "torch-eager", "keras", "clustpy"])
    recipe32 = [c.name for c in cases if c.section == "recipe" and c.dtype == "float32"]
    # 500 epochs run in several chunks by default, so one-chunk jaxae is timed too.
    assert recipe32 == ["jaxae", "jaxae-1chunk", "jax-scan", "torch-eager", "keras"]
    sweep16 = {c.name for c in cases if c.section == "sweep" and c.dtype == "bfloat16"}
    assert sweep16 == {"jaxae", "jax-scan", "torch-eager"}
    for c in cases:
        steps = c.n // c.batch
        if c.name in suite.WHOLE_RUN and c.section == "sweep":
            assert c.epochs * steps >= sizes.sweep_min_steps and c.warmup_epochs == c.epochs
            assert c.repeats == sizes.sweep_repeats
    dec = [c for c in cases if c.section == "dec"]
    # ClustPy's autoencoder has a linear code: DEC's recipe, never the original one.
    assert [c.name for c in dec] == ["jaxae", "jax-scan", "torch-eager", "keras", "clustpy"]
    assert {(c.batch, c.n, c.recipe) for c in dec} == {(256, 10_000, peers.DEC_RECIPE)}
    assert all(c.repeats == sizes.dec_repeats for c in dec)


def test_results_name():
    assert report.results_name("cpu") == "cpu"
    assert report.results_name("NVIDIA H200") == "nvidia-h200"
    assert report.results_name("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_load_images_falls_back_to_digits_without_an_mnist_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXAE_DATA", str(tmp_path))  # an empty cache folder: no download
    images, source = load_images(None, 7000)
    assert images.shape == (7000, 64) and images.dtype == np.float32
    assert source.startswith("digits") and "no MNIST cache" in source
    assert 0 <= images.min() and images.max() <= 16
    np.testing.assert_array_equal(images[1797], images[0])  # tiled


def test_load_images_names_a_missing_path(tmp_path):
    with pytest.raises(JaxaeError, match="no such file"):
        load_images(tmp_path / "missing", 10)


def test_the_figure_leaves_the_matplotlib_backend_alone():
    import matplotlib

    before = matplotlib.get_backend()
    meta = dict(device_kind="cpu")
    png = report.figure_png(dict(metadata=meta, train=[], encode=[]))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.get_backend() == before


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    from jaxae.cli import main

    out = tmp_path / "report"
    out.write_text("mine")
    assert main(["bench", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file" in err and out.read_text() == "mine"
