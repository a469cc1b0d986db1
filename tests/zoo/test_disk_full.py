"""A full disk while training: one clear message naming the file, nothing partial left."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from flatness.cli import main
from flatness.zoo.files import DiskFullError, atomic_path, write_text_atomic

from .test_cli import SMALL


def _full_disk_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """torch.save on a full disk, as torch 2.13 fails (measured on a full tmpfs).

    Part of the file is written; the failed write raises (to a path: C++'s
    ``basic_ios::clear``, no errno; to a file object: ``OSError(ENOSPC)``); then torch's
    zip writer raises ``unexpected pos`` while that error is handled.
    """
    try:
        if isinstance(f, str | os.PathLike):
            with open(f, "wb") as handle:
                handle.write(b"PK\x03\x04 partial")
            raise RuntimeError("basic_ios::clear: iostream error")
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    finally:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def test_atomic_write_on_a_full_disk_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "manifest.toml"
    target.write_text("old")

    def full(self: Path, *args: Any, **kwargs: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiskFullError) as info:
        write_text_atomic(target, "new")
    assert info.value.errno == errno.ENOSPC
    assert str(info.value).startswith(f"disk full while writing {target}")
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.toml"]
    monkeypatch.undo()
    assert target.read_text() == "old"


def test_other_errors_pass_unchanged(tmp_path: Path) -> None:
    with pytest.raises(PermissionError), atomic_path(tmp_path / "a.txt"):
        raise PermissionError(errno.EACCES, "denied")
    assert not list(tmp_path.iterdir())


def test_train_on_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch, "save", _full_disk_save)
    out = tmp_path / "run"
    argv = ["train", "--network", "tiny_mlp", *SMALL, "--updates", "2", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert lines[0].startswith(f"flatness train: error: disk full while writing {out / 'final.pt'}")
    assert "free space" in lines[0]
    assert not out.exists() or not list(out.iterdir())  # no partial checkpoint, no temp file
