"""What a report or an export leaves on disk when it fails, and what a rebuild removes.

Issue 17, item 8: every output (report.md, report.html, figures, data/*.csv, the export
CSV/Parquet) is written to a temporary sibling and moved into place, so a writer that
fails mid-way (a full disk) leaves neither a partial file nor a temporary one.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure

from flatness.pipeline.measures import Record
from flatness.pipeline.store import ResultsStore, export_results
from flatness.report import build
from flatness.zoo.files import DiskFullError

N_BOOT = 50


def _frame() -> pd.DataFrame:
    rows = []
    for regime, batch, level in (("SB", 16, 0.0), ("LB", 256, 1.0)):
        for seed in (0, 1, 2):
            rows.append(
                {
                    "regime": regime,
                    "batch_size": batch,
                    "seed": seed,
                    "train_accuracy": 0.99,
                    "test_accuracy": 0.95 - 0.03 * level - 0.001 * seed,
                    "measure": "lambda_max",
                    "value": 1.0 + 4.0 * level + 0.1 * seed,
                }
            )
    return pd.DataFrame(rows)


def _full_disk(path: Any) -> OSError:
    """Write half a file at ``path`` (what a full disk leaves), return the error to raise."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("partial,")
    return OSError(errno.ENOSPC, "No space left on device")


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_csv_writer_failing_mid_way_leaves_no_partial_or_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_to_csv(self: pd.DataFrame, path: Any, *args: Any, **kwargs: Any) -> None:
        raise _full_disk(path)

    monkeypatch.setattr(pd.DataFrame, "to_csv", failing_to_csv)
    with pytest.raises(DiskFullError, match=r"disk full while writing .*scores\.csv"):
        build(_frame(), tmp_path, n_boot=N_BOOT)
    assert not [f for f in _files(tmp_path) if f.startswith("data/") or f.endswith(".tmp")]


def test_a_figure_failing_mid_way_leaves_no_partial_or_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_savefig(self: Figure, path: Any, *args: Any, **kwargs: Any) -> None:
        raise _full_disk(path)

    monkeypatch.setattr(Figure, "savefig", failing_savefig)
    with pytest.raises(DiskFullError, match=r"batch-size\.png"):
        build(_frame(), tmp_path, n_boot=N_BOOT)
    assert _files(tmp_path) == []


def test_a_page_failing_mid_way_leaves_no_partial_or_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Path.write_text

    def failing_write_text(self: Path, text: str, *args: Any, **kwargs: Any) -> int:
        if self.name.startswith(".report.html") or self.name == "report.html":
            raise _full_disk(self)
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing_write_text)
    with pytest.raises(DiskFullError, match=r"report\.html"):
        build(_frame(), tmp_path, n_boot=N_BOOT)
    files = _files(tmp_path)
    assert "report.html" not in files and not [f for f in files if f.endswith(".tmp")], files


def _store(path: Path) -> Path:
    with ResultsStore(path) as store:
        store.put_run("abc", "/runs/a.pt", regime="SB", batch_size=8, seed=0)
        assert store.claim("abc", "lambda_max", "{}").state == "claimed"
        store.finish(
            "abc",
            "lambda_max",
            "{}",
            [Record("", 3.0, 1e-6, "residual", True)],
            matvecs=1,
            seconds=0.1,
            device="cpu",
            dtype="float64",
            versions={},
            details={},
        )
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_an_export_failing_mid_way_leaves_no_partial_or_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    if suffix == ".parquet":
        pytest.importorskip("pyarrow", reason="pyarrow is in the dev extra; Parquet needs it")
    store = _store(tmp_path / "store" / "results.sqlite")
    out = tmp_path / "out"
    out.mkdir()

    def failing(self: pd.DataFrame, path: Any, *args: Any, **kwargs: Any) -> None:
        raise _full_disk(path)

    monkeypatch.setattr(pd.DataFrame, "to_csv" if suffix == ".csv" else "to_parquet", failing)
    with pytest.raises(DiskFullError, match=rf"disk full while writing .*results{suffix}"):
        export_results(store, out / f"results{suffix}")
    assert _files(out) == []


# ------------------------------------------------- item 9: a rebuild removes its own files


def _curves() -> pd.DataFrame:
    rows = [
        {"alpha": a, "split": split, "metric": metric, "value": 0.5 + a * a}
        for a in (-0.5, 0.0, 0.5, 1.0, 1.5)
        for split in ("train", "test")
        for metric in ("loss", "accuracy")
    ]
    return pd.DataFrame(rows).assign(
        sb_path="sb.pt", lb_path="lb.pt", sb="a" * 64, lb="b" * 64, label="SB vs LB", settings="{}"
    )


def test_a_rebuild_keeps_the_users_files_and_removes_only_its_own(tmp_path: Path) -> None:
    first = build(_frame(), tmp_path, n_boot=N_BOOT, curves=_curves())
    parametric = [p for p in first.figures if p.name.startswith("parametric-")]
    assert parametric and (tmp_path / ".flatness-report.json").is_file()
    mine = {
        "data/foo.csv": "a,b\n1,2\n",
        "data/table9.csv": "x\n1\n",
        "data/scores-old.csv": "x\n1\n",
        "figures/bar.png": "png",
        "figures/batch-size-9.png": "png",
        "figures/vs-test-accuracy-old.png": "png",
        "notes.md": "my notes",
    }
    for name, text in mine.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    second = build(_frame(), tmp_path, n_boot=N_BOOT)  # no parametric plot this time
    for name, text in mine.items():
        assert (tmp_path / name).read_text(encoding="utf-8") == text, name
    assert not any(p.exists() for p in parametric), "the earlier report's own figure stays"
    assert all(p.is_file() for p in (*second.figures, *second.data, second.html, second.markdown))


def test_a_forged_report_manifest_cannot_delete_files_outside_the_report(tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("keep", encoding="utf-8")
    out = tmp_path / "report"
    out.mkdir()
    (out / "keep").mkdir()
    (out / "keep" / "file.txt").write_text("keep", encoding="utf-8")
    (out / "link.txt").symlink_to(outside)
    listed = ["../precious.txt", str(outside), "keep/../../precious.txt", "keep", "link.txt", 3]
    (out / ".flatness-report.json").write_text(json.dumps({"files": listed}), encoding="utf-8")
    build(_frame(), out, n_boot=N_BOOT)
    assert outside.read_text(encoding="utf-8") == "keep"
    assert (out / "keep" / "file.txt").is_file() and (out / "link.txt").is_symlink()


def test_a_damaged_report_manifest_is_ignored(tmp_path: Path) -> None:
    (tmp_path / ".flatness-report.json").write_text("{not json", encoding="utf-8")
    report = build(_frame(), tmp_path, n_boot=N_BOOT)
    assert report.html.is_file()


def test_export_and_report_on_a_full_disk_say_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flatness.cli import main

    store = _store(tmp_path / "store" / "results.sqlite")

    def failing(self: pd.DataFrame, path: Any, *args: Any, **kwargs: Any) -> None:
        raise _full_disk(path)

    monkeypatch.setattr(pd.DataFrame, "to_csv", failing)
    assert main(["export", str(store), str(tmp_path / "out.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flatness export: error: disk full while writing ")
    assert "out.csv" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()
    out = tmp_path / "report"
    assert main(["report", str(store), "--out", str(out), "--bootstrap", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flatness report: error: disk full while writing ")
    assert "Traceback" not in err
    assert not [f for f in _files(out) if f.endswith(".tmp") or f.startswith("data/")]
