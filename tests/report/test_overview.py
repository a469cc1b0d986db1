"""The overview lays out the cells of the cases' own reports: one implementation each."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from flatness.report import analyze
from flatness.report.overview import OverviewCase
from flatness.report.overview_tables import accuracy_overview, keskar_overview
from flatness.report.reference import keskar_value, paper_text
from flatness.report.tables import accuracy_table, keskar_tables


def _frame() -> pd.DataFrame:
    rows = []
    for regime, batch, phi, acc in (("SB", 8, 1.0, 0.90), ("LB", 64, 3.0, 0.85)):
        for seed in range(3):
            rows.append(
                {
                    "checkpoint": f"{regime}{seed}",
                    "path": f"{regime}{seed}.pt",
                    "regime": regime,
                    "batch_size": batch,
                    "seed": seed,
                    "test_accuracy": acc + 0.01 * seed,
                    "train_accuracy": 0.99 - 0.001 * seed,
                    "measure": "keskar",
                    "settings": json.dumps({"eps": 1e-3, "subspace": 0}),
                    "component": "",
                    "value": phi + 0.1 * seed,
                }
            )
    return pd.DataFrame(rows)


def test_overview_cells_are_the_case_report_s_table_cells() -> None:
    study = analyze(_frame(), n_boot=50)
    case = OverviewCase("toy", "toy", Path("toy.sqlite"), Path("toy/report.html"), "F1")

    table2 = accuracy_table(study, "F1").frame.set_index("regime")
    row = accuracy_overview([case], [study]).frame.iloc[0]
    for role in ("SB", "LB"):
        assert row[f"train {role} (%)"] == table2.loc[role, "train accuracy (%)"]
        assert row[f"test {role} (%)"] == table2.loc[role, "test accuracy (%)"]
        assert row[f"paper {role} (%)"] == table2.loc[role, "paper test (%), F1"]

    (table3,) = keskar_tables(study, "F1")
    cells = table3.frame.set_index("regime")
    ours, paper = cells.columns[1], cells.columns[2]  # "ε = 1e-3" and the paper's column
    row = keskar_overview([case], [study]).frame.iloc[0]
    for role in ("SB", "LB"):
        assert row[role] == cells.loc[role, ours]
        assert row[f"paper {role}"] == cells.loc[role, paper]
        assert row[f"paper {role}"] == paper_text(keskar_value("F1", 3, role, eps=1e-3))


def test_paper_lookup_finds_published_values_and_nothing_else() -> None:
    assert keskar_value("F1", 2, "SB", quantity="test_accuracy") is not None
    assert keskar_value(None, 2, "SB", quantity="test_accuracy") is None
    assert keskar_value("F1", 2, None, quantity="test_accuracy") is None
    assert keskar_value("F1", 4, "LB", eps=0.5) is None
    assert paper_text(None) == "—" and paper_text((1.234, 0.5)) == "1.23 ± 0.50"
