"""Checkpoint directory layout: discovery never picks a partial save; marker, pruning, metadata."""

from __future__ import annotations

import json

import pytest

from megatron_lwz.checkpoint import layout
from megatron_lwz.checkpoint.layout import CheckpointError, CheckpointMeta


def fake_checkpoint(root, step, missing=None, name=None):
    """A directory with the files that make a checkpoint complete (``missing`` left out)."""
    path = root / (name or (layout.RELEASE if step == "release" else layout.iteration_name(step)))
    path.mkdir(parents=True)
    for file in (".metadata", "metadata.json"):
        if file != missing:
            (path / file).write_text("x")
    if missing != layout.META:
        layout.write_meta(path, CheckpointMeta(step=0 if step == "release" else step))
    return path


def test_marker_wins_over_newer_complete_directory(tmp_path):
    fake_checkpoint(tmp_path, 3)
    fake_checkpoint(tmp_path, 6)  # renamed into place, but the save was killed before the marker update
    layout.write_text_atomic(tmp_path / layout.MARKER, "3\n")
    assert layout.latest_checkpoint(tmp_path).name == "iter_0000003"


@pytest.mark.parametrize("missing", [".metadata", "metadata.json", layout.META])
def test_incomplete_directories_are_never_picked(tmp_path, missing):
    fake_checkpoint(tmp_path, 3)
    fake_checkpoint(tmp_path, 9, missing=missing)
    fake_checkpoint(tmp_path, 12, name=".tmp.iter_0000012")  # even a complete-looking temp dir
    assert layout.latest_checkpoint(tmp_path).name == "iter_0000003"  # no marker: newest complete
    layout.write_text_atomic(tmp_path / layout.MARKER, "9")  # a marker naming a partial dir
    assert layout.latest_checkpoint(tmp_path).name == "iter_0000003"
    assert layout.missing_files(tmp_path / "iter_0000009") == [missing]
    assert [p.name for p in layout.list_checkpoints(tmp_path)] == ["iter_0000003"]


def test_no_checkpoint(tmp_path):
    assert layout.latest_checkpoint(tmp_path / "nope") is None
    assert layout.latest_checkpoint(tmp_path) is None
    (tmp_path / "iter_0000001").mkdir()
    assert layout.latest_checkpoint(tmp_path) is None


def test_release_marker_and_direct_path(tmp_path):
    release = fake_checkpoint(tmp_path, "release")
    layout.write_text_atomic(tmp_path / layout.MARKER, "release\n")
    assert layout.latest_checkpoint(tmp_path) == release
    assert layout.latest_checkpoint(release) == release  # a checkpoint directory itself
    layout.write_text_atomic(tmp_path / layout.MARKER, "garbage")
    with pytest.raises(CheckpointError, match="expected an iteration number"):
        layout.latest_checkpoint(tmp_path)


def test_publish_is_rename_then_marker_and_prune_keeps_newest(tmp_path):
    for step in (1, 2, 3):
        tmp = layout.tmp_dir_for(tmp_path, layout.iteration_name(step))
        tmp.parent.mkdir(exist_ok=True)
        fake_checkpoint(tmp_path, step).rename(tmp)
        layout.publish(tmp, tmp_path / layout.iteration_name(step), str(step))
        assert layout.read_marker(tmp_path).name == layout.iteration_name(step)
        assert not tmp.exists()
    release = fake_checkpoint(tmp_path, "release")
    removed = layout.prune(tmp_path, keep_last=2)
    assert [p.name for p in removed] == ["iter_0000001"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["iter_0000002", "iter_0000003", "release", layout.MARKER])
    assert layout.prune(tmp_path, keep_last=0) == [] and release.exists()
    layout.write_text_atomic(tmp_path / layout.MARKER, "2")
    assert layout.prune(tmp_path, keep_last=1) == []  # the marker's target is protected


def test_publish_over_existing_directory(tmp_path):
    old = fake_checkpoint(tmp_path, 5)
    (old / "old-file").write_text("old")
    tmp = layout.tmp_dir_for(tmp_path, "iter_0000005")
    tmp.mkdir()
    (tmp / "new-file").write_text("new")
    layout.publish(tmp, old, "5")
    assert sorted(p.name for p in old.iterdir()) == ["new-file"]
    assert not any(p.name.startswith(layout.TMP_PREFIX) for p in tmp_path.iterdir())


def test_stale_tmp_removed_and_meta_round_trip(tmp_path):
    (tmp_path / ".tmp.iter_0000004").mkdir()
    (tmp_path / ".tmp.iter_0000004" / "__0_0.distcp").write_text("partial")
    assert [p.name for p in layout.remove_stale_tmp(tmp_path)] == [".tmp.iter_0000004"]
    meta = CheckpointMeta(step=7, data_state={"epoch": 1, "offsets": [1, 2]}, arch={"hidden_size": 64})
    layout.write_meta(tmp_path, meta)
    data = json.loads((tmp_path / layout.META).read_text())
    data["from_the_future"] = True
    (tmp_path / layout.META).write_text(json.dumps(data))
    assert layout.read_meta(tmp_path) == meta
    with pytest.raises(CheckpointError, match="JSON-serialisable"):
        layout.write_meta(tmp_path, CheckpointMeta(data_state={"x": object()}))
    with pytest.raises(CheckpointError, match="not a megatron_lwz checkpoint"):
        layout.read_meta(tmp_path / "missing")
