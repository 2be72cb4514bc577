"""jaxae.bench: the report ``jaxae bench`` writes, run in-process at tiny sizes, and the
arithmetic behind its columns. Nothing here judges speed."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import bench
from jaxae.config import ModelConfig
from jaxae.errors import JaxaeError
from jaxae.train import build_model, loss_fn

DEFAULT_FLOPS = 6 * 452_608  # PERF.md: 6 x the default model's kernel weights


def test_main_writes_report_with_ratios_from_measured_times(tmp_path):
    argv = ["--tiny", "--peers", "jax-python-loop", "--sections", "recipe,encode,sweep"]
    assert bench.main([*argv, "--out", str(tmp_path)]) == 0

    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "bench.json").read_text())
    meta = report["metadata"]
    keys = {"backend", "device_kind", "device_count", "versions", "command", "date", "host_cpus"}
    assert keys <= meta.keys()
    assert meta["backend"] == jax.default_backend()
    assert meta["versions"]["jax"] == jax.__version__
    assert report["flops_per_sample"] == DEFAULT_FLOPS

    recipe = {r["implementation"]: r for r in report["train"] if r["section"] == "recipe"}
    assert set(recipe) == {"jaxae", "jax-python-loop"}
    jaxae, loop = recipe["jaxae"], recipe["jax-python-loop"]
    assert jaxae["ratio_vs_jaxae"] == 1.0
    assert loop["ratio_vs_jaxae"] == pytest.approx(
        loop["seconds_per_step"] / jaxae["seconds_per_step"], rel=1e-12
    )
    assert [r["implementation"] for r in report["train"] if r["section"] == "sweep"] == ["jaxae"]
    for r in report["train"]:
        assert r["samples_per_second"] == pytest.approx(r["batch"] / r["seconds_per_step"])
        assert r["tflops"] == pytest.approx(r["samples_per_second"] * DEFAULT_FLOPS / 1e12)
        assert r["steps"] == r["epochs"] * (r["n"] // r["batch"])
        assert np.isfinite(r["final_loss"]) and r["compile_seconds"] > 0

    encode = {(r["n"], r["input_dtype"], r["path"]): r for r in report["encode"]}
    assert set(encode) == {
        (n, dtype, path)
        for n in (1, 100)
        for dtype in ("float32", "uint8")
        for path in ("host", "device", "folded")
    }
    assert all(0 < r["median_seconds"] <= r["p99_seconds"] for r in encode.values())

    md = (tmp_path / "bench.md").read_text()
    scale = 1e6 if jax.default_backend() == "gpu" else 1e3  # µs or ms per step
    assert f"| jax-python-loop | float32 | 100 | {scale * loop['seconds_per_step']:.4g} |" in md
    assert f"| {loop['ratio_vs_jaxae']:.2f} |" in md
    assert "## Encoding latency" in md and "## Metadata" in md


def test_main_rejects_unknown_peer(tmp_path):
    with pytest.raises(JaxaeError, match="unknown peer nope"):
        bench.main(["--peers", "nope", "--out", str(tmp_path)])


def test_flops_per_sample_against_xla_cost_analysis():
    """The 6 x kernel-weights rule, and what XLA counts for a gradient of the loss: the
    same less the input's gradient through the first layer (2 x 784 x 256 per sample)."""
    model_config = ModelConfig()
    assert bench.flops_per_sample(model_config) == DEFAULT_FLOPS
    model = build_model(model_config)
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
    rows = bench.add_ratios(
        [row("jaxae", 100, 2.0), row("keras", 100, 9.0), row("keras", 1024, 5.0)]
    )
    assert [r["ratio_vs_jaxae"] for r in rows] == [1.0, 4.5, None]


def test_train_cases_put_jaxae_first_and_peers_where_asked():
    sizes = bench.SIZES["gpu"]
    cases = bench.train_cases(sizes, ["jax-scan", "torch-eager", "keras"])
    recipe32 = [c.name for c in cases if c.section == "recipe" and c.dtype == "float32"]
    # 500 epochs run in several chunks by default, so one-chunk jaxae is timed too.
    assert recipe32 == ["jaxae", "jaxae-1chunk", "jax-scan", "torch-eager", "keras"]
    sweep16 = {c.name for c in cases if c.section == "sweep" and c.dtype == "bfloat16"}
    assert sweep16 == {"jaxae", "jax-scan", "torch-eager"}
    for c in cases:
        steps = c.n // c.batch
        if c.name in bench.WHOLE_RUN and c.section == "sweep":
            assert c.epochs * steps >= sizes.sweep_min_steps and c.warmup_epochs == c.epochs


def test_results_name():
    assert bench.results_name("cpu") == "cpu"
    assert bench.results_name("NVIDIA H200") == "nvidia-h200"
    assert bench.results_name("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_load_images_falls_back_to_random_pixels(tmp_path):
    images, source = bench.load_images(tmp_path / "missing", 7000)
    assert images.shape == (7000, 784) and images.dtype == np.float32
    assert source.startswith("random") and 0 <= images.min() and images.max() <= 255
