"""``omniembed.atomic.atomic_path``: the one way the package writes a file or a folder in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from omniembed.atomic import atomic_path


def test_a_file_is_replaced_whole_and_no_temporary_is_left(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("one")
        assert not target.exists()  # nothing visible until the block succeeds
    with atomic_path(target) as tmp:
        tmp.write_text("two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_folder_is_replaced_or_kept_as_asked(tmp_path: Path) -> None:
    target = tmp_path / "graph"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "model.onnx").write_text("first")
    with atomic_path(target, directory=True) as tmp:
        (tmp / "model.onnx").write_text("second")
    assert (target / "model.onnx").read_text() == "second"
    with atomic_path(target, directory=True, replace=False) as tmp:  # another writer finished first: keep it
        (tmp / "model.onnx").write_text("third")
    assert (target / "model.onnx").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["graph"]
