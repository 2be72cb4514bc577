"""``jaxae.cli.flags``: a flag the run would ignore is refused before anything is loaded."""

from __future__ import annotations

import pytest

from jaxae.cli.flags import METHOD_FLAGS, REFINING, START_METHODS
from jaxae.cli.run import CHOICES, PRESET_FIELDS
from tests.helpers import run_until_start as run

# A value each method flag accepts (argv after the flag; --dec-guard takes none).
VALUES = {
    "kmeans": ["jax"], "gmm": ["sklearn"], "gmm_reg_covar": ["1e-4"], "umap": ["jax"],
    "umap_dim": ["5"],
    "umap_neighbors": ["5"], "umap_min_dist": ["0.1"], "umap_epochs": ["10"],
    "update_interval": ["10"], "max_steps": ["10"], "dec_tol": ["0.01"], "dec_shift": ["0.1"],
    "dec_rotate": ["5"], "dec_start": ["umap-gmm"], "dec_guard": [], "gamma": ["0.2"],
}  # fmt: skip


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _ignored():
    """(flag's argv, a method that does not read it) for every method flag."""
    for dest, methods in METHOD_FLAGS.items():
        for method in CHOICES["method"]:
            if method not in methods:
                yield [_flag(dest), *VALUES[dest]], method


@pytest.mark.parametrize(("flag", "method"), list(_ignored()))
def test_a_flag_the_method_does_not_read_is_refused(tmp_path, monkeypatch, flag, method):
    status, err = run(tmp_path, monkeypatch, "--method", method, *flag)
    assert status == 2 and err.count("\n") == 1, err
    if (flag[0], method) == ("--gamma", "dec"):  # the library refuses it first, as for the API
        assert "leave --gamma unset for dec" in err, err
        return
    assert f"{flag[0]} is read only by" in err and f"this run's {method}" in err, err
    assert f"drop {flag[0]}" in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["--preset", "n2d-fast", "--gamma", "0.2"],  # UMAP + GMM: nothing refines
        ["--preset", "dec", "--umap-dim", "5"],  # its refinement starts from KMeans
        ["--method", "dec", "--kmeans", "jax"],  # DEC's KMeans start is scikit-learn's
        ["--num-processes", "2"],  # without --distributed nothing reads it
        ["--coordinator", "localhost:1234"],
    ],
)
def test_refused_flags_name_the_run_and_the_fix(tmp_path, monkeypatch, argv):
    status, err = run(tmp_path, monkeypatch, *argv)
    assert status == 2 and err.count("\n") == 1 and argv[-2] in err, err
    if "--preset" in argv:
        assert f"(--preset {argv[1]})" in err, err
    if "--umap-dim" in argv:
        assert "--dec-start umap-gmm" in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["--preset", "dec", "--method", "kmeans"],  # the preset's refine options are its own
        ["--preset", "n2d-da", "--umap-dim", "5"],  # IDEC from N2D's UMAP + GMM start
        ["--method", "dec", "--dec-start", "umap-gmm", "--gmm", "sklearn"],
        ["--preset", "dec-da", "--method", "idec", "--gamma", "0.2"],
        ["--method", "idec", "--no-dec-guard", "--gamma", "0.2"],
        ["--method", "umap-gmm", "--gmm", "jax", "--umap-epochs", "10"],
    ],
)
def test_flags_the_run_reads_are_accepted(tmp_path, monkeypatch, argv):
    assert run(tmp_path, monkeypatch, *argv) == (None, "")


def test_the_declaration_covers_every_method_option_and_names_real_methods():
    """Every flag of a method's options (PRESET_FIELDS' 3-part paths) says who reads it."""
    sections = {flag for flag, path in PRESET_FIELDS.items() if len(path) == 3}
    assert sections <= set(METHOD_FLAGS) <= set(PRESET_FIELDS)
    named = {m for methods in (*METHOD_FLAGS.values(), *START_METHODS.values()) for m in methods}
    assert named <= set(CHOICES["method"]) and set(START_METHODS) == set(CHOICES["dec_start"])
    from jaxae.cluster import METHODS

    assert set(REFINING) == {name for name, m in METHODS.items() if m.refines_encoder}
