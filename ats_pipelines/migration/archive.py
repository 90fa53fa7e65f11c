"""Archiving verified originals: a move into the archive folder, never a deletion of data.

Only called after verification passed. Within one filesystem the move is a rename; across
filesystems the file is copied, flushed and checked against its checksum before the original
is unlinked. An existing file in the archive is never overwritten.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

_BLOCK = 1 << 20


def file_checksum(path: Path) -> str:
    """sha256 of the file's bytes: the identity of a file version in the ledger."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


class ArchiveError(RuntimeError):
    """The original could not be archived; it is left where it was."""


def archive_target(archive_dir: Path, relative: str, batch_id: int) -> Path:
    target = archive_dir / relative
    if target.exists():
        target = target.with_name(f"{target.name}.batch{batch_id}")
    if target.exists():
        raise ArchiveError(f"archive target {target} already exists")
    return target


def move_to_archive(source: Path, target: Path, checksum: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # fails if target exists: no overwrite, even in a race
        source.unlink()
        return target
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise ArchiveError(f"cannot move {source} to {target}: {exc}") from exc
    partial = target.with_name(f".{target.name}.partial")
    shutil.copy2(source, partial)
    with partial.open("rb") as fh:
        os.fsync(fh.fileno())
    if file_checksum(partial) != checksum:
        partial.unlink()
        raise ArchiveError(f"copy of {source} in the archive does not match its checksum")
    if target.exists():
        partial.unlink()
        raise ArchiveError(f"archive target {target} appeared meanwhile")
    partial.rename(target)
    source.unlink()
    return target
