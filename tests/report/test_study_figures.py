"""The figure rules (colours, log/linear axes, ticks) and the study figure helpers."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure

from flatness.report import study_figures
from flatness.report.figure_style import log_scale, regime_colors, style_axis
from flatness.report.study_figures import curves_figure, group_order, points_figure


def _distance(a: Any, b: Any) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


@pytest.mark.parametrize("n", [2, 3, 6, 10, 11, 14, 20])
def test_neighbouring_regimes_get_distinct_colours(n: int) -> None:
    names = [f"r{i}" for i in range(n)]
    colours = regime_colors(names)
    adjacent = [_distance(colours[a], colours[b]) for a, b in itertools.pairwise(names)]
    assert min(adjacent) > 0.25
    assert len({colours[name] for name in names}) == n
    assert regime_colors(names) == colours  # fixed order: the same in every figure


def test_the_old_blue_to_red_blend_would_fail_the_neighbour_rule() -> None:
    """The check above can fail: adjacent shades of a sequential map are too alike."""
    import seaborn as sns

    blend = sns.blend_palette(["#2166ac", "#7b3294", "#d6301d"], 10)
    assert min(_distance(a, b) for a, b in itertools.pairwise(blend)) < 0.25


@pytest.mark.parametrize(
    ("values", "zeros", "expected"),
    [
        ([20, 2500], "linear", True),  # SB/LB batch sizes: 2.1 decades
        ([32, 64, 128, 256, 1024], "linear", False),  # 1.5 decades
        ([1.0, 100.0], "linear", False),  # exactly two decades: not more
        ([1.0, 101.0], "linear", True),
        ([-0.5, 1.0, 1e4], "linear", False),  # a negative value keeps it linear
        ([0, 10, 5000], "linear", False),
        ([0, 10, 5000], "drop", True),  # updates from 0: the zero is not drawn
        ([np.nan, np.inf, 3.0], "linear", False),
    ],
)
def test_log_scale_rule(values: list[float], zeros: Any, expected: bool) -> None:
    assert log_scale(values, zeros=zeros) is expected


def _styled(values: Any, **options: Any) -> tuple[Any, bool]:
    """A panel drawing ``values`` against themselves, its x axis styled by the rules."""
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(values, values)
    log = style_axis(ax, "x", values, **options)
    fig.canvas.draw()
    return ax, log


def _labels(ax: Any) -> list[float]:
    """The x positions of the labelled major ticks inside the axis."""
    low, high = sorted(ax.get_xlim())
    return [
        float(t.get_loc())
        for t in ax.xaxis.get_major_ticks()
        if t.label1.get_text() and low <= t.get_loc() <= high
    ]


@pytest.mark.parametrize("span", [(3.0, 7.0), (20.0, 900.0), (1.0, 1e3), (5.0, 5e5)])
def test_log_axes_have_at_least_two_labelled_ticks(span: tuple[float, float]) -> None:
    ax, log = _styled(np.geomspace(*span, 7), log=True)
    assert log
    assert len(_labels(ax)) >= 2


def test_log_axis_under_two_decades_is_ticked_at_1_2_5() -> None:
    ax, _ = _styled(np.geomspace(20.0, 900.0, 5), log=True)
    assert _labels(ax) == [20.0, 50.0, 100.0, 200.0, 500.0]


def test_given_ticks_are_labelled_and_thinned_where_they_crowd() -> None:
    sizes = [32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]
    ax, log = _styled(sizes, ticks=sizes)
    assert not log  # 1.5 decades: linear
    shown = _labels(ax)
    assert 32.0 in shown and 1024.0 in shown
    assert 64.0 not in shown  # 32 apart on a 992-wide axis: would overlap 32's label
    ax, log = _styled(sizes, ticks=sizes, log=True)
    assert log and _labels(ax) == sizes


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the helpers save, kept for inspection (and still written)."""
    figures: list[Figure] = []
    save = study_figures.save

    def keep(fig: Figure, path: Path) -> Path:
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(study_figures, "save", keep)
    return figures


def _curves(seeds: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {
            "schedule": schedule,
            "seed": seed,
            "updates": updates,
            "split": split,
            "loss": (k + 1) * np.exp(-updates / 2000) + rng.uniform(0.01, 0.1),
        }
        for k, schedule in enumerate(["eta-decay", "B-increase"])
        for seed in range(seeds)
        for updates in (0, 10, 100, 1000, 4000)
        for split in ("train", "test")
    ]
    return pd.DataFrame(rows)


def test_curves_figure_draws_the_mean_and_a_min_max_band(
    tmp_path: Path, drawn: list[Figure]
) -> None:
    frame = _curves(seeds=3)
    path = curves_figure(
        frame, x="updates", y="loss", group="schedule", style="split", path=tmp_path / "c.png"
    )
    assert path.is_file() and path.stat().st_size > 0
    ax = drawn[0].axes[0]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 4  # two schedules x two splits
    assert ax.get_xscale() == "log"  # 10 .. 4000 updates; the zeros dropped
    line = next(
        ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) == 4
    )
    x, y = line.get_xdata(), line.get_ydata()
    # groups in name order: B-increase first, its train curve first
    rows = frame[(frame["schedule"] == "B-increase") & (frame["split"] == "train")]
    expected = rows[rows["updates"] > 0].groupby("updates")["loss"].mean()
    assert list(x) == list(expected.index)
    assert np.allclose(y, expected.to_numpy())
    band = bands[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(rows[rows["updates"] > 0]["loss"].min())


def test_curves_figure_with_one_seed_has_no_band(tmp_path: Path, drawn: list[Figure]) -> None:
    curves_figure(
        _curves(seeds=1), x="updates", y="loss", group="schedule", path=tmp_path / "one.png"
    )
    assert not [c for c in drawn[0].axes[0].collections if isinstance(c, PolyCollection)]


def test_curves_figure_panels_and_colours_follow_the_study_order(
    tmp_path: Path, drawn: list[Figure]
) -> None:
    frame = _curves(seeds=2).rename(columns={"split": "measure"})
    order = ["B-increase", "constant", "eta-decay"]
    curves_figure(
        frame,
        x="updates",
        y="loss",
        group="schedule",
        panel="measure",
        order=order,
        logx=False,
        path=tmp_path / "p.png",
    )
    axes = [ax for ax in drawn[0].axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["train", "test"]
    assert axes[0].get_xscale() == "linear"
    colours = regime_colors(order)
    first = axes[0].get_lines()[0]
    assert tuple(first.get_color()[:3]) == pytest.approx(colours["B-increase"])


def test_points_figure_draws_every_seed_and_the_group_means(
    tmp_path: Path, drawn: list[Figure]
) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        [
            {"B": b, "eta": eta, "seed": s, "accuracy": 90 + rng.normal()}
            for b in (32, 128, 512)
            for eta in (0.01, 0.2)
            for s in range(3)
        ]
    )
    frame["ratio"] = frame["eta"] / frame["B"]
    points_figure(frame, x="ratio", y="accuracy", group="B", path=tmp_path / "p.png", xlabel="η/B")
    ax = drawn[0].axes[0]
    points = sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
    assert points == len(frame)
    means = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert len(means) == 3
    rows = frame[frame["B"] == 32]
    assert np.allclose(means[0].get_ydata(), rows.groupby("ratio")["accuracy"].mean())
    assert ax.get_xscale() == "log"  # 2e-5 .. 6e-3: 2.5 decades
    assert ax.get_xlabel() == "η/B"


def test_groups_are_ordered_by_number_and_missing_columns_are_named(tmp_path: Path) -> None:
    assert group_order(pd.DataFrame({"B": [512, 32, 128]}), "B") == ["32", "128", "512"]
    assert group_order(pd.DataFrame({"r": ["SB", "LB"]}), "r", ["SB", "LB"]) == ["SB", "LB"]
    with pytest.raises(ValueError, match="seed"):
        curves_figure(
            pd.DataFrame({"x": [1], "y": [1], "g": ["a"]}),
            x="x",
            y="y",
            group="g",
            path=tmp_path / "x.png",
        )


def test_the_report_figures_share_the_rules() -> None:
    """figures.py's palette and log rule are figure_style's; the parametric loss axis
    follows the two-decade rule."""
    from flatness.report import figures

    assert figures.palette is regime_colors and figures.log_worthy is log_scale
    alphas = np.linspace(-1, 2, 7)

    def curve(loss: Any) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"alpha": a, "split": s, "metric": m, "value": loss(a) if m == "loss" else 0.9}
                for a in alphas
                for s in ("train", "test")
                for m in ("loss", "accuracy")
            ]
        )

    narrow = figures.parametric_figure(curve(lambda a: 0.2 + 0.1 * a * a), title="t")
    assert narrow.axes[0].get_yscale() == "linear"  # 0.2 .. 0.6
    wide = figures.parametric_figure(curve(lambda a: 0.01 * 10 ** (2 * a * a)), title="t")
    assert wide.axes[0].get_yscale() == "log"  # 0.01 .. 1e6


def test_regimes_sharing_a_batch_size_are_not_averaged_in_the_trend_figure() -> None:
    """LB for equal epochs and LB for equal updates share B: each gets its own mean."""
    from flatness.report import analyze, figures
    from tests.report.test_report import study_frame

    frame = study_frame(density=False)
    alike = frame["regime"] == "B64"
    frame.loc[alike, "regime"] = "LB-updates"
    frame.loc[alike, "batch_size"] = 256.0
    fig = figures.trend_figure(analyze(frame, n_boot=0))
    assert fig is not None
    ax = fig.axes[0]
    diamonds = [
        c
        for c in ax.collections
        if isinstance(c, PathCollection) and len(c.get_offsets()) == 1 and c.get_sizes()[0] == 46
    ]
    assert len(diamonds) == 3  # SB, LB and LB-updates
    means = frame.drop_duplicates("checkpoint").groupby("regime")["test_accuracy"].mean() * 100
    got = sorted(float(d.get_offsets()[0][1]) for d in diamonds)
    assert got == pytest.approx(sorted(means.to_numpy()))
    assert not [ln for ln in ax.get_lines() if ln.get_label() == "mean"]
    assert "each regime's mean" in fig.get_suptitle()
    plain = figures.trend_figure(analyze(study_frame(density=False), n_boot=0))
    assert plain is not None and "line: mean" in plain.get_suptitle()


def test_an_axis_styled_again_takes_the_new_rule() -> None:
    """A log axis restyled as linear gets plain ticks (no leftover log formatter)."""
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([1, 1000], [1, 2])
    assert style_axis(ax, "x", [1, 1000])
    assert not style_axis(ax, "x", [1, 1000], log=False)
    fig.canvas.draw()
    assert ax.get_xscale() == "linear"
    assert len([t for t in ax.xaxis.get_major_ticks() if t.label1.get_text()]) >= 3


def test_groups_sharing_an_x_are_drawn_side_by_side(tmp_path: Path, drawn: list[Figure]) -> None:
    frame = pd.DataFrame(
        [
            {"B": b, "ratio": r, "seed": s, "accuracy": 90 + b / 100 + s}
            for b in (32, 128, 512)
            for r in (1e-4, 1e-3, 1e-2, 1e-1)
            for s in range(2)
        ]
    )
    points_figure(frame, x="ratio", y="accuracy", group="B", path=tmp_path / "d.png")
    points_figure(frame, x="ratio", y="accuracy", group="B", path=tmp_path / "n.png", dodge=False)
    dodged, plain = (fig.axes[0] for fig in drawn)
    assert dodged.get_xscale() == "log"
    means = [ln.get_xdata()[0] for ln in dodged.get_lines() if ln.get_marker() == "o"]
    assert means[0] < 1e-4 < means[2] and means[1] == pytest.approx(1e-4)
    assert 0 < np.log10(means[2] / means[0]) < 0.2  # a few per cent of three decades
    xs = {round(float(p[0]), 12) for c in plain.collections for p in c.get_offsets()}
    assert xs == {1e-4, 1e-3, 1e-2, 1e-1}
    ys = sorted(float(ln.get_ydata()[0]) for ln in dodged.get_lines() if ln.get_marker() == "o")
    expected = frame[frame["ratio"] == 1e-4].groupby("B")["accuracy"].mean()
    assert ys == pytest.approx(sorted(expected))
