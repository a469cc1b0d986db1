"""Labels from the data cannot abort a report or inject Markdown (issue 17, item 7).

A regime, measure or pair label is whatever the manifest or the frame says: matplotlib
must not parse it as mathtext, a long label must not make a figure's file name too long
for the file system, and report.md must show it as text (no link, image or heading).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from flatness.report import build
from flatness.report.render import md_text

N_BOOT = 50
HOSTILE = ("[a](javascript:alert(1))", "![x](http://h/i.png)", "# h")


def _frame(regimes: tuple[str, str] = ("SB", "LB"), measure: str = "lambda_max") -> pd.DataFrame:
    rows = []
    for regime, batch, level in ((regimes[0], 16, 0.0), (regimes[1], 256, 1.0)):
        for seed in (0, 1, 2):
            rows.append(
                {
                    "regime": regime,
                    "batch_size": batch,
                    "seed": seed,
                    "path": f"/runs/{batch}-{seed}.pt",
                    "train_accuracy": 0.99,
                    "test_accuracy": 0.95 - 0.03 * level - 0.001 * seed,
                    "measure": measure,
                    "value": 1.0 + 4.0 * level + 0.1 * seed,
                }
            )
    return pd.DataFrame(rows)


def _curves(sb_path: str, lb_path: str, label: str) -> pd.DataFrame:
    rows = []
    for alpha in np.linspace(-0.5, 1.5, 9):
        for split, shift in (("train", 0.0), ("test", 0.1)):
            loss = 0.1 + (alpha - 0.5) ** 2 + shift
            rows.append({"alpha": alpha, "split": split, "metric": "loss", "value": loss})
            rows.append({"alpha": alpha, "split": split, "metric": "accuracy", "value": 0.9})
    frame = pd.DataFrame(rows)
    return frame.assign(
        sb_path=sb_path, lb_path=lb_path, sb="a" * 64, lb="b" * 64, label=label, settings="{}"
    )


def test_a_mathtext_regime_label_does_not_abort_the_report(tmp_path: Path) -> None:
    report = build(_frame(("$x^$", "LB$")), tmp_path, n_boot=N_BOOT)
    assert report.figures, "the figures were drawn"
    assert "$x^$" in report.markdown.read_text(encoding="utf-8").replace("\\", "")


def test_a_mathtext_measure_label_does_not_abort_the_report(tmp_path: Path) -> None:
    report = build(_frame(measure="$\\frac{$"), tmp_path, n_boot=N_BOOT)
    assert report.figures


def test_a_pair_label_from_two_long_paths_gives_a_bounded_file_name(tmp_path: Path) -> None:
    sb = "/" + "/".join(["s" * 40] * 5)  # 205 characters each
    lb = "/" + "/".join(["l" * 40] * 5)
    curves = _curves(sb, lb, f"{sb} -> {lb}")
    report = build(_frame(), tmp_path, n_boot=N_BOOT, curves=curves)
    names = [p.name for p in report.figures]
    parametric = [n for n in names if n.startswith("parametric-")]
    assert len(parametric) == 1
    assert all(len(n) <= 100 for n in names), names
    assert all(re.fullmatch(r"[a-z0-9.-]+", n) for n in names), names


def test_two_long_labels_alike_at_the_start_get_different_file_names(tmp_path: Path) -> None:
    common = "x" * 200
    curves = pd.concat(
        [_curves("a.pt", "b.pt", common + "1"), _curves("a.pt", "b.pt", common + "2")]
    )
    report = build(_frame(), tmp_path, n_boot=N_BOOT, curves=curves)
    parametric = [p.name for p in report.figures if p.name.startswith("parametric-")]
    assert len(set(parametric)) == 2, parametric


def test_labels_cannot_inject_links_images_or_headings_into_markdown(tmp_path: Path) -> None:
    df = _frame((HOSTILE[0], HOSTILE[1]), measure=HOSTILE[2])
    curves = _curves(HOSTILE[0], HOSTILE[1], HOSTILE[2])
    report = build(df, tmp_path, n_boot=N_BOOT, curves=curves, title="# [t](javascript:x)")
    md = report.markdown.read_text(encoding="utf-8")
    # a link or image needs an unescaped "](" (or "]:" for a definition); the report's
    # own links point into figures/ and data/ only
    targets = re.findall(r"(?<!\\)\]\(([^)]*)\)", md)
    assert targets and all(t.startswith(("#", "figures/", "data/")) for t in targets), targets
    assert not re.search(r"(?<!\\)\]:", md)
    assert "http://" not in md  # GitHub would autolink it
    for line in md.splitlines():
        assert not re.match(r"\s*#+\s*h\b", line), line  # no heading "h" from the data
    assert md.splitlines()[0].startswith("# ")  # the report's own title heading stays
    # the report's own links and figures are still there
    assert "](figures/" in md and "](data/scores.csv)" in md


def test_md_text_escapes_markdown_syntax() -> None:
    for text in (*HOSTILE, "*em*", "_em_", "`code`", "<b>", "a | b", "1. list", "- item"):
        shown = md_text(text)
        assert not re.search(r"(?<!\\)([*`<>#]|_(?!\w)|\][(\[:])", shown), shown
        assert not re.match(r"[#>+\-]|\d+\.", shown), shown
