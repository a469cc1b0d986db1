"""The per-layer section: per-group medians SB vs LB, a figure, nothing without groups."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import flatness as fl
from flatness.report.layers import group_scores

GROUPS = ("features.0", "features.10", "features.2", "classifier")


def _frame(groups: bool = True) -> pd.DataFrame:
    rows = []
    for i in range(6):
        regime, batch = ("SB", 64) if i % 2 == 0 else ("LB", 1024)
        scale = 1.0 if regime == "SB" else 3.0
        common = {
            "checkpoint": f"{regime}/seed{i}", "regime": regime, "batch_size": batch,
            "seed": i, "train_accuracy": 0.99, "test_accuracy": 0.9 - 0.02 * (regime == "LB"),
        }  # fmt: skip
        rows.append({**common, "measure": "lambda_max", "settings": "{}", "component": "1",
                     "value": scale * (10 + i)})  # fmt: skip
        rows.append({**common, "measure": "lambda_max", "settings": "{}", "component": "2",
                     "value": scale * (5 + i)})  # fmt: skip
        for g, group in enumerate(GROUPS if groups else ()):
            settings = json.dumps({"k": 2, "group": group})
            for component, value in (("1", scale * (g + 1) * (1 + i)), ("2", 0.5)):
                rows.append({**common, "measure": "lambda_max", "settings": settings,
                             "component": component, "value": value})  # fmt: skip
            trace = json.dumps({"group": group})
            rows.append({**common, "measure": "trace", "component": "", "settings": trace,
                         "value": 2.0 * (g + 1)})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_table_holds_per_group_medians_and_the_ratio(tmp_path: Path) -> None:
    report = fl.report.build(
        _frame(), out=tmp_path / "r", info={"scoring": {"groups": list(GROUPS)}}
    )
    text = Path(report.markdown).read_text()
    assert "## Per-layer sharpness" in text
    assert (tmp_path / "r" / "figures" / "layers.png").is_file()
    values = pd.read_csv(tmp_path / "r" / "data" / "layers.csv")
    lam = values[values["measure"] == "λ_max"].set_index("group")
    # SB seeds 0, 2, 4 -> (g + 1) * (1, 3, 5): median 3 (g + 1); LB 3x of (2, 4, 6)
    assert lam.loc["features.0", "SB_median"] == pytest.approx(3.0)
    assert lam.loc["classifier", "LB_median"] == pytest.approx(3 * 4 * 4.0)
    assert lam.loc["features.2", "lb_over_sb"] == pytest.approx(4.0)
    assert list(lam.index) == list(GROUPS)  # the manifest's order
    assert list(values["measure"].drop_duplicates()) == ["λ_max", "trace"]
    assert (values["SB_n"] == 3).all()


def test_groups_come_in_natural_order_without_a_list() -> None:
    scores = group_scores(fl.report.frames.normalize(_frame()), [f"SB/seed{i}" for i in range(6)])
    assert list(scores["group"].cat.categories) == [
        "classifier", "features.0", "features.2", "features.10"
    ]  # fmt: skip
    assert set(scores["regime"]) == {"SB"}


def test_no_group_rows_no_section(tmp_path: Path) -> None:
    report = fl.report.build(_frame(groups=False), out=tmp_path / "r")
    assert "Per-layer" not in Path(report.markdown).read_text()


def test_without_groups_keeps_the_whole_networks_rows() -> None:
    from flatness.report.layers import without_groups

    frame = _frame()
    kept = without_groups(frame)
    assert len(kept) == 12 and set(kept["settings"]) == {"{}"}
    mapped = frame.assign(settings=[json.loads(s) for s in frame["settings"]])
    assert len(without_groups(mapped)) == 12


def test_the_other_sections_compare_whole_networks_only(tmp_path: Path) -> None:
    report = fl.report.build(
        _frame(), out=tmp_path / "r", info={"scoring": {"groups": list(GROUPS)}}
    )
    text = Path(report.markdown).read_text()
    before_layers = text.split("## Per-layer sharpness")[0]
    assert "group" not in " ".join(report.summary)
    assert "group=" not in before_layers
