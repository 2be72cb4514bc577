"""``jaxae refine``: a finished DEC/IDEC run refined again, writing into no run folder."""

import json
import shutil
import subprocess
import sys

import pytest

from jaxae.checkpoint import load_checkpoint
from jaxae.cli import main
from tests.helpers import TINY_MODEL, rewrite_checkpoint

TINY = ["--n", "300", "--epochs", "1", "--batch-size", "50", *TINY_MODEL]
REFINE = ["--max-steps", "30", "--update-interval", "10"]


@pytest.fixture(scope="module")
def dec_run(tmp_path_factory):
    """A DEC-DA run of two models."""
    out = tmp_path_factory.mktemp("runs") / "dec"
    args = [*TINY, "--method", "dec", *REFINE, "--dec-shift", "0.1", "--dec-rotate", "10"]
    assert main(["run", *args, "--seeds", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def idec_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "idec"
    assert main(["run", *TINY, "--method", "idec", *REFINE, "--out", str(out)]) == 0
    return out


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_no_flag_gives_the_runs_scores_then_it_obeys_its_flags(dec_run, tmp_path, capsys):
    """With no flag the run's pretrained models refine to the run's own scores (start and
    refined); with flags only the refinement changes."""
    report = json.loads((dec_run / "report.json").read_text())
    out = tmp_path / "same.md"
    assert main(["refine", str(dec_run), "--out", str(out)]) == 0
    written = json.loads(out.with_suffix(".json").read_text())
    rows = written["rows"]
    assert [r["seed"] for r in rows] == [0, 1]
    # The run's answer, its two models' codes side by side, comes out the same too.
    assert written["side_by_side"] == report["consensus"]["metrics"]["autoencoder_dec"]
    assert "codes side by side, the answer of a run of them" in out.read_text()
    for r, model in zip(rows, report["models"], strict=True):
        assert r["refined"]["acc"] == model["metrics"]["autoencoder_dec"]["acc"]
        assert r["start"]["acc"] == model["metrics"]["pretrained_kmeans"]["acc"]
        assert r["refine_steps"] == model["refine_steps"]
    text = out.read_text()
    assert "changed: nothing" in text and "SGD lr 0.01 momentum 0.9" in text
    assert "update interval 10" in text and "at most 30 steps" in text

    out = tmp_path / "short.md"
    args = ["--models", "1", "--max-steps", "10", "--lr", "0.05", "--out", str(out)]
    assert main(["refine", str(dec_run), *args]) == 0
    written = json.loads(out.with_suffix(".json").read_text())
    (row,) = written["rows"]
    assert written["side_by_side"] is None  # one model: no answer of several
    assert row["seed"] == 1 and row["refine_steps"] <= 10
    assert row["start"]["acc"] == rows[1]["start"]["acc"]
    text = out.read_text()
    assert "| 1 | 1 |" in text and "SGD lr 0.05 momentum 0.9" in text  # what ran
    assert "at most 10 steps" in text and "changed: max_steps 10, lr 0.05" in text

    capsys.readouterr()
    assert main(["refine", str(dec_run), "--models", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxae refine: error: --models") and err.count("\n") == 1


def test_out_inside_any_run_folder_is_refused_and_nothing_written(
    dec_run, idec_run, tmp_path, capsys
):
    """--out RUN/report.md once replaced the run's report.json (the rows go beside, as .json)."""
    before = {run: _files(run) for run in (dec_run, idec_run)}
    link = tmp_path / "link"
    link.symlink_to(dec_run)
    targets = [dec_run / "report.md", dec_run / "checkpoint.msgpack", dec_run / "sub" / "r.md",
               link / "report.md", idec_run / "report.md"]  # fmt: skip
    for target in targets:
        assert main(["refine", str(dec_run), "--out", str(target)]) == 2, target
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"--out {target} is inside the jaxae run folder" in err
    # The same in a process of its own: status 2, one line, nothing written.
    target = dec_run / "report.md"
    command = [sys.executable, "-m", "jaxae.cli", "refine", str(dec_run), "--out", str(target)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "is inside the jaxae run folder" in done.stderr
    assert {run: _files(run) for run in (dec_run, idec_run)} == before
    assert main(["refine", str(dec_run), "--out", str(tmp_path / "r.txt")]) == 2
    assert "not a .md file" in capsys.readouterr().err


def _unfinished(run, folder, *, epoch):
    """A copy of ``run`` as a run stopped after ``epoch`` epochs (or, with the run's own
    number, stopped while writing) left it: no report.json."""
    shutil.copytree(run, folder)
    (folder / "report.json").unlink()
    if epoch < load_checkpoint(folder).epoch:
        rewrite_checkpoint(folder, epoch=epoch, stage="pretraining", refine=None)
    return folder


@pytest.mark.parametrize("epoch, done", [(0, "epoch 0 of 1"), (1, "pretrained, writing")])
def test_an_unfinished_run_is_refused(dec_run, tmp_path, capsys, epoch, done):
    folder = _unfinished(dec_run, tmp_path / "stopped", epoch=epoch)
    assert main(["refine", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"is not a finished run ({done}" in err
    assert f"finish it first with jaxae run --resume {folder}, then refine it" in err


def test_each_flag_is_honoured_or_refused_for_the_runs_method(dec_run, idec_run, tmp_path, capsys):
    """IDEC refines with Adam at 0.001 (its report says so); --lr, DEC's SGD rate, is
    refused for it, and --gamma, IDEC's loss weight, for DEC."""
    report = json.loads((idec_run / "report.json").read_text())
    assert report["cluster"]["refine"]["lr"] == 0.001  # it recorded DEC's 0.01 before
    assert load_checkpoint(idec_run).run["cluster"]["refine"]["lr"] == 0.001
    assert json.loads((dec_run / "report.json").read_text())["cluster"]["refine"]["lr"] == 0.01

    assert main(["refine", str(idec_run), "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--lr 0.5 sets DEC's SGD rate, but IDEC refines with Adam at 0.001" in err
    assert main(["refine", str(dec_run), "--gamma", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--gamma 0.5 weighs IDEC's clustering loss" in err

    out = tmp_path / "idec.md"
    assert main(["refine", str(idec_run), "--gamma", "0.2", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Adam lr 0.001" in text and "gamma 0.2" in text and "changed: gamma 0.2" in text
    out = tmp_path / "same.md"
    assert main(["refine", str(idec_run), "--out", str(out)]) == 0
    written = json.loads(out.with_suffix(".json").read_text())
    (row,) = written["rows"]
    assert written["side_by_side"] is None  # one model: no answer of several
    assert row["refined"]["acc"] == report["metrics"]["autoencoder_idec"]["acc"]


def test_a_run_that_refines_nothing_is_refused(tmp_path, capsys):
    out = tmp_path / "kmeans"
    assert main(["run", *TINY, "--out", str(out)]) == 0
    assert main(["refine", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "clustered with kmeans, which refines nothing" in err
