import json

import jax
import numpy as np
import pytest
from flax import serialization

from jaxae.checkpoint import FILENAME, checksum, load_checkpoint
from jaxae.config import TrainConfig
from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError
from jaxae.rundir import load
from tests.helpers import save_trained


@pytest.fixture
def saved(tmp_path, trained):
    return save_trained(tmp_path, trained)


def test_round_trip(saved, trained):
    ds, model_config, result = trained
    ckpt = load_checkpoint(saved)
    assert ckpt.model_config == model_config and ckpt.train_config == TrainConfig.tiny()
    assert ckpt.epoch == 3
    # One model is saved with its model axis (M = 1).
    np.testing.assert_array_equal(ckpt.loss_history, result.loss_history[None])
    for a, b in zip(jax.tree_util.tree_leaves(ckpt.state), jax.tree_util.tree_leaves(result.state)):
        np.testing.assert_array_equal(a, np.asarray(b)[None])
    np.testing.assert_array_equal(
        load(saved).encode(ds.images), Encoder(result.state.params, model_config).encode(ds.images)
    )
    assert not [p for p in saved.iterdir() if p.name != FILENAME]  # no temporary files left


def _rewrite(path, mutate, *, sign=True):
    """Change a saved checkpoint's meta or arrays, and sign it again (unless not ``sign``)."""
    outer = serialization.msgpack_restore((path / FILENAME).read_bytes())
    payload = {"meta": outer["meta"], **serialization.msgpack_restore(outer["body"])}
    mutate(payload)
    body = serialization.msgpack_serialize(
        {"loss_history": payload["loss_history"], "state": payload["state"]}
    )
    sha = checksum(payload["meta"], body) if sign else outer["sha256"]
    outer = {"meta": payload["meta"], "body": body, "sha256": sha}
    (path / FILENAME).write_bytes(serialization.msgpack_serialize(outer))


def _meta(payload, **changes):
    payload["meta"] = json.dumps({**json.loads(payload["meta"]), **changes})


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p: _meta(p, format_version=99), "checkpoint format 99"),
        (lambda p: _meta(p, format="other"), "not a jaxae checkpoint"),
        (
            lambda p: _meta(
                p, model={"input_dim": 64, "hidden": [32], "code_dim": 8, "dtype": "float32"}
            ),
            "damaged",
        ),
        (
            lambda p: p["state"]["params"]["params"]["encoder_code"].update(
                bias=np.zeros(3, np.float32)
            ),
            "encoder_code.*expected float32",
        ),
        (
            lambda p: p["state"]["params"]["params"]["encoder_code"].update(
                bias=np.zeros(8, np.int32)
            ),
            "int32",
        ),
        (lambda p: p["state"].pop("opt_state"), "damaged"),
    ],
)
def test_refuses_mismatched_checkpoints(saved, mutate, match):
    _rewrite(saved, mutate)
    with pytest.raises(JaxaeError, match=match):
        load_checkpoint(saved)


@pytest.mark.parametrize("bit", [0, 7, 100, -1])
def test_a_flipped_bit_is_refused(saved, bit):
    # One bit of the arrays, unsigned, as a disk or a copy might flip it.
    def flip(p):
        layer = p["state"]["params"]["params"]["encoder_code"]
        kernel = np.array(layer["kernel"])
        kernel.view(np.uint8).reshape(-1)[bit] ^= 1
        layer["kernel"] = kernel

    _rewrite(saved, flip, sign=False)
    with pytest.raises(JaxaeError, match="checksum does not match"):
        load_checkpoint(saved)


def test_non_finite_parameters_are_refused(saved):
    def nan(p):
        layer = p["state"]["params"]["params"]["encoder_code"]
        kernel = np.array(layer["kernel"])
        kernel.reshape(-1)[0] = np.nan
        layer["kernel"] = kernel

    _rewrite(saved, nan)  # signed: only the finiteness check can catch it
    with pytest.raises(JaxaeError, match="non-finite parameters"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    "data", [b"", b"not msgpack at all", b"\x93\x01\x02\x03", b"\x81\xa4meta\xa2{}"]
)
def test_refuses_garbage(tmp_path, data):
    (tmp_path / FILENAME).write_bytes(data)
    with pytest.raises(JaxaeError, match="not a jaxae checkpoint"):
        load_checkpoint(tmp_path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(JaxaeError, match="cannot read checkpoint"):
        load(tmp_path)
