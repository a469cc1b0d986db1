"""Parametric plots over seeds: families of pairs, the band figure, the table, the sentence."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from flatness.report.curves import curve_sentence, pairs, summarize
from flatness.report.parametric import (
    band_figure,
    family_sentence,
    family_table,
    pair_families,
    parametric_content,
    parametric_sentences,
)
from flatness.report.render import FigureBlock, Section, TableBlock
from flatness.report.stats import mean_std
from flatness.report.tables import Table

ALPHAS = np.linspace(-1.0, 2.0, 13)  # steps of 0.25: the rises are read at α = -0.5, 1.5


def _loss(alpha: float, sharp_lb: float, sharp_sb: float) -> float:
    """Minima at 0 (0.1) and 1 (0.2), a ridge between, curvature beyond each end."""
    if alpha <= 0:
        return 0.1 + sharp_sb * alpha**2
    if alpha >= 1:
        return 0.2 + sharp_lb * (alpha - 1) ** 2
    return 0.3 - 0.4 * (alpha - 0.5) ** 2


def _pair(seed: int, sharp_lb: float, sharp_sb: float = 0.2, prefix: str = "") -> pd.DataFrame:
    rows = []
    for a in ALPHAS:
        loss = _loss(float(a), sharp_lb, sharp_sb)
        for split, shift in (("train", 0.0), ("test", 0.1)):
            rows.append({"alpha": a, "split": split, "metric": "loss", "value": loss + shift})
            rows.append(
                {"alpha": a, "split": split, "metric": "accuracy", "value": 0.9 - 0.1 * loss}
            )
    frame = pd.DataFrame(rows)
    frame["label"] = f"seed {seed} (same initialization)"
    frame["settings"] = '{"curve": "linear", "bn": "interpolate"}'
    frame["sb"], frame["lb"] = f"sb{seed}", f"lb{seed}"
    frame["sb_path"] = f"{prefix}sb/seed{seed}/final.pt"
    frame["lb_path"] = f"{prefix}lb/seed{seed}/final.pt"
    return frame


SHARP = {0: 2.0, 1: 3.0, 2: 1.5, 3: 4.0, 4: 2.5}
"""LB's curvature beyond its end per seed (SB's is 0.2): LB rises faster in every pair."""


@pytest.fixture
def seeded() -> tuple[list, list]:
    found = pairs(pd.concat([_pair(s, k) for s, k in SHARP.items()], ignore_index=True))
    return found, [summarize(p) for p in found]


def test_seed_pairs_form_one_family_and_other_designs_another(seeded: tuple) -> None:
    found, summaries = seeded
    (family,) = pair_families(found, summaries)
    assert len(family.pairs) == 5
    assert family.label == "sb/seed*/final.pt → lb/seed*/final.pt"
    other = pairs(pd.concat([_pair(s, 2.0, prefix="wide-") for s in range(2)], ignore_index=True))
    families = pair_families(found + other, summaries + [summarize(p) for p in other])
    assert [len(f.pairs) for f in families] == [5, 2]


def test_pairs_without_a_seed_in_their_paths_stay_apart() -> None:
    frames = [_pair(0, 2.0), _pair(0, 3.0)]
    frames[1]["label"] = "again"
    for frame in frames:
        frame["sb_path"], frame["lb_path"] = "a.pt", "b.pt"
    found = pairs(pd.concat(frames, ignore_index=True))
    families = pair_families(found, [summarize(p) for p in found])
    assert [len(f.pairs) for f in families] == [1, 1]


def test_the_band_figure_draws_every_pair_their_mean_and_the_band(seeded: tuple) -> None:
    found, summaries = seeded
    (family,) = pair_families(found, summaries)
    fig = band_figure(family, title="t")
    train_loss = fig.axes[0]
    assert len([c for c in train_loss.collections if isinstance(c, PolyCollection)]) == 1
    lines = [ln for ln in train_loss.get_lines() if len(ln.get_xdata()) == len(ALPHAS)]
    assert len(lines) == 6  # five pairs and the mean
    mean = lines[-1].get_ydata()
    expected = [np.mean([_loss(a, k, 0.2) for k in SHARP.values()]) for a in ALPHAS]
    assert np.allclose(mean, expected)
    band = train_loss.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(max(_loss(2.0, k, 0.2) for k in SHARP.values()))
    accuracy = fig.axes[2]
    assert accuracy.get_yscale() == "linear"
    assert max(accuracy.get_lines()[0].get_ydata()) > 80  # in percent


def test_one_pair_draws_without_a_band() -> None:
    found = pairs(_pair(0, 2.0))
    (family,) = pair_families(found, [summarize(found[0])])
    fig = band_figure(family, title="one")
    assert not [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]


def test_the_table_gives_each_pair_and_the_mean_and_sd(seeded: tuple) -> None:
    found, summaries = seeded
    (family,) = pair_families(found, summaries)
    table = family_table(family)
    assert len(table.frame) == 6
    rise = mean_std([s.rise_lb for s in summaries])
    assert table.frame.iloc[-1]["pair"] == "mean ± sd (5 pairs)"
    assert table.frame.iloc[-1]["rise beyond LB"] == rise.text()
    values = table.values
    assert values is not None
    row = values[(values["pair"] == "mean") & (values["column"] == "rise beyond LB")]
    assert float(row["value"].iloc[0]) == pytest.approx(rise.mean)
    # each LB rise is its curvature times 0.5² (the step of 0.5 beyond α = 1)
    per_pair = values[values["pair"].str.startswith("seed")]["rise beyond LB"]
    assert sorted(per_pair) == pytest.approx(sorted(k * 0.25 for k in SHARP.values()))


def test_the_sentence_states_the_rises_the_paired_test_and_its_floor(seeded: tuple) -> None:
    found, summaries = seeded
    (family,) = pair_families(found, summaries)
    text = family_sentence(family)
    assert text is not None
    assert mean_std([s.rise_lb for s in summaries]).text() in text
    assert mean_std([s.rise_sb for s in summaries]).text() in text
    assert "larger in 5/5 pairs" in text
    assert "no p below 0.06 is attainable" in text  # 2/2^5 = 0.0625
    assert "a barrier separates the two minimisers in 5/5 pairs" in text
    assert parametric_sentences(found, summaries) == [text]
    single = pairs(_pair(0, 2.0))
    s = summarize(single[0])
    assert parametric_sentences(single, [s]) == [curve_sentence(s)]


def test_the_section_content_has_one_band_figure_and_its_table(
    seeded: tuple, tmp_path: Path
) -> None:
    found, summaries = seeded
    saved: list[str] = []
    tables: list[Table] = []

    def figure(fig: Figure, name: str, caption: str) -> FigureBlock:
        saved.append(name)
        return FigureBlock(f"figures/{name}.png", caption)

    def table(section: Section, shown: Table) -> None:
        tables.append(shown)
        section.blocks.append(TableBlock(shown))

    section = Section("Parametric", "parametric")
    parametric_content(section, found, summaries, figure, table)
    assert saved == ["parametric-seeds-1-sb/seed*/final.pt → lb/seed*/final.pt"]
    assert [t.key for t in tables] == ["parametric-seeds"]
    assert math.isfinite(summaries[0].barrier)


def test_a_store_with_a_pair_per_seed_reports_one_band_figure_and_its_table(
    tmp_path: Path,
) -> None:
    """From scoring to report: two seed pairs, one figure, one table with mean ± sd."""
    import flatness as fl
    from flatness.report import build_from_store
    from tests.pipeline.conftest import manifest_text, save_run

    paths = ["sb/seed0.pt", "lb/seed0.pt", "sb/seed1.pt", "lb/seed1.pt"]
    for i, path in enumerate(paths):
        save_run(tmp_path / path, i)
    pairs_text = "".join(
        f'\n[[pairs]]\nsb = "sb/seed{s}.pt"\nlb = "lb/seed{s}.pt"\n'
        f'label = "seed {s} (same initialization)"\npoints = 7\n'
        for s in (0, 1)
    )
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(manifest_text(paths, measures='trace = { method = "exact" }') + pairs_text)
    fl.score(manifest, measures=["trace"])
    report = build_from_store(tmp_path / "results.sqlite", tmp_path / "report", n_boot=50)
    names = [p.name for p in report.figures]
    assert [n for n in names if n.startswith("parametric")] == [
        "parametric-seeds-1-sb-seed-pt-lb-seed-pt.png"
    ]
    data = pd.read_csv(tmp_path / "report" / "data" / "parametric-seeds.csv")
    curves = fl.load_curves(tmp_path / "results.sqlite")
    ends = curves[(curves["split"] == "train") & (curves["metric"] == "loss")]
    at_sb = ends[ends["alpha"] == 0.0]["value"]
    mean = data[(data["pair"] == "mean") & (data["column"] == "train loss SB (α=0)")]
    assert float(mean["value"].iloc[0]) == pytest.approx(at_sb.mean())
    md = report.markdown.read_text(encoding="utf-8")
    assert "mean ± sd (2 pairs)" in md
