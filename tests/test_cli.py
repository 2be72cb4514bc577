import json

import jax
import numpy as np
import pytest

from jaxae.cli import main
from jaxae.cli.run import summary
from tests.helpers import TINY_MODEL, mnist_5k, without_clusterer_checksum

TINY = ["--n", "300", "--epochs", "3", "--batch-size", "50", *TINY_MODEL]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["run", "--out", str(out), *TINY]) == 0
    return out


def test_run_end_to_end(run_dir, capsys):
    files = {p.name for p in run_dir.iterdir()}
    assert files == {
        "report.json",
        "index.html",
        "clusters.png",
        "loss.png",
        "reconstructions.png",
        "codes.png",
        "confusion.png",
        "checkpoint.msgpack",
        "clusters.npy",
        "clusterer.npz",
        ".jaxae-run",
        ".jaxae-lock",
    }
    report = json.loads((run_dir / "report.json").read_text())
    keys = """dataset n input_dim epochs batch_size lr seed dtype backend device_kind jax_version
              compile_seconds train_seconds steps_per_second samples_per_second final_loss
              loss_history""".split()
    for key in keys:
        assert key in report, key
    assert report["n"] == 300 and report["input_dim"] == 64 and len(report["loss_history"]) == 3
    assert report["steps_per_second"] == pytest.approx(3 * 6 / report["train_seconds"])
    for method in ("autoencoder_kmeans", "pixel_kmeans"):
        assert set(report["metrics"][method]) == {"acc", "nmi", "ari"}
        assert 0.1 < report["metrics"][method]["acc"] <= 1
    for png in ("clusters.png", "loss.png", "reconstructions.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_says_one_seed_is_one_draw(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    text = summary(report, run_dir)
    assert "one seed is one draw: --seeds 5" in text
    report["metrics"] = {}  # no labels, no scores: nothing to warn about
    assert "one draw" not in summary(report, run_dir)


def test_encode_command(run_dir, tmp_path, capsys):
    out = tmp_path / "codes.npy"
    assert main(["encode", str(run_dir), "digits", "--n", "40", "--out", str(out)]) == 0
    codes = np.load(out, allow_pickle=False)
    assert codes.shape == (40, 8) and codes.dtype == np.float32


def test_info(capsys):
    assert main(["info"]) == 0
    assert "backend: cpu" in capsys.readouterr().out


def test_mnist_original_recipe_shape(tmp_path, capsys):
    out = tmp_path / "mnist"
    args = [
        "run",
        "--dataset",
        str(mnist_5k()),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--n-init",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["n"], report["input_dim"], report["steps"]) == (3000, 784, 30)  # default n 3000
    out = tmp_path / "all"
    args = ["run", "--dataset", str(mnist_5k()), "--n", "all", "--epochs", "1", *TINY_MODEL]
    assert main([*args, "--batch-size", "500", "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["n"] == 5000


def bad(tmp_path, *args) -> str:
    return str(tmp_path / "x"), *args


@pytest.mark.parametrize(
    "args, match",
    [
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--dataset", "{tmp}/missing.npz"], "unknown dataset|no such file"),
        (["--n", "5000"], "--n 5000 is larger than the 1797 images"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--n", "20", "--clusters", "30"], "30 clusters is more than the 20 samples"),
        (["--n", "20", "--batch-size", "50"], "--batch-size 50 is larger than the 20 images"),
        (["--dataset", "{tmp}/bad.idx"], "not an IDX file"),
        (["--dataset", "{tmp}/nan.npz"], "non-finite"),
        (["--dataset", "{tmp}/counts.npz"], "labels"),
        # The flags of the deep-clustering models and methods.
        (["--hidden", "500,0"], "hidden must be at least 1"),
        (["--code-dim", "0"], "--code-dim must be at least 1"),
        (["--init", "zeros"], "unknown --init 'zeros'"),
        (["--momentum", "2"], "momentum must be at most 1"),
        (["--lr", "0"], "--lr must be a positive"),
        (["--n-init", "0"], "--n-init must be at least 1"),
        (["--update-interval", "0"], "--update-interval must be at least 1"),
        (["--max-steps", "0"], "--max-steps must be at least 1"),
        (["--gamma", "-1"], "gamma must be at least 0"),
        (["--dec-tol", "2"], "--dec-tol must be at most 1"),
        (["--seeds", "0"], "seeds must be at least 1"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be at least 1"),
        (["--dataset", "{tmp}/constant.npz"], "every image of .* is constant.*--scaling unit"),
        (["--dataset", "{tmp}/one_pixel.npz"], "is constant \\(1 pixel"),
    ],
)
def test_run_bad_input(tmp_path, capsys, args, match):
    (tmp_path / "bad.idx").write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    np.savez(tmp_path / "nan.npz", x=np.full((10, 4), np.nan))
    np.savez(tmp_path / "counts.npz", x=np.zeros((10, 4)), y=np.zeros(9, int))
    np.savez(tmp_path / "constant.npz", x=np.full((40, 16), 3.0))
    np.savez(tmp_path / "one_pixel.npz", x=np.arange(40.0)[:, None])
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["run", "--out", str(out), "--epochs", "1", "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    import re

    assert re.search(match, err), err
    assert not out.exists() and not list(tmp_path.glob(".out*"))  # nothing half-written


def test_run_refuses_existing_out(run_dir, capsys):
    before = (run_dir / "report.json").read_bytes()
    assert main(["run", "--out", str(run_dir), *TINY]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (run_dir / "report.json").read_bytes() == before


def test_encode_bad_input(run_dir, tmp_path, capsys):
    np.save(tmp_path / "wide.npy", np.zeros((3, 784)))
    np.savez(tmp_path / "wide.npz", x=np.zeros((3, 784)))
    out = tmp_path / "codes.npy"
    assert main(["encode", str(run_dir), str(tmp_path / "wide.npz"), "--out", str(out)]) == 2
    assert "784 pixels but the model expects 64" in capsys.readouterr().err
    assert main(["encode", str(tmp_path), "digits", "--out", str(out)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert main(["encode", str(run_dir), "digits", "--out", str(out), "--chunk-rows", "0"]) == 2
    assert "--chunk-rows must be at least 1" in capsys.readouterr().err  # streamed or not
    assert not out.exists()


def test_bad_flag_is_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--dtype", "float16"])
    assert e.value.code == 2


def test_encode_streams_npy_in_chunks(run_dir, tmp_path, capsys):
    from jaxae.data import load_dataset
    from jaxae.rundir import load

    images = load_dataset("digits").images.astype(np.uint8)
    np.save(tmp_path / "pixels.npy", images)
    out = tmp_path / "codes.npy"
    args = ["encode", str(run_dir), str(tmp_path / "pixels.npy"), "--out", str(out)]
    assert main([*args, "--chunk-rows", "500", "--no-progress"]) == 0
    np.testing.assert_allclose(
        np.load(out, allow_pickle=False), load(run_dir).encode(images), rtol=1e-5, atol=1e-6
    )


def test_predict_on_the_training_images_gives_the_runs_clusters(run_dir, tmp_path, capsys):
    out = tmp_path / "pred.npy"
    assert main(["predict", str(run_dir), "digits", "--n", "300", "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), np.load(run_dir / "clusters.npy"))
    assert main(["predict", str(run_dir), str(out), "--out", str(out)]) == 2
    assert "is the input file" in capsys.readouterr().err


def test_umap_gmm_without_umap_learn_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # import umap raises ImportError
    out = tmp_path / "run"
    args = ["run", "--method", "umap-gmm", "--umap", "umap-learn", *TINY, "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'jaxae[umap]'" in err and not out.exists()


@pytest.mark.parametrize("method", ["gmm", "umap-gmm", "umap-gmm/umap-learn", "dec", "idec"])
def test_every_method_runs_and_scores_beside_its_baseline(tmp_path, capsys, method):
    method, _, umap_backend = method.partition("/")
    out = tmp_path / method
    args = ["run", "--method", method, "--n-init", "1", "--seeds", "2"]
    args += ["--umap", umap_backend] if umap_backend else []
    args += ["--umap-epochs", "30"] if method == "umap-gmm" else []  # quick; shape unchanged
    args += ["--max-steps", "40", "--update-interval", "10"] if method in ("dec", "idec") else []
    assert main([*args, *TINY, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    key = method.replace("-", "_")
    assert set(report["metrics"]) >= {f"autoencoder_{key}", "pixel_kmeans"}
    if method in ("gmm", "umap-gmm"):
        assert f"pixel_{key}" in report["metrics"]
    assert len(report["metrics"][f"autoencoder_{key}"]["per_seed"]["acc"]) == 2
    assert all(m["method"] == method for m in report["models"])
    pred = tmp_path / "pred.npy"
    status = main(["predict", str(out), "digits", "--n", "300", "--out", str(pred)])
    if umap_backend == "umap-learn":  # its UMAP cannot be saved without pickle: one line
        assert status == 2 and "cannot be saved without pickle" in capsys.readouterr().err
        assert not (out / "clusterer.npz").exists()
    else:  # both models' (refined) codes side by side and their fit give the run's clusters
        assert status == 0
        np.testing.assert_array_equal(np.load(pred), np.load(out / "clusters.npy"))
        start = "kmeans" if method in ("dec", "idec") else method  # DEC's start: KMeans
        with np.load(out / "clusterer.npz", allow_pickle=False) as saved:
            assert str(saved["method"]) == start  # one file, the method's name inside
            assert saved["members_models"].tolist() == [0, 1]


def test_umap_gmm_on_the_device_needs_no_umap_learn_and_its_folder_predicts(
    tmp_path, capsys, monkeypatch
):
    import sys

    import jaxae

    monkeypatch.setitem(sys.modules, "umap", None)  # import umap raises ImportError
    out = tmp_path / "run"
    args = ["run", "--method", "umap-gmm", "--umap", "jax", "--gmm", "jax", "--n-init", "2"]
    assert main([*args, "--umap-epochs", "60", *TINY, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["cluster"]["umap"]["backend"] == report["cluster"]["gmm"]["backend"] == "jax"
    assert report["cluster"]["umap"]["epochs"] == 60
    assert "pixel_umap_gmm" in report["metrics"]  # the baseline with the same backends
    with np.load(out / "clusterer.npz", allow_pickle=False) as saved:
        assert str(saved["method"]) == "umap-gmm" and "umap_embedding" in saved
        arrays = dict(saved)
    from jaxae.cluster.umap_gmm import UMAPGMMFit

    covs = arrays["gmm_covariances"]  # a mixture umap-gmm never fits: refused in one line
    arrays.update(gmm_covariances=np.diagonal(covs, axis1=1, axis2=2).copy(),
                  gmm_covariance_type=np.asarray("diag"))  # fmt: skip
    with pytest.raises(jaxae.JaxaeError, match="'diag' covariances, not the 'full'"):
        UMAPGMMFit.from_arrays(arrays)
    pred = tmp_path / "pred.npy"
    assert main(["predict", str(out), "digits", "--n", "300", "--out", str(pred)]) == 0
    # The training images' codes are training rows: they keep their embedding and labels.
    np.testing.assert_array_equal(np.load(pred), np.load(out / "clusters.npy"))
    images = jaxae.load_dataset("digits").images[:300]
    ae = jaxae.load(out)
    np.testing.assert_array_equal(ae.predict(images), np.load(pred))
    fitted = ae.clusterer.fitted
    assert fitted.umap.n_epochs == 60
    # ae.predict is one program from pixels to labels, compiled once per size bucket.
    new = images[:64].astype(np.float32) + 0.5  # not training rows: embedded anew
    labels, arrays = fitted.labels_program()
    program = jax.jit(lambda p, x, arrays: labels(arrays, jaxae.encode_fn(p, x, ae.model_config)))
    np.testing.assert_array_equal(ae.predict(new), program(ae.params, new, arrays))
    before = jaxae.encoder._predict._cache_size()
    assert (ae.predict(new[:61]) == ae.predict(new)[:61]).all()  # padding changes nothing
    assert jaxae.encoder._predict._cache_size() == before  # 61 rows: 64's program
    # Pixels to labels in one program of the user's: encode_fn, then the fit's labels_fn.
    labels = fitted.labels_fn()
    program = jax.jit(lambda p, x: labels(jaxae.encode_fn(p, x, ae.model_config), n_epochs=20))
    assert (np.asarray(program(ae.params, new)) == ae.predict(new)).mean() >= 0.95


def test_dec_da_refines_on_augmented_batches_and_needs_image_rows(tmp_path, capsys):
    out = tmp_path / "da"
    args = ["run", "--method", "dec", "--n-init", "1", "--max-steps", "30", "--dec-tol", "0"]
    da = [*args, "--update-interval", "10", "--dec-shift", "0.1", "--dec-rotate", "10"]
    da += ["--no-dec-guard"]  # it counts every step; the guard would stop this tiny model
    assert main([*da, *TINY, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["cluster"]["refine"]["shift"], report["cluster"]["refine"]["rotate"]) == (
        0.1, 10.0,
    )  # fmt: skip
    assert report["models"][0]["refine_steps"] == 30
    # What each stage added and took: KMeans on the pretrained codes beside DEC.
    assert list(report["metrics"])[:2] == ["autoencoder_dec", "pretrained_kmeans"]
    stages = report["stage_seconds"]
    assert set(stages) == {"pretraining", "clustering", "kmeans_start", "refinement", "baselines"}
    assert stages["kmeans_start"] + stages["refinement"] <= stages["clustering"]
    assert (out / "augmented.png").is_file()  # the refinement's inputs, drawn
    plain = tmp_path / "plain"
    assert main([*args, "--update-interval", "10", *TINY, "--out", str(plain)]) == 0
    assert not (plain / "augmented.png").exists()
    # The same pretraining, a different refinement: the augmented batches moved the encoder.
    import jaxae

    images = jaxae.load_dataset("digits").images[:300]
    codes = jaxae.load(out).encode(images), jaxae.load(plain).encode(images)
    assert not np.array_equal(*codes)
    # Rows with no image shape: refused before training, naming the flag.
    np.savez(tmp_path / "rows.npz", x=np.random.default_rng(0).random((60, 7)))
    bad = tmp_path / "bad"
    flags = ["--dataset", str(tmp_path / "rows.npz"), "--epochs", "1", "--out", str(bad)]
    assert main([*da, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "image" in err and not bad.exists()


def test_dec_can_start_from_umap_gmm_and_reports_that_start(tmp_path, capsys):
    out = tmp_path / "start"
    args = ["run", "--method", "dec", "--dec-start", "umap-gmm", "--n-init", "1"]
    args += ["--umap-epochs", "30", "--max-steps", "20", "--update-interval", "10"]
    assert main([*args, *TINY, "--out", str(out)]) == 0
    assert "(UMAP + GMM " in capsys.readouterr().out  # the start's seconds, named
    report = json.loads((out / "report.json").read_text())
    assert report["cluster"]["refine"]["start"] == "umap-gmm"
    # What the start scored, beside DEC and beside the same start on the pixels.
    assert list(report["metrics"]) == [
        "autoencoder_dec", "pretrained_umap_gmm", "pixel_kmeans", "pixel_umap_gmm",
    ]  # fmt: skip
    assert {"umap_gmm_start", "refinement"} <= set(report["stage_seconds"])
    # A start the CLI does not know: argparse's error naming the flag, exit 2.
    with pytest.raises(SystemExit) as e:
        main([*args[:3], "--dec-start", "gmm", *TINY, "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "argument --dec-start" in capsys.readouterr().err


# Nothing writes into a run folder but its run.
@pytest.mark.parametrize("command", ["predict", "encode"])
def test_nothing_writes_into_a_run_folder_but_its_run(run_dir, tmp_path, capsys, command):
    from jaxae.rundir import RUN_FILES

    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    targets = [*sorted(RUN_FILES | set(before)), "new.npy", "sub/codes.npy"]
    link = tmp_path / "link"
    link.symlink_to(run_dir)
    for target in [*(run_dir / name for name in targets), link / "clusters.npy"]:
        args = [command, str(run_dir), "digits", "--n", "10", "--out", str(target)]
        assert main([*args, "--no-progress"]) == 2, target
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"--out {target} is inside the jaxae run folder {run_dir.resolve()}" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    pred = tmp_path / "pred.npy"  # beside the run, not in it: allowed
    assert main(["predict", str(run_dir), "digits", "--n", "10", "--out", str(pred)]) == 0


def test_no_run_or_bench_writes_into_another_run(run_dir, capsys):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert main(["run", *TINY, "--out", str(run_dir / "inner")]) == 2
    assert "--out" in capsys.readouterr().err and not (run_dir / "inner").exists()
    assert main(["bench", "--tiny", "--out", str(run_dir / "bench")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inside the jaxae run folder" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


# Row 4: every flag a message names exists.
@pytest.mark.parametrize(
    "args",
    [
        ["--n", "12", "--method", "umap-gmm", "--batch-size", "4"],
        ["--n", "12", "--method", "umap-gmm", "--batch-size", "4", "--umap-dim", "11"],
        ["--n", "30", "--clusters", "31"],
        ["--n", "30", "--batch-size", "31"],
        ["--epochs", "3000000000"],
    ],
)
def test_every_flag_a_message_names_exists(tmp_path, capsys, args):
    import re

    from jaxae.cli.run import add_args

    parser = __import__("argparse").ArgumentParser()
    add_args(parser)
    flags = {s for a in parser._actions for s in a.option_strings}
    assert main(["run", *args, "--no-progress", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", err))
    assert named and named <= flags, err
    assert not re.search(r"\b[a-z][a-z0-9_]*=", err), err  # no parameter=value spelling


def test_umap_options_are_flags(tmp_path, capsys):
    args = ["--n", "12", "--method", "umap-gmm", "--batch-size", "4", "--umap-neighbors", "5"]
    assert main(["run", *args, "--umap-dim", "11", "--out", str(tmp_path / "r")]) == 2
    assert "pass --umap-dim 10 or less" in capsys.readouterr().err
    assert main(["run", *args, "--umap-epochs", "0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--umap-epochs" in err and not (tmp_path / "r").exists()


# Row 5: a failed save names the file the user knows, not its temporary name.
def test_a_failed_save_names_the_file_not_its_temporary_name(tmp_path, capsys, monkeypatch):
    from jaxae import _files

    real = _files.temporary_name

    def broken(path):  # the temporary clusters.png cannot be created
        tmp = real(path)
        return tmp / "missing" if path.name == "clusters.png" else tmp

    monkeypatch.setattr(_files, "temporary_name", broken)
    out = tmp_path / "run"
    assert main(["run", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write {out / 'clusters.png'}:" in err, err
    assert ".tmp" not in err


# Row 6: a resume of a folder in use names --resume, what the user passed.
def test_resume_of_a_folder_in_use_names_resume(tmp_path, capsys):
    import fcntl

    out = tmp_path / "run"
    assert main(["run", *TINY, "--out", str(out)]) == 0
    (out / "report.json").unlink()  # as if the run had stopped before its report
    with open(out / ".jaxae-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds it
        assert main(["run", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--resume {out} is in use by another jaxae run" in err and "--out" not in err


def test_the_clis_choices_are_the_configs():
    """The CLI keeps literal lists (it parses before JAX loads): they must stay in step."""
    from jaxae import config
    from jaxae.cli.run import CHOICES
    from jaxae.cluster import METHODS
    from jaxae.cluster_options import (
        GMM_BACKENDS,
        KMEANS_BACKENDS,
        METHOD_NAMES,
        STARTS,
        UMAP_BACKENDS,
    )

    # ClusterConfig checks a method's name against METHOD_NAMES, kept apart from the
    # methods' records so that jaxae.config need not import them.
    assert METHOD_NAMES == tuple(METHODS)
    assert CHOICES == {
        "optimizer": config.OPTIMIZERS,
        "schedule": config.SCHEDULES,
        "code_activation": config.CODE_ACTIVATIONS,
        "scaling": config.SCALINGS,
        "method": tuple(METHODS),
        "kmeans": KMEANS_BACKENDS,
        "gmm": GMM_BACKENDS,
        "umap": UMAP_BACKENDS,
        "dtype": config.DTYPES,
        "dec_start": STARTS,
    }


def test_a_run_folder_from_before_clusterer_npz_still_predicts(run_dir, tmp_path, capsys):
    """Runs written before the registry kept centers.npy (kmeans, dec, idec) instead."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    without_clusterer_checksum(old)
    with np.load(old / "clusterer.npz", allow_pickle=False) as saved:
        np.save(old / "centers.npy", saved["centers"])
    (old / "clusterer.npz").unlink()
    pred = tmp_path / "pred.npy"
    assert main(["predict", str(old), "digits", "--n", "300", "--out", str(pred)]) == 0
    np.testing.assert_array_equal(np.load(pred), np.load(run_dir / "clusters.npy"))
    np.save(old / "centers.npy", np.zeros(3))  # damaged: one line
    assert main(["predict", str(old), "digits", "--n", "300", "--out", str(pred)]) == 2
    assert "cannot read the clusters" in capsys.readouterr().err


def test_predict_and_encode_warn_of_images_far_outside_the_training_range(tmp_path, capsys):
    """[0, 1] floats given to a run trained on uint8 pixels with --scaling unit: one line
    on stderr naming the problem and the fix, and the labels and codes still written."""
    from jaxae.data import load_dataset

    source = str(mnist_5k())
    run = tmp_path / "run"
    assert main(["run", "--dataset", source, "--scaling", "unit", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    floats = tmp_path / "floats.npy"
    np.save(floats, load_dataset(source, n=40).images / np.float32(255))
    for command in ("predict", "encode"):
        out = tmp_path / f"{command}.npy"
        assert main([command, str(run), str(floats), "--out", str(out), "--no-progress"]) == 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"jaxae {command}: warning: images "), err
        assert "under a tenth of the training images' range, 0 to 255" in err, err
        assert "rescale them" in err and out.is_file()
    out = tmp_path / "labels.npy"
    assert main(["predict", str(run), source, "--n", "40", "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""  # the training scale: nothing to say
