"""jaxae._files: atomic writes (a temporary name, then one rename) and same-file checks."""

import os

import numpy as np
import pytest

from jaxae._files import atomic_path, atomic_write, same_file, save_npz, temporary_name


def test_atomic_path_renames_only_a_complete_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_path(target) as tmp:
        assert tmp == temporary_name(target) and tmp.parent == tmp_path
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # readers see the old file until the rename
    assert target.read_bytes() == b"new" and not tmp.exists()


def test_atomic_path_keeps_the_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half-way"), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("half-way")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_path_cleanup_never_hides_the_error(tmp_path, monkeypatch):
    real_unlink = type(tmp_path).unlink

    def unlink(self, missing_ok=False):  # as on a read-only file system: EROFS
        if ".tmp-" in self.name:
            raise OSError(30, "Read-only file system")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(type(tmp_path), "unlink", unlink)
    with pytest.raises(RuntimeError, match="the real cause"), atomic_path(tmp_path / "x"):
        raise RuntimeError("the real cause")


def test_atomic_write_and_save_npz(tmp_path):
    atomic_write(tmp_path / "a.txt", b"hello")
    assert (tmp_path / "a.txt").read_bytes() == b"hello"
    x = np.arange(6, dtype=np.uint8).reshape(2, 3)
    save_npz(tmp_path / "cache.npz", x=x, y=np.array([1, 2]))
    # Exactly the name asked for: np.savez would append ".npz" to a temporary name.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "cache.npz"]
    with np.load(tmp_path / "cache.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["x"], x)
        assert npz["y"].tolist() == [1, 2]
    with pytest.raises(ValueError):  # never pickles
        save_npz(tmp_path / "o.npz", x=np.array([None], dtype=object))
    assert not (tmp_path / "o.npz").exists() and not list(tmp_path.glob(".*tmp-*"))


def test_same_file_sees_through_links(tmp_path):
    a = tmp_path / "a"
    a.write_bytes(b"1")
    (tmp_path / "sym").symlink_to(a)
    os.link(a, tmp_path / "hard")
    (tmp_path / "other").write_bytes(b"1")
    assert same_file(a, a) and same_file(a, tmp_path / "sym") and same_file(a, tmp_path / "hard")
    assert not same_file(a, tmp_path / "other")
    assert not same_file(a, tmp_path / "missing") and not same_file(tmp_path / "missing", a)
