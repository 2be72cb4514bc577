"""Many models in one program, many devices, many processes."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxae.cli import main
from jaxae.config import ModelConfig, TrainConfig
from jaxae.errors import JaxaeError
from jaxae.train import fit
from tests.helpers import TINY_MODEL

MODEL = ModelConfig.tiny()
TRAIN = TrainConfig(epochs=3, batch_size=32)


@pytest.mark.parametrize("vectorize", [True, False], ids=["vmap", "map"])
def test_models_together_equal_models_trained_alone(trained, vectorize):
    ds, _, _ = trained
    together = fit(
        ds.images,
        model_config=MODEL,
        train_config=TRAIN,
        seeds=[0, 5],
        lrs=[0.01, 0.003],
        progress=False,
        vectorize_models=vectorize,
    )
    assert together.models == [(0, 0.01), (0, 0.003), (5, 0.01), (5, 0.003)]
    assert together.loss_history.shape == (4, 3)
    for i, (seed, lr) in enumerate(together.models):
        alone = fit(
            ds.images,
            model_config=MODEL,
            train_config=TrainConfig(epochs=3, batch_size=32, seed=seed, lr=lr),
            progress=False,
        )
        if not vectorize:  # one after another: the very same arithmetic
            for a, b in zip(jax.tree.leaves(together.state), jax.tree.leaves(alone.state)):
                np.testing.assert_array_equal(a[i], b)
            np.testing.assert_array_equal(together.loss_history[i], alone.loss_history)
            continue
        # batched matmuls round differently
        np.testing.assert_allclose(together.loss_history[i], alone.loss_history, rtol=2e-5)
        for a, b in zip(jax.tree.leaves(together.state), jax.tree.leaves(alone.state)):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-6)


def test_models_together_on_cpu_default_to_exact(trained):
    ds, _, _ = trained
    together = fit(ds.images, model_config=MODEL, train_config=TRAIN, seeds=[1, 2], progress=False)
    alone = fit(
        ds.images,
        model_config=MODEL,
        train_config=TrainConfig(epochs=3, batch_size=32, seed=2),
        progress=False,
    )
    for a, b in zip(jax.tree.leaves(together.state), jax.tree.leaves(alone.state)):
        np.testing.assert_array_equal(a[1], b)


def test_cli_seeds_report_mean_and_spread(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--n", "300", "--epochs", "2", "--batch-size", "50", "--seeds", "3"]
    args += [*TINY_MODEL, "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["models_trained"] == 3 and report["seeds"] == [0, 1, 2]
    for method in ("autoencoder_kmeans", "pixel_kmeans"):
        m = report["metrics"][method]
        accs = [model["metrics"][method]["acc"] for model in report["models"]]
        assert m["per_seed"]["acc"] == accs
        assert m["acc"] == pytest.approx(np.mean(accs)) and m["std"]["acc"] == pytest.approx(
            np.std(accs)
        )
        assert m["min"]["acc"] == min(accs) and m["max"]["acc"] == max(accs)
    # The kept model is the consensus of the three clusterings, chosen without labels.
    agreement = report["consensus"]["agreement"]
    assert report["selected_model"] == report["consensus"]["model"] == int(np.argmax(agreement))
    out = capsys.readouterr().out
    assert "± " in out and "one draw" not in out


def test_batch_must_divide_over_devices():
    with pytest.raises(JaxaeError, match="devices=2: JAX sees 1 device"):
        fit(np.zeros((64, 64), np.float32), model_config=MODEL, train_config=TRAIN, devices=2)


def _python(
    code: str, *, env: dict | None = None, timeout: int = 240
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_four_devices_equal_one(trained):
    ds, _, _ = trained
    one = fit(ds.images, model_config=MODEL, train_config=TRAIN, progress=False).loss_history
    proc = _python(
        """
        import json, jax
        from jaxae.config import ModelConfig, TrainConfig
        from jaxae.data import load_dataset
        from jaxae.train import fit
        assert jax.device_count() == 4
        images = load_dataset("digits", n=256).images
        kw = dict(model_config=ModelConfig.tiny(), progress=False, devices=4,
                  train_config=TrainConfig(epochs=3, batch_size=32))
        print(json.dumps([fit(images, **kw).loss_history.tolist()] + [
            fit(images, seeds=[0, 1], vectorize_models=v, **kw).loss_history[0].tolist()
            for v in (True, False)]))
        """,
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    )
    assert proc.returncode == 0, proc.stderr
    four, vmapped, mapped = json.loads(proc.stdout.splitlines()[-1])
    np.testing.assert_allclose(four, one, rtol=1e-5)  # batch sharded, gradients all-reduced
    np.testing.assert_allclose(vmapped, one, rtol=1e-5)  # models vmapped, batch sharded
    np.testing.assert_allclose(mapped, one, rtol=1e-5)  # models in turn, batch sharded


def test_two_processes_on_loopback_equal_one(tmp_path, trained):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = ["-m", "jaxae.cli", "run", "--distributed", "--coordinator", f"127.0.0.1:{port}"]
    common += ["--num-processes", "2", "--n", "256", "--epochs", "3", "--batch-size", "32"]
    common += [*TINY_MODEL, "--out", str(tmp_path / "run")]
    procs = [
        subprocess.Popen(
            [sys.executable, *common, "--process-id", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["process_count"] == 2 and report["device_count"] == 2
    ds, _, _ = trained
    one = fit(ds.images, model_config=MODEL, train_config=TRAIN, progress=False).loss_history
    np.testing.assert_allclose(report["loss_history"], one, rtol=1e-5)
    assert "wrote" in outputs[0][0] and "wrote" not in outputs[1][0]  # only process 0 writes


def test_devices_reach_the_jax_umap_of_the_codes_and_of_the_pixels(tmp_path):
    """--devices 4 gets to both UMAPs of a run (the codes', then the pixels'), which
    fit on the mesh and score. Whether four devices cluster as one does is
    tests/test_umap.py's to show, on the same data; 30 layout epochs here."""
    proc = _python(
        f"""
        import json, jax
        from jaxae.cli import main
        from jaxae.cluster import umap_gmm
        assert jax.device_count() == 4
        seen, fit_umap = [], umap_gmm.fit_umap
        umap_gmm.fit_umap = lambda *a, **kw: seen.append(kw["devices"]) or fit_umap(*a, **kw)
        run = {str(tmp_path)!r} + "/run"
        args = ["run", "--method", "umap-gmm", "--umap", "jax", "--gmm", "jax", "--n", "128",
                "--epochs", "2", "--batch-size", "32", "--umap-epochs", "30", *{TINY_MODEL!r}]
        assert main([*args, "--devices", "4", "--out", run]) == 0
        print(json.dumps([seen, json.load(open(run + "/report.json"))["metrics"]]))
        """,
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    )
    assert proc.returncode == 0, proc.stderr
    seen, metrics = json.loads(proc.stdout.splitlines()[-1])
    assert seen == [4, 4]
    assert metrics["autoencoder_umap_gmm"]["acc"] > 0.5 and metrics["pixel_umap_gmm"]["acc"] > 0.5
