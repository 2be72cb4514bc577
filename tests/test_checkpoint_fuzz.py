"""Property-based fuzzing of checkpoints (bytes, structure, meta and state).

The contract under test and the harness are in tests/strategies.py. Each bug the fuzz found
is pinned by a test at the end of this file ("Was bug N").
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from pathlib import Path

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from flax import serialization
from hypothesis import event, given

from jaxae.checkpoint import FILENAME, load_checkpoint
from jaxae.errors import JaxaeError
from tests.helpers import save_trained
from tests.strategies import fuzz, outcome

# --- checkpoints --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, trained):
    """(bytes of a real checkpoint, its decoded payload, the Checkpoint it loads as)."""
    folder = save_trained(tmp_path_factory.mktemp("checkpoint"), trained)
    data = (folder / FILENAME).read_bytes()
    return data, flat(data), load_checkpoint(folder)


def flat(data: bytes) -> dict:
    """A checkpoint's meta, loss history and state in one dict, for mutating."""
    outer = serialization.msgpack_restore(data)
    return {"meta": outer["meta"], **serialization.msgpack_restore(outer["body"])}


def pack(payload: dict) -> bytes:
    """``flat``'s dict as checkpoint bytes, signed again so only the mutation is tested."""
    from jaxae.checkpoint import checksum

    body = serialization.msgpack_serialize({k: v for k, v in payload.items() if k != "meta"})
    meta = payload["meta"]
    sha = checksum(meta, body) if isinstance(meta, str) else ""
    return serialization.msgpack_serialize({"meta": meta, "body": body, "sha256": sha})


def load_mutated(data: bytes, reference) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FILENAME
        path.write_bytes(data)
        ckpt, _ = outcome(lambda: load_checkpoint(tmp), path)
    if ckpt is None:
        return
    event("loaded")
    tree = jax.tree_util.tree_structure
    assert tree(ckpt.state) == tree(reference.state)
    for got, want in zip(
        jax.tree_util.tree_leaves(ckpt.state), jax.tree_util.tree_leaves(reference.state)
    ):
        got, want = np.asarray(got), np.asarray(want)
        assert (got.shape, got.dtype) == (want.shape, want.dtype)


def msgpack_values(scalars=None):
    scalars = scalars or (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats()
        | st.text(max_size=8)
        | st.binary(max_size=8)
        | hnp.arrays(st.sampled_from(["f4", "i4", "u1", "f8"]), hnp.array_shapes(min_dims=0))
    )
    return st.recursive(
        scalars,
        lambda kids: (
            st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
        ),
        max_leaves=12,
    )


# Infinities and integers beyond float range too (json writes inf as Infinity).
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.sampled_from([10**400, -(10**400)])
    | st.floats()
    | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=8,
)


@fuzz(100)
@given(data=st.data())
def test_checkpoint_bytes_mutated(checkpoint, data):
    original, _, reference = checkpoint
    blob = bytearray(original)
    mutation = data.draw(
        st.sampled_from(["truncate", "flip bytes", "flip meta bytes", "garbage after", "random"])
    )
    event(f"input: {mutation}")
    if mutation == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif mutation.startswith("flip"):
        end = 400 if mutation == "flip meta bytes" else len(blob)
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, end - 1))] ^= data.draw(st.integers(1, 255))
    elif mutation == "garbage after":
        blob += data.draw(st.binary(min_size=1, max_size=64))
    else:
        blob = bytearray(data.draw(st.binary(max_size=512)))
    load_mutated(bytes(blob), reference)


@fuzz(80)
@given(data=st.data())
def test_checkpoint_of_wrong_structure(checkpoint, data):
    _, payload, reference = checkpoint
    shape = data.draw(st.sampled_from(["any value", "random meta", "real meta, random rest"]))
    event(f"input: {shape}")
    if shape == "any value":
        value = data.draw(msgpack_values())
    else:
        meta = payload["meta"] if shape.startswith("real") else json.dumps(data.draw(JSON_VALUES))
        rest = data.draw(
            st.dictionaries(st.sampled_from(["loss_history", "state"]), msgpack_values())
        )
        value = {"meta": meta, **rest}
    load_mutated(serialization.msgpack_serialize(value), reference)


def _meta_paths(meta: dict) -> list[tuple[str, ...]]:
    paths = [(k,) for k in meta]
    return paths + [(k, f) for k in meta if isinstance(meta[k], dict) for f in meta[k]]


@fuzz(120)
@given(data=st.data())
def test_checkpoint_meta_altered(checkpoint, data):
    _, payload, reference = checkpoint
    meta = json.loads(payload["meta"])
    op = data.draw(st.sampled_from(["delete", "wrong value", "extra field", "negative"]))
    if op == "delete":
        where = data.draw(st.sampled_from(_meta_paths(meta)))
    elif op == "extra field":
        parent = data.draw(
            st.sampled_from([(), *[(k,) for k in meta if isinstance(meta[k], dict)]])
        )
        where = (*parent, data.draw(st.text(min_size=1, max_size=8)))
    else:
        where = data.draw(st.sampled_from(_meta_paths(meta)))
    event(f"input: {op} {'.'.join(where[:-1] if op == 'extra field' else where) or 'meta'}")
    node = meta
    for key in where[:-1]:
        node = node[key]
    if op == "delete":
        del node[where[-1]]
    elif op == "negative":
        node[where[-1]] = data.draw(st.integers(-(2**40), -1))
    else:
        node[where[-1]] = data.draw(JSON_VALUES)
    altered = {**payload, "meta": json.dumps(meta)}
    load_mutated(pack(altered), reference)


def _state_paths(tree, prefix=()):
    if not isinstance(tree, dict):
        return [prefix]
    paths = [prefix] if prefix else []
    for key, value in tree.items():
        paths += _state_paths(value, (*prefix, key))
    return paths


@fuzz(120)
@given(data=st.data())
def test_checkpoint_state_altered(checkpoint, data):
    _, payload, reference = checkpoint
    state = serialization.msgpack_restore(serialization.msgpack_serialize(payload["state"]))
    where = data.draw(st.sampled_from(_state_paths(state)))
    node = state
    for key in where[:-1]:
        node = node[key]
    old = node[where[-1]]
    ops = ["replace", "delete", "extra key"] + (
        ["retype", "reshape"] if hasattr(old, "dtype") else []
    )
    op = data.draw(st.sampled_from(ops))
    event(f"input: {op} {'leaf' if hasattr(old, 'dtype') else 'subtree'}")
    if op == "replace":
        new = data.draw(msgpack_values())
        node[where[-1]] = new
    elif op == "delete":
        del node[where[-1]]
    elif op == "extra key":
        target = old if isinstance(old, dict) else node
        target[data.draw(st.text(min_size=1, max_size=8))] = data.draw(msgpack_values())
    elif op == "retype":
        dtype = data.draw(st.sampled_from(["f2", "f8", "i4", "u1", "?", "c8"]))
        node[where[-1]] = np.asarray(old).astype(dtype)
    else:
        old = np.asarray(old)
        node[where[-1]] = data.draw(
            st.sampled_from(
                [old.reshape(-1), old[None], old.reshape(-1)[:-1], np.zeros(0, old.dtype)]
            )
        )
    altered = {**payload, "state": state}
    load_mutated(pack(altered), reference)


# --- the CLI ------------------------------------------------------------------------------


def test_checkpoint_loss_history_beyond_float32(tmp_path, checkpoint):
    """Was bug 5, in checkpoints: load_checkpoint casts loss_history to float32 without
    np.errstate, so values beyond float32 warn (an exception under -W error).
    """
    _, payload, _ = checkpoint
    altered = {**payload, "loss_history": np.array([1e300, 0.0, 0.0])}
    (tmp_path / FILENAME).write_bytes(pack(altered))
    with contextlib.suppress(JaxaeError):
        load_checkpoint(tmp_path)


def _rewrite_checkpoint(tmp_path, payload, *, meta=None, state=None) -> Path:
    altered = dict(payload)
    if meta is not None:
        altered["meta"] = meta
    if state is not None:
        altered["state"] = state
    (tmp_path / FILENAME).write_bytes(pack(altered))
    return tmp_path / FILENAME


@pytest.mark.parametrize(
    "field, value",
    [
        ("jaxae_version", None),
        ("epoch", "Infinity"),
        ("chunk", "1e999"),
        ("selected", "-Infinity"),
        ("models", f"[[0, {10**400}]]"),
    ],
)
def test_checkpoint_meta_values(tmp_path, checkpoint, field, value):
    """Was bugs 7 and 8: load_checkpoint reads meta['jaxae_version'] outside its try (KeyError) and
    does not catch the OverflowError of int(inf) or float(10**400).
    """
    _, payload, _ = checkpoint
    meta = json.loads(payload["meta"])
    if value is None:
        del meta[field]
        text = json.dumps(meta)
    else:
        meta[field] = "PLACEHOLDER"
        text = json.dumps(meta).replace('"PLACEHOLDER"', value)
    path = _rewrite_checkpoint(tmp_path, payload, meta=text)
    with pytest.raises(JaxaeError, match=re.escape(str(path))):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "change", ["last leaf None", "last leaf {}", "leaf in a list", "leaf in a dict"]
)
def test_checkpoint_tree_is_compared(tmp_path, checkpoint, change):
    """Was bug 9: _check_like zips the state's leaves with the template's, so a leaf wrapped in a
    list or dict, or a last leaf that is None, {} or [], loads with the wrong tree; compare
    jax.tree_util.tree_structure(state) with the template's first.
    """
    _, payload, reference = checkpoint
    state = serialization.msgpack_restore(serialization.msgpack_serialize(payload["state"]))
    keys = [k for k, _ in jax.tree_util.tree_leaves_with_path(reference.state)]
    where = _dict_path(keys[-1] if change.startswith("last") else keys[0])
    leaf = _get(state, where)
    new = {"last leaf None": None, "last leaf {}": {}, "leaf in a list": [leaf]}.get(
        change, {"a": leaf}
    )
    _get(state, where[:-1])[where[-1]] = new
    _rewrite_checkpoint(tmp_path, payload, state=state)
    try:
        ckpt = load_checkpoint(tmp_path)
    except JaxaeError as e:
        assert "damaged" in str(e)
        return
    tree = jax.tree_util.tree_structure
    assert tree(ckpt.state) == tree(reference.state)  # loaded: then with the template's tree


def _dict_path(keys) -> tuple[str, ...]:
    """A JAX key path as the keys of flax's state dict (fields by name, tuple items "0", ...)."""
    tu = jax.tree_util
    return tuple(
        k.name
        if isinstance(k, tu.GetAttrKey)
        else str(k.idx)
        if isinstance(k, tu.SequenceKey)
        else k.key
        for k in keys
    )


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree
