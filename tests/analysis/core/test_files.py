"""The one atomic-write helper: all or nothing, readable by the web process, temp files cleaned up."""
from __future__ import annotations

import os
import stat

import pytest

from analysis.core.files import atomic_path, atomic_write_bytes, atomic_write_text, publish_folder


def test_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # the web process may run as another user
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".table.parquet.")
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]


def test_rename_is_fsynced_with_its_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    atomic_write_text(tmp_path / "x.txt", "x")
    assert any(s.endswith(".tmp") for s in synced) and str(tmp_path) in synced


def test_publish_folder_swaps_out_an_existing_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    staging = tmp_path / "run.tmp-1"
    staging.mkdir()
    atomic_write_text(staging / "summary.json", "{}")
    publish_folder(staging, out)
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
