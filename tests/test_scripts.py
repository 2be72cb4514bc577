"""The studies and scripts that results depend on: the seed study measures exactly what
`jaxae run --seed S` reports, the UMAP scaling study times every stage, and the GPU
clustering script refuses what it lacks in one line."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxae.cli import main as jaxae_main

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
STUDIES = Path(__file__).resolve().parents[1] / "bench" / "studies"


def _seed_study(monkeypatch, *args) -> int:
    spec = importlib.util.spec_from_file_location("seed_study", STUDIES / "seed_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["seed_study.py", *args])
    return module.main()


def test_seed_study_agrees_with_jaxae_run(tmp_path, monkeypatch, capsys):
    common = ["--dataset", "digits", "--n", "300", "--epochs", "3"]
    out = tmp_path / "study"
    assert (
        _seed_study(monkeypatch, *common, "--seeds", "2", "--kmeans-seeds", "3", "--out", str(out))
        == 0
    )
    results = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert "| 1 |" in out.with_suffix(".md").read_text()
    rows = results["jaxae"]
    assert [r["seed"] for r in rows] == [0, 1]
    for r in rows:  # the headline is the re-clustering with KMeans seed = seed
        assert r["acc"] == r["acc_by_kmeans_seed"][r["seed"]]
        assert r["pixel_acc"] == results["pixel_acc"][r["seed"]]

    assert (
        jaxae_main(["run", *common, "--seed", "1", "--no-progress", "--out", str(tmp_path / "run")])
        == 0
    )
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rows[1]["acc"] == pytest.approx(report["metrics"]["autoencoder_kmeans"]["acc"])
    assert rows[1]["pixel_acc"] == pytest.approx(report["metrics"]["pixel_kmeans"]["acc"])
    assert rows[1]["final_loss"] == pytest.approx(report["final_loss"], rel=1e-6)


def test_seed_study_bad_dataset(tmp_path, monkeypatch, capsys):
    assert _seed_study(monkeypatch, "--dataset", str(tmp_path / "missing")) == 2
    err = capsys.readouterr().err
    assert err.startswith("seed_study: ") and err.count("\n") == 1


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_clustering_script_names_missing_data(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable,
               DATASETS=f"{tmp_path / 'absent'} {tmp_path / 'also-absent'}")  # fmt: skip
    proc = subprocess.run(["bash", str(SCRIPTS / "gpu_clustering.sh")], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"no {tmp_path / 'absent'}: carry .data" in proc.stdout
    assert not (tmp_path / "out" / "absent-n2d-fast").exists()


def test_umap_scaling_times_every_stage(tmp_path, monkeypatch):
    """bench/studies/umap_scaling.py on 600 digits (PCA-10, tiled to 700 rows): one row per N
    with every stage timed; the search timed on a part is scaled to all queries."""
    spec = importlib.util.spec_from_file_location("umap_scaling", STUDIES / "umap_scaling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "scaling.md"
    args = ["--dataset", "digits", "--n", "700", "--layout-epochs", "5", "--out", str(out)]
    monkeypatch.setenv("PYTHONPATH", str(STUDIES.parents[1]))
    assert module.main(args) == 0
    row = next(line for line in out.read_text().splitlines() if line.startswith("| 700 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "10" and cells[8] == "5 of 500"  # D, epochs timed
    seconds = [float(cells[i].replace(",", "")) for i in (2, 4, 6, 7, 9)]
    assert min(seconds) >= 0 and seconds[3] > 0 and seconds[4] > 0  # layout s, peak MB
