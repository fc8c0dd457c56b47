"""Atomic file writes: the one helper every writer of a run, model, slide or record uses.

A reader never sees a half-written file, and a crash leaves either the old file or the new
one: the content goes to a temporary file in the destination's folder (same file system, so
the rename is atomic), is fsynced, renamed over the destination, and the folder is fsynced so
the rename itself survives a power cut. On any error the temporary file is removed and the
destination is untouched. Files are made readable by group and others (0644): the web process
may run as another user than the worker that wrote them.

`publish_folder` does the same for a folder built under a temporary name (a run folder).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

FILE_MODE = 0o644


def fsync_dir(folder: str | os.PathLike) -> None:
    """fsync a folder (its entries: a rename into it); a no-op where the platform refuses."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, mode: int = FILE_MODE) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on leaving the block without an error
    it is fsynced and renamed over `path` (then the folder is fsynced); on an error it is removed."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)  # mkstemp makes 0600
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def publish_folder(tmp: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Rename a finished folder `tmp` to `out_dir` (same parent), swapping out an existing one,
    and fsync the parent. The files inside must already be complete (written with this module)."""
    tmp, out_dir = Path(tmp), Path(out_dir)
    old = None
    if out_dir.exists():
        old = out_dir.parent / f"{out_dir.name}.old-{uuid.uuid4().hex}"
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    fsync_dir(out_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
