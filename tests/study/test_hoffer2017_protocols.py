"""The fixed-epochs-vs-fixed-updates study's protocols: labels, regimes and the gap logic."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from flatness.studies.hoffer2017_data import ACCURACY, cells_frame, protocol_gaps
from flatness.studies.hoffer2017_protocols import (
    PROTOCOLS,
    ROLES,
    cells_of,
    protocol_regimes,
    regime_label,
)


def test_every_cell_has_one_label_and_the_label_reads_back() -> None:
    for protocol in PROTOCOLS:
        for role in ROLES:
            label = regime_label(protocol, role)
            assert (protocol, role) in cells_of(label)
    # SB's equal-epochs run stands for U and L too; nothing else is shared
    assert cells_of("SB") == (("E", "SB"), ("U", "SB"), ("L", "SB"))
    assert cells_of("LB") == (("E", "LB"),)
    assert cells_of("U-SB") == () and cells_of("B64") == () and cells_of("X-LB") == ()
    with pytest.raises(ValueError, match="no cell"):
        regime_label("Z", "LB")


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_protocol_regimes_hold_epochs_updates_targets_and_scaled_rates(optimizer: str) -> None:
    settings = {"optimizer": optimizer, "lr": 0.01}
    sizes = {"SB": 20, "MB": 100, "LB": 400}
    regimes = protocol_regimes(
        settings, sizes, n_train=4000, epochs=20, target_loss=0.05, c_epochs=200,
        warmup_epochs=2.0,
    )  # fmt: skip
    assert len(regimes) == 10
    for role, batch in sizes.items():
        e = regimes[regime_label("E", role)]
        assert e["batch_size"] == batch and e["epochs"] == 20 and "max_updates" not in e
        c = regimes[regime_label("C", role)]
        assert c["target_loss"] == 0.05 and c["epochs"] == 200
    for role in ("MB", "LB"):
        u = regimes[f"U-{role}"]
        # U: SB's updates in E (20 epochs × 200 updates), no epoch cap
        assert u["epochs"] is None and u["max_updates"] == 20 * 4000 // 20
        scaled = regimes[f"L-{role}"]
        if optimizer == "sgd":
            assert scaled["schedule"] == "linear_scaling"
            assert scaled["reference_batch_size"] == 20 and scaled["warmup_epochs"] == 2.0
            assert "lr" not in scaled
        else:
            assert scaled["lr"] == pytest.approx(0.01 * math.sqrt(sizes[role] / 20))
            assert "schedule" not in scaled


def _cells(acc: dict[str, list[float]], lam: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for regime in acc:
        for seed, (a, value) in enumerate(zip(acc[regime], lam[regime], strict=True)):
            rows.append({"case": "adam", "optimizer": "adam", "regime": regime, "seed": seed,
                         ACCURACY: a, "λ_max": value})  # fmt: skip
    return cells_frame(pd.DataFrame(rows))


def test_gaps_are_paired_by_seed_and_ratios_are_geometric_means() -> None:
    cells = _cells(
        {"SB": [70.0, 68.0, 66.0], "LB": [65.0, 64.0, 60.0], "U-LB": [71.0, 67.0, 66.5]},
        {"SB": [1.0, 2.0, 4.0], "LB": [2.0, 8.0, 4.0], "U-LB": [0.5, 1.0, 2.0]},
    )
    # SB's run appears under E, U and L; LB under E, U-LB under U
    assert sorted(cells.loc[cells["regime"] == "SB", "protocol"].unique()) == ["E", "L", "U"]
    gaps = {(g.protocol, g.quantity): g for g in protocol_gaps(cells)}
    e_acc = gaps[("E", ACCURACY)]
    assert e_acc.size == pytest.approx(np.mean([-5.0, -4.0, -6.0]))
    assert (e_acc.low, e_acc.high) == (-6.0, -4.0)
    assert e_acc.direction == -1 and e_acc.test.losses == 3
    e_lam = gaps[("E", "λ_max")]
    assert e_lam.size == pytest.approx((2.0 * 4.0 * 1.0) ** (1 / 3))
    assert e_lam.test.wins == 2 and e_lam.test.ties == 1
    u_acc = gaps[("U", ACCURACY)]
    assert u_acc.test.wins == 2 and u_acc.test.losses == 1 and u_acc.direction == 0
    assert gaps[("U", "λ_max")].direction == -1
    # Holm runs over the case's tests: never below the raw p, never above 1
    for gap in gaps.values():
        assert gap.test.wilcoxon_p <= gap.holm_p <= 1.0
    # L has no LB run here: no L gap
    assert not any(p == "L" for p, _ in gaps)


def test_fate_words_follow_the_seeds() -> None:
    from flatness.studies.hoffer2017_answers import fate

    cells = _cells(
        {"SB": [70.0, 68.0, 66.0], "LB": [65.0, 64.0, 60.0], "U-LB": [71.0, 67.0, 66.5],
         "C-SB": [70.0, 68.0, 66.0], "C-LB": [72.0, 69.0, 67.0]},
        {"SB": [1.0, 2.0, 4.0], "LB": [2.0, 3.0, 5.0], "U-LB": [1.5, 2.5, 4.1],
         "C-SB": [1.0, 1.0, 1.0], "C-LB": [0.5, 0.5, 0.9]},
    )  # fmt: skip
    gaps = {(g.protocol, g.quantity): g for g in protocol_gaps(cells)}
    assert fate(gaps[("U", ACCURACY)], gaps[("E", ACCURACY)]).startswith(
        "does not hold (LB on E's side in 1/3 seeds)"
    )
    assert fate(gaps[("C", ACCURACY)], gaps[("E", ACCURACY)]) == "reverses"
    assert fate(gaps[("U", "λ_max")], gaps[("E", "λ_max")]) == "holds (smaller than under E)"
    assert fate(gaps[("C", "λ_max")], gaps[("E", "λ_max")]) == "reverses"
    # no side under E: nothing to keep
    assert fate(gaps[("E", ACCURACY)], gaps[("U", ACCURACY)]).startswith("—")
