"""Why a run stopped, from its metadata, old runs included."""

from __future__ import annotations

import pytest

from flatness.report.case_runs import stop_reason


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"stop_reason": "target_loss", "reached_target": False}, "target_loss"),
        ({"reached_target": True, "config": {"target_loss": 0.05}}, "target_loss"),
        ({"reached_target": True, "config": {"target_accuracy": 0.98}}, "target_accuracy"),
        ({"reached_target": False, "updates": 100, "config": {"max_updates": 100}}, "max_updates"),
        ({"reached_target": False, "updates": 99, "config": {"max_updates": 100}}, "epochs"),
        ({}, "epochs"),
    ],
)
def test_stop_reason_reads_the_record_or_the_config(meta, expected) -> None:
    assert stop_reason(meta) == expected
