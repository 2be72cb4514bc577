"""Property-based fuzzing of ``jaxae run``'s flags.

The contract under test and the harness are in tests/strategies.py. Each bug the fuzz found
is pinned by a test at the end of this file ("Was bug N").
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import tempfile
import warnings
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import event, given

from jaxae.cli import main
from jaxae.config import ClusterConfig
from jaxae.errors import JaxaeError
from tests.helpers import run_until_start
from tests.strategies import fuzz, kind

# --- checkpoints --------------------------------------------------------------------------

BIG = 10**20
INVALID_INTS = st.sampled_from([0, -1, 2**31, 2**63, BIG]) | st.integers(max_value=0)
DATASETS = ["TEXT", "MISSING", "BAD IDX", "NAN NPZ", "", "/", "~", "/dev/null"]
# flag: (valid values, invalid ones). Valid values train a tiny model on 40 digits in batches
# of 4, shapes that compile once for the whole file (lr is traced, not compiled in).
RUN_FLAGS = {
    "--dataset": (st.just("digits"), st.sampled_from(DATASETS)),
    "--n": (st.just(40), INVALID_INTS | st.integers(1798, BIG)),
    "--epochs": (st.just(1), st.sampled_from([0, -1])),
    "--batch-size": (st.just(4), INVALID_INTS | st.integers(41, BIG)),
    "--lr": (
        st.sampled_from([0.01, 5e-324]) | st.floats(1e-6, 0.1),
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e30]) | st.floats(max_value=0),
    ),
    "--hidden": (st.just(4), INVALID_INTS),
    "--code-dim": (st.just(2), INVALID_INTS),
    "--clusters": (st.sampled_from([3, 1]), INVALID_INTS | st.integers(41, BIG)),
    "--n-init": (st.just(1), INVALID_INTS),
}
RUN_FILES = {
    "report.json", "index.html", "checkpoint.msgpack", "clusters.png", "loss.png",
    "reconstructions.png",
}  # fmt: skip


@st.composite
def run_flags(draw, tmp: Path, scenarios: list[str]):
    """(scenario, argv, the flag given an unparseable value or None)."""
    scenario = draw(st.sampled_from(scenarios))
    bad = set()
    if scenario == "one bad flag":
        bad = {draw(st.sampled_from(list(RUN_FLAGS)))}
    elif scenario == "several bad flags":
        bad = set(draw(st.lists(st.sampled_from(list(RUN_FLAGS)), min_size=2, unique=True)))
    flags = {f: draw(invalid if f in bad else valid) for f, (valid, invalid) in RUN_FLAGS.items()}
    dataset = flags["--dataset"]
    if dataset == "TEXT":
        text = st.text(max_size=20).filter(lambda s: s.strip().lower() not in ("digits", "mnist"))
        flags["--dataset"] = draw(text)
    elif dataset in ("MISSING", "BAD IDX", "NAN NPZ"):
        names = {"MISSING": "missing.npz", "BAD IDX": "bad.idx", "NAN NPZ": "nan.npz"}
        flags["--dataset"] = str(tmp / names[dataset])
    garbled = None
    if scenario == "unparseable":  # any string parses as a dataset
        garbled = draw(st.sampled_from([f for f in RUN_FLAGS if f != "--dataset"]))
        # --lr takes floats and comma-separated grids, --hidden comma-separated ints, the
        # others one int. Python 3.11's argparse turns --epochs=-- into epochs=[], which
        # main refuses like argparse would.
        unparseable = ["", "abc", "0x10", "-", "--", "1,x"]
        unparseable += [] if garbled == "--lr" else ["1.5", "1e3"]
        unparseable += [] if garbled in ("--lr", "--hidden") else ["1,2"]
        flags[garbled] = draw(st.sampled_from(unparseable))
    argv = ["run", "--no-progress", "--out", str(tmp / "out"), "--data-dir", str(tmp / "cache")]
    argv += [f"{flag}={value}" for flag, value in flags.items()]
    return f"{scenario}{'' if len(bad) != 1 else ' ' + next(iter(bad))}", argv, garbled


def check_run(tmp: Path, scenario: str, argv: list[str], garbled: str | None) -> None:
    """Runs ``main(argv)``: a complete run folder, or one error line and no folder."""
    event(f"input: {scenario}")
    out, err = tmp / "out", io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        try:
            status = main(argv)
        except SystemExit as e:  # argparse: an unparseable value
            assert garbled is not None and e.code == 2, argv
            event(f"argparse error for {garbled}")
            return
    assert garbled is None, argv
    for w in caught:
        event(f"warning: {w.category.__name__}: {kind(str(w.message))[:60]}")
    err = err.getvalue()
    assert status in (0, 2), (argv, status, err)
    if status == 2:
        assert err.count("\n") == 1 and err.endswith("\n"), (argv, err)
        assert err.startswith("jaxae run: error: ") and "Traceback" not in err, (argv, err)
        assert not out.exists(), argv
        event(f"status 2: {kind(err.removeprefix('jaxae run: error: ').strip(), tmp)}")
    else:
        assert RUN_FILES <= {p.name for p in out.iterdir()}, argv
        json.loads((out / "report.json").read_text())
        event("status 0: a complete run folder")
    assert not list(tmp.glob(".out*")), argv  # nothing half-written beside it


@contextlib.contextmanager
def run_sandbox():
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "bad.idx").write_bytes(b"\x12\x34\x56\x78" + bytes(100))
        np.savez(tmp / "nan.npz", x=np.full((10, 4), np.nan))
        yield tmp


# Two tests, so that a known share of the examples trains (a few seconds each).
@fuzz(2)
@given(data=st.data())
def test_run_with_valid_flags_gives_a_run_or_one_error_line(data):
    with run_sandbox() as tmp:
        check_run(tmp, *data.draw(run_flags(tmp, ["all valid"])))


@fuzz(50)
@given(data=st.data())
def test_run_with_bad_flags_gives_one_error_line(data):
    with run_sandbox() as tmp:
        scenarios = ["one bad flag", "one bad flag", "several bad flags", "unparseable"]
        check_run(tmp, *data.draw(run_flags(tmp, scenarios)))


def _run_status(tmp_path, *flags) -> tuple[int, str]:
    err = io.StringIO()
    argv = ["run", "--no-progress", "--out", str(tmp_path / "out"), "--n", "40", "--epochs", "1"]
    argv += ["--batch-size", "4", "--hidden", "4", "--code-dim", "2", "--clusters", "3"]
    argv += ["--n-init", "1", *flags]
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    return status, err.getvalue()


@pytest.mark.parametrize("seed", [-1, 2**70])
def test_cli_seed_out_of_range(tmp_path, seed):
    """Was bug 10: --seed is not range-checked: -1 or 2**32 train, then KMeans raises
    InvalidParameterError; 2**70 raises OverflowError in jax.random.key; tracebacks.
    """
    status, err = _run_status(tmp_path, f"--seed={seed}")
    assert status == 2 and err.count("\n") == 1


@pytest.mark.parametrize("flag", ["--hidden", "--code-dim"])
@pytest.mark.parametrize("size", [2**31, 10**20])
def test_cli_huge_layers_are_one_error_line(tmp_path, flag, size):
    """Was bug 11: 10**20 gave a traceback from JAX, 2**31 asked XLA for 512 GiB and hung."""
    status, err = _run_status(tmp_path, f"{flag}={size}")
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_n_init_has_an_upper_bound():
    """Was bug 12: n_init has no upper bound: --n-init 10**20 trains, then KMeans loops
    (practically) forever; cap it like ModelConfig caps the parameter count.
    """
    with pytest.raises(JaxaeError):
        ClusterConfig(n_init=10**20)


# --- every flag out of its range: refused under its name before anything is loaded ---------

BIG_INT = str(2**31)  # past every int32 counter on the device
# Flag -> values out of its range. A maximum that depends on the images (--n, --batch-size,
# --clusters, UMAP's --umap-dim and --umap-neighbors, --devices) is checked once they are
# loaded, still before a folder is made (test_run_bad_input); the rest are checked here.
OUT_OF_RANGE = {
    "--n": ["0", "-1"],
    "--epochs": ["0", "-1", BIG_INT],
    "--batch-size": ["0", "-1"],
    "--lr": ["nan", "inf", "-1", "0"],
    "--momentum": ["nan", "inf", "-0.5", "1.5"],
    "--shift": ["nan", "inf", "-0.1", "1"],
    "--rotate": ["nan", "inf", "-1", "181"],
    "--hidden": ["0", "-1", BIG_INT],
    "--code-dim": ["0", "-1", BIG_INT],
    "--init": ["nan", "zeros"],
    "--clusters": ["0", "-1"],
    "--n-init": ["0", "-1", "1001"],
    "--update-interval": ["0", "-1", BIG_INT],
    "--max-steps": ["0", "-1", BIG_INT],
    "--gamma": ["nan", "inf", "-1"],
    "--dec-tol": ["nan", "inf", "-1", "2"],
    "--dec-shift": ["nan", "inf", "-0.1", "1"],
    "--dec-rotate": ["nan", "inf", "-1", "181"],
    "--umap-dim": ["0", "-1"],
    "--umap-neighbors": ["1", "-1"],
    "--umap-min-dist": ["nan", "inf", "-1", "5"],
    "--umap-epochs": ["0", "-1", BIG_INT],
    "--gmm-reg-covar": ["nan", "inf", "-1"],
    "--seed": ["-1", str(2**32)],
    "--seeds": ["0", "-1"],
    "--devices": ["0", "-1", "nan"],
    "--checkpoint-every": ["0", "-1", BIG_INT],
    "--num-processes": ["0", "-1"],
    "--process-id": ["-1"],
    # Two values (H W), each its own argument: a list is passed as they are.
    "--image-size": [["0", "28"], ["28", "-1"], ["8192", "8192"]],
}
# What a flag needs beside it to be read at all: a method of METHOD_FLAGS, --distributed.
NEEDS = {"--gamma": ["--method", "idec"], "--umap-dim": ["--method", "umap-gmm"]}
NEEDS.update({f: ["--distributed"] for f in ("--num-processes", "--process-id")})


def _needs(flag: str) -> list[str]:
    from jaxae.cli.flags import METHOD_FLAGS

    methods = METHOD_FLAGS.get(flag.removeprefix("--").replace("-", "_"))
    return NEEDS.get(flag) or (["--method", methods[0]] if methods else [])


@pytest.mark.parametrize(
    ("flag", "value"), [(f, v) for f, values in OUT_OF_RANGE.items() for v in values]
)
def test_a_value_out_of_range_is_one_line_naming_its_flag(tmp_path, monkeypatch, flag, value):
    given = [flag, *value] if isinstance(value, list) else [f"{flag}={value}"]
    status, err = run_until_start(tmp_path, monkeypatch, *_needs(flag), *given)
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("jaxae run: error: "), err
    assert re.search(rf"(?<![\w-]){flag}(?![\w-])", err), err


def _parser():
    import argparse

    from jaxae.cli.run import add_args

    parser = argparse.ArgumentParser(prog="jaxae run")
    add_args(parser)
    return parser


@pytest.mark.parametrize(
    "flag", [a.option_strings[-1] for a in _parser()._actions if a.choices is not None]
)
def test_a_choice_out_of_its_list_names_its_flag(tmp_path, monkeypatch, flag):
    status, err = run_until_start(tmp_path, monkeypatch, *_needs(flag), f"{flag}=nope")
    assert status == 2, err
    assert f"argument {flag}: invalid choice: 'nope'" in err.splitlines()[-1], err


def test_every_numeric_flag_has_out_of_range_values():
    """A new flag of jaxae run that takes a number joins OUT_OF_RANGE."""
    numeric = {
        a.option_strings[-1]
        for a in _parser()._actions
        if a.option_strings and a.choices is None and a.nargs != 0
        and a.dest not in ("preset", "dataset", "out", "resume", "data_dir", "compilation_cache",
                           "coordinator")
    }  # fmt: skip
    assert numeric == set(OUT_OF_RANGE)
