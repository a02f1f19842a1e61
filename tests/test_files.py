"""Atomic writes: the target holds the old content or the new, never part of either."""

from __future__ import annotations

import json

import pytest

from analysis.files import atomic_save, atomic_write, atomic_write_text


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_writes_and_refuses_to_clobber_unless_asked(tmp_path):
    target = tmp_path / "data.bin"
    assert atomic_write(target, lambda fh: fh.write(b"raw")) == target
    assert target.read_bytes() == b"raw"
    with pytest.raises(FileExistsError, match="data.bin.*overwrite=True"):
        atomic_write(target, lambda fh: fh.write(b"other"))
    assert target.read_bytes() == b"raw"
    atomic_write(target, lambda fh: fh.write(b"new"), overwrite=True)
    assert target.read_bytes() == b"new" and leftovers(tmp_path) == []


def test_an_interrupted_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "record.json", json.dumps({"epoch": 3}))

    def half_then_fail(fh):
        fh.write(b'{"epo')
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing a checkpoint

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_fail, overwrite=True)
    assert json.loads(target.read_text()) == {"epoch": 3}
    assert leftovers(tmp_path) == []


def test_atomic_write_text_is_utf8(tmp_path):
    path = atomic_write_text(tmp_path / "units.txt", "µV")
    assert path.read_bytes() == "µV".encode("utf-8")


def test_atomic_save_gives_path_writers_the_target_name_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "signals-epo.fif"
    names = []

    def save(path):
        names.append(path.name)
        path.write_bytes(b"fif")

    assert atomic_save(target, save) == target and target.read_bytes() == b"fif"
    assert names == ["signals-epo.fif"] and leftovers(tmp_path) == []

    def fail(path):
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save(target, fail, overwrite=True)
    assert target.read_bytes() == b"fif" and sorted(p.name for p in tmp_path.iterdir()) == [
        "signals-epo.fif"]
    with pytest.raises(FileExistsError):
        atomic_save(target, save)
