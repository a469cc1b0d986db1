"""The Training figures hold for a study's case: six schedules × three seeds, four measures."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from flatness.report.learning import group_labels, measure_names
from flatness.report.learning_figures import group_colours, training_figures
from flatness.report.render import FigureBlock

SCHEDULES = {  # name: (batch size at the start, factor at each milestone)
    "eta-decay": (32, 1),
    "B-increase": (32, 5),
    "hybrid": (32, 5),
    "constant": (32, 1),
    "constant-noise": (160, 1),
    "warmup": (64, 1),
}
MEASURES = ("lambda_max", "trace", "keskar_sharpness", "noise_scale")


def _records() -> pd.DataFrame:
    rows = []
    for (k, (schedule, (batch, factor))), seed in itertools.product(
        enumerate(SCHEDULES.items()), range(3)
    ):
        rng = np.random.default_rng(100 * k + seed)
        for i, step in enumerate((0, 10, 100, 1000, 3000, 6000)):
            record = {
                "run": f"{schedule}/seed{seed}",
                "source": "tracker",
                "step": step,
                "regime": schedule,
                "optimizer": "sgd",
                "seed": seed,
                "updates": step,
                "epoch": step / 150,
                "examples_seen": step * batch,
                "lr": 0.1,
                "batch_size": batch * factor ** min(i // 2, 2),
                "momentum": 0.9,
                "stability_threshold": 38.0,
                "train_loss": 2.0 / (1 + step / 300) + 0.02 * rng.random(),
                "train_accuracy": 0.3 + 0.1 * i,
                "test_loss": 2.1 / (1 + step / 400),
                "test_accuracy": 0.28 + 0.09 * i,
            }
            for j, name in enumerate(MEASURES):
                record[name] = (1 + k) * (j + 1) * (1 + step / 1000) + rng.random()
                record[f"{name}_stderr"] = 0.05
            rows.append(record)
    return pd.DataFrame(rows)


def test_six_schedules_with_four_measures_draw_a_band_each_in_distinct_colours() -> None:
    tracks = _records()
    labels = group_labels(tracks)
    assert sorted(set(labels)) == sorted(SCHEDULES)
    assert measure_names(tracks) == list(MEASURES)
    drawn: dict[str, Figure] = {}

    def figure(fig: Figure, name: str, caption: str) -> FigureBlock:
        drawn[name] = fig
        return FigureBlock(f"figures/{name}.png", caption)

    blocks = training_figures(tracks, labels, figure, list(SCHEDULES))
    assert [b.path for b in blocks] == [
        "figures/training-tracker.png",
        "figures/training-measures.png",
        "figures/training-noise-scale.png",
    ]
    panels = [ax for ax in drawn["training-measures"].axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["λ_max", "trace", "ε-sharpness"]
    assert len(panels) == 3  # the noise scale has its own figure
    for ax in panels:
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == len(SCHEDULES)  # one min–max band over three seeds each
        assert ax.get_xscale() == "log"  # 10 .. 6000 updates: more than two decades
        ticks = [t for t in ax.get_xticks() if 10 <= t <= 6000]
        assert len(ticks) >= 2
    colours = group_colours(tracks, labels, list(SCHEDULES))
    assert list(colours) == list(SCHEDULES)
    rgb = [np.asarray(c) for c in colours.values()]
    assert min(np.linalg.norm(a - b) for a, b in itertools.pairwise(rgb)) > 0.25
    fit = drawn["training-tracker"]
    assert fit.axes[0].get_xscale() == "linear"  # epochs stay linear
    assert fit.axes[1].get_xscale() == "log"


def test_without_the_reports_order_groups_follow_their_first_batch_size() -> None:
    tracks = _records()
    colours = group_colours(tracks, group_labels(tracks))
    # 32 (four schedules, by name), then warmup (64), then constant-noise (160)
    assert list(colours) == [
        "B-increase",
        "constant",
        "eta-decay",
        "hybrid",
        "warmup",
        "constant-noise",
    ]
