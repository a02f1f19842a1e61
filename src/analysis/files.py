"""Writing files so that nothing is lost: a reader sees the old file or the new one, never
half of one.

Every file the suite produces (datasets, feature caches, checkpoints, generated signals,
result tables, the table of contents) goes through :func:`atomic_write`: the content is
written to a temporary file in the target's folder, flushed to disk, and renamed over the
target (``os.replace`` is atomic within a file system). An interrupted write leaves the
previous file, and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator


def refuse_existing(paths, overwrite: bool) -> None:
    """Raise ``FileExistsError`` naming every path of ``paths`` that exists, unless ``overwrite``."""
    if overwrite:
        return
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        raise FileExistsError(f"refusing to overwrite existing data file(s) {existing}; "
                              "pass overwrite=True to replace them")


def atomic_write(target: str | Path, write: Callable[[IO[bytes]], Any], *,
                 overwrite: bool = False) -> Path:
    """Write ``target`` through a temporary file in the same folder, then rename it.

    Parameters
    ----------
    target : path
        Final file name; its folder must exist.
    write : callable
        Called with a binary file object open for writing.
    overwrite : bool
        If False and ``target`` exists, raise ``FileExistsError`` (checked again right
        before the rename, to narrow the window for a concurrent writer). Raw data are
        written with ``overwrite=False``; caches and records that are meant to be replaced
        with ``True``.
    """
    target = Path(target)
    refuse_existing([target], overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        refuse_existing([target], overwrite)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(target: str | Path, text: str) -> Path:
    """Replace ``target`` with ``text`` (UTF-8) atomically."""
    return atomic_write(target, lambda fh: fh.write(text.encode("utf-8")), overwrite=True)


def atomic_save(target: str | Path, save: Callable[[Path], Any], *, overwrite: bool = False
                ) -> Path:
    """:func:`atomic_write` for writers that want a path, not a file object (MNE's
    ``Epochs.save``, ``write_info``): ``save`` writes into a scratch folder under the
    target's name (MNE checks the name's ending), whose bytes then go through
    :func:`atomic_write`."""
    target = Path(target)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / target.name
        save(scratch)
        return atomic_write(target, lambda fh: fh.write(scratch.read_bytes()),
                            overwrite=overwrite)


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the ``with``
    block; another process (or another open of the file) asking for it waits until it is
    released. The lock goes with the process: one that dies releases it.

    Two notebooks that need the same trained model at once (the book runs two pages at a
    time) thereby train it once: the second waits, then loads what the first wrote.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
