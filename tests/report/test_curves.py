"""What a report reads off Keskar's parametric plot: barrier and rises beyond each end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from flatness.report.curves import curve_sentence, curve_table, pairs, summarize


def curve_frame(alphas: np.ndarray, loss, accuracy=lambda a: 0.9 - 0.01 * a) -> pd.DataFrame:
    rows = []
    for a in alphas:
        for split, shift in (("train", 0.0), ("test", 0.1)):
            rows.append({"alpha": a, "split": split, "metric": "loss", "value": loss(a) + shift})
            rows.append({"alpha": a, "split": split, "metric": "accuracy", "value": accuracy(a)})
    frame = pd.DataFrame(rows)
    frame["label"] = "seed 0"
    frame["settings"] = '{"curve": "linear", "bn": "interpolate"}'
    frame["sb"], frame["lb"] = "a" * 64, "b" * 64
    frame["sb_path"], frame["lb_path"] = "/runs/sb/seed0.pt", "/runs/lb/seed0.pt"
    return frame


def bumpy(a: float) -> float:
    """Minima at 0 (0.10, wide) and 1 (0.20, narrow) with a ridge of 0.35 at 0.5."""
    if a <= 0:
        return 0.10 + 0.2 * a * a
    if a >= 1:
        return 0.20 + 2.0 * (a - 1) ** 2
    return 0.35 - 0.6 * (a - 0.5) ** 2


def test_barrier_and_rises_are_read_off_the_training_loss() -> None:
    (pair,) = pairs(curve_frame(np.linspace(-1, 2, 25), bumpy))
    s = summarize(pair)
    assert s.loss_sb == pytest.approx(0.10) and s.loss_lb == pytest.approx(0.20)
    assert s.barrier == pytest.approx(0.35 - 0.20)
    assert s.step == 0.5
    assert s.rise_sb == pytest.approx(0.2 * 0.25)
    assert s.rise_lb == pytest.approx(2.0 * 0.25)
    assert s.test_accuracy_sb == pytest.approx(0.9) and s.test_accuracy_lb == pytest.approx(0.89)
    text = curve_sentence(s)
    assert text is not None
    assert "rises by 0.5 beyond LB and 0.05 beyond SB (steeper at LB, ratio 10)" in text
    assert "a barrier of 0.15 separates them" in text
    cells = curve_table([s]).frame.iloc[0].to_dict()
    assert cells["rise beyond LB"] == "0.5 (α=1.5)" and cells["barrier on [0, 1]"] == "0.15"


def test_the_step_shrinks_to_what_the_curve_reaches() -> None:
    (pair,) = pairs(curve_frame(np.linspace(-0.25, 1.25, 7), bumpy))
    s = summarize(pair)
    assert s.step == 0.25
    assert s.rise_lb == pytest.approx(2.0 * 0.0625)


def test_a_curve_only_between_the_ends_has_no_rises() -> None:
    (pair,) = pairs(curve_frame(np.linspace(0, 1, 5), lambda a: 0.1 + 0.05 * a))
    s = summarize(pair)
    assert s.step == 0 and math.isnan(s.rise_sb) and math.isnan(s.rise_lb)
    assert s.barrier == pytest.approx(0.0)
    assert curve_sentence(s) is None


def test_pairs_show_paths_relative_to_the_root() -> None:
    from pathlib import Path

    (pair,) = pairs(curve_frame(np.linspace(-1, 2, 5), bumpy), Path("/runs"))
    assert (pair.sb_path, pair.lb_path) == ("sb/seed0.pt", "lb/seed0.pt")
    assert pair.settings == {"curve": "linear", "bn": "interpolate"}
    assert pairs(None) == [] and pairs(pd.DataFrame()) == []


def test_clamped_batchnorm_variances_are_named_in_the_sentence() -> None:
    frame = curve_frame(np.linspace(-1, 2, 13), bumpy)
    marks = frame.iloc[:2].copy()
    clamped = [[2.0, "bn", "variance_clamped", 1.0], [1.75, "bn", "variance_clamped", 1.0]]
    marks[["alpha", "split", "metric", "value"]] = clamped
    (pair,) = pairs(pd.concat([frame, marks], ignore_index=True))
    s = summarize(pair)
    assert s.clamped == (1.75, 2.0)
    assert s.rise_lb == pytest.approx(2.0 * 0.25)  # the marks are not read as losses
    text = curve_sentence(s)
    assert text is not None and "At α = 1.75, 2, BatchNorm running variances" in text
    assert 'bn = "recompute"' in text
    (plain,) = pairs(frame)
    assert "BatchNorm" not in (curve_sentence(summarize(plain)) or "")
