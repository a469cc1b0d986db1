"""flatness.report.build on frames with known numbers: tables, statistics, text, missing data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from flatness.report import ReportInputError, analyze, build, format_mean_std
from flatness.report.frames import column_label, normalize, scores_frame

SEEDS = (0, 1, 2)
KESKAR = [(1e-3, 0), (5e-4, 0), (1e-3, 100), (5e-4, 100)]


def study_frame(*, lb_sharper: bool = True, seeds=SEEDS, density: bool = True) -> pd.DataFrame:
    """A tidy frame as load_results(details=True) gives: SB (B=16), B64, LB (B=256)."""
    rng = np.random.default_rng(7)
    rows = []
    regimes = [("SB", 16, 0.0), ("B64", 64, 0.5), ("LB", 256, 1.0)]
    for regime, batch, level in regimes:
        for seed in seeds:
            ckpt = f"{regime.lower()}-{seed}"
            sharp = 1.0 + (level if lb_sharper else 1.0 - level) * 4 + 0.3 * rng.random()
            test = 0.95 - 0.03 * level + 0.01 * rng.random()
            run = {
                "checkpoint": ckpt,
                "path": f"/runs/{regime.lower()}/seed{seed}/final.pt",
                "regime": regime,
                "batch_size": float(batch),
                "lr": 1e-3,
                "seed": seed,
                "epoch": 10,
                "train_loss": 0.05,
                "train_accuracy": 0.99,
                "test_loss": 0.2,
                "test_accuracy": test,
                "generalization_gap": 0.99 - test,
                "meta": json.dumps({"dataset": "mnist1d", "network": "f1"}),
                "versions": json.dumps({"flatness": "0.1.0", "torch": "2.13.0"}),
                "device": "cpu",
                "dtype": "float32",
            }
            for eps, sub in KESKAR:
                settings = {"eps": eps, "subspace": sub, "seed": 0, "solver": "lbfgsb"}
                value = sharp * (eps / 1e-3) * (0.2 if sub else 1.0)
                rows.append({**run, "measure": "keskar", "settings": json.dumps(settings),
                             "component": "", "value": value, "details": None})  # fmt: skip
            for k, factor in (("1", 10.0), ("2", 5.0)):
                rows.append({**run, "measure": "lambda_max", "settings": '{"k": 2}',
                             "component": k, "value": factor * sharp, "details": None})  # fmt: skip
            noise = np.inf if (regime, seed) == ("LB", 0) else 100.0 * sharp
            rows.append({**run, "measure": "noise_scale", "settings": "{}", "component": "",
                         "value": noise, "details": None})  # fmt: skip
            if density:
                nodes = np.sort(rng.normal(0.0, 0.1, (2, 6)), axis=1)
                nodes[:, -1] = 10 * sharp
                weights = np.full((2, 6), 1 / 6)
                details = json.dumps({"nodes": nodes.tolist(), "weights": weights.tolist()})
                rows.append({**run, "measure": "density", "settings": '{"steps": 6}',
                             "component": "trace", "value": 3.0, "details": details})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("report")
    return build(study_frame(), out, reference="F1", n_boot=300, seed=0)


def cells(markdown: str, first: str) -> list[str]:
    """The cells of the Markdown table row whose first cell is ``first`` (first match)."""
    for line in markdown.splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and parts[0] == first:
            return parts
    raise AssertionError(f"no row {first!r}")


def test_files_are_written_and_the_html_is_self_contained(report) -> None:
    assert report.html.is_file() and report.markdown.is_file()
    names = sorted(p.name for p in report.figures)
    # training accuracy is 0.99 in every run (pinned): no gap figure, a sentence says why
    assert names == [
        "batch-size.png",
        "density.png",
        "vs-test-accuracy.png",
    ]
    page = report.html.read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(report.figures)
    assert not re.search(r"""(src|href)=["']https?:""", page)
    md = report.markdown.read_text(encoding="utf-8")
    for figure in report.figures:
        assert f"](figures/{figure.name})" in md
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in report.data} >= {"scores.csv", "table2.csv", "table3.csv"}


def test_table2_holds_mean_and_std_over_seeds(report) -> None:
    df = study_frame()
    runs = df.drop_duplicates("checkpoint")
    md = report.markdown.read_text(encoding="utf-8")
    for regime in ("SB", "B64", "LB"):
        test = runs.loc[runs.regime == regime, "test_accuracy"] * 100
        row = cells(md, regime)
        assert format_mean_std(test.mean(), test.std(ddof=1), 3) in row
    saved = pd.read_csv(report.out / "data" / "table2.csv")
    lb = saved[(saved.regime == "LB") & (saved.quantity == "test_accuracy")].iloc[0]
    expected = runs.loc[runs.regime == "LB", "test_accuracy"]
    assert lb["mean"] == pytest.approx(expected.mean(), rel=1e-12)
    assert lb["std"] == pytest.approx(expected.std(ddof=1), rel=1e-12)


def test_keskar_tables_3_and_4_with_the_paper_beside(report) -> None:
    df = study_frame()
    md = report.markdown.read_text(encoding="utf-8")
    assert "Table 3: ε-sharpness in full space" in md
    assert "Table 4: ε-sharpness in a random 100-dimensional subspace" in md
    saved = pd.read_csv(report.out / "data" / "table4.csv")
    label = column_label("keskar", {"eps": 5e-4, "subspace": 100})
    got = saved[(saved.regime == "SB") & (saved.column == label)].iloc[0]
    values = df[(df.measure == "keskar") & (df.regime == "SB")]
    values = values[
        values.settings.str.contains('"eps": 0.0005')
        & values.settings.str.contains('"subspace": 100')
    ]["value"]
    assert got["mean"] == pytest.approx(values.mean(), rel=1e-12)
    # The paper's F1 values (Table 3, LB, eps=1e-3: 205.14 ± 69.52) sit in the LB row only.
    table3 = md[md.index("**Table 3:") : md.index("**Table 4:")]
    assert "205.14 ± 69.52" in cells(table3, "LB")
    assert "205.14 ± 69.52" not in cells(table3, "B64")


def test_correlations_equal_scipy_on_the_stored_values(report) -> None:
    df = study_frame()
    head = df[(df.measure == "lambda_max") & (df.component == "1")]
    tau = stats.kendalltau(head["value"], head["test_accuracy"]).statistic
    rho = stats.spearmanr(head["value"], head["test_accuracy"]).statistic
    md = report.markdown.read_text(encoding="utf-8")
    section = md[md.index("Rank correlation of each measure with the test accuracy") :]
    row = cells(section, "λ_max")
    assert row[2].startswith(f"{tau:.2f} [")
    assert row[4].startswith(f"{rho:.2f} [")


def test_summary_states_the_measured_facts(report) -> None:
    text = "\n".join(report.summary)
    assert "9 checkpoints in 3 regime(s)" in text
    assert "LB sharper than SB in 3/3 seeds by ε-sharpness (full, ε=1e-3)" in text
    assert "LB test accuracy is" in text and "points below SB" in text
    assert "noise scale B_simple: 1 checkpoint(s) had a non-finite value, left out." in text
    assert "Kendall τ(measure, test accuracy) over" in text


def test_summary_follows_the_numbers_not_a_template(tmp_path: Path) -> None:
    flipped = build(study_frame(lb_sharper=False), tmp_path, n_boot=100)
    text = "\n".join(flipped.summary)
    assert "LB flatter than SB in 3/3 seeds by ε-sharpness (full, ε=1e-3)" in text
    assert "sharper than SB in" not in text.split("noise scale")[0]


def test_statistics_of_the_study() -> None:
    study = analyze(study_frame(), n_boot=200, seed=3)
    assert (study.sb, study.lb) == ("SB", "LB")
    comp = study.comparisons[column_label("keskar", {"eps": 1e-3, "subspace": 0})]
    assert comp.wins == (3, 3) and comp.losses == (0, 3)
    assert comp.test.p_value == pytest.approx(0.1, abs=1e-12)  # exact U test, 3 vs 3, U = 9
    # Inf noise scale: left out of its statistics, listed.
    assert study.non_finite["noise scale B_simple"] == ["lb-0"]
    assert study.by_regime[("noise scale B_simple", "LB")].n == 2
    assert study.regimes == ["SB", "B64", "LB"]


def test_one_seed_shows_no_spread(tmp_path: Path) -> None:
    report = build(study_frame(seeds=(0,)), tmp_path, n_boot=50)
    md = report.markdown.read_text(encoding="utf-8")
    table2 = md[md.index("**Table 2:") : md.index("**Table 3:")]
    for regime in ("SB", "B64", "LB"):
        assert not any("±" in cell for cell in cells(table2, regime))
    assert "Table 2: accuracy and training per regime (one run per regime)" in table2
    assert any("no spread over seeds" in s for s in report.summary)
    assert "One run per regime: no standard deviation" in md


def test_missing_measures_leave_their_sections_out_with_a_note(tmp_path: Path) -> None:
    df = study_frame(density=False)
    df = df[df.measure == "lambda_max"].drop(columns=["details"])
    report = build(df, tmp_path, n_boot=50)
    notes = "\n".join(report.notes)
    assert "no Keskar ε-sharpness" in notes
    assert "no SB/LB pair was interpolated" in notes
    assert "no spectral density" in notes
    md = report.markdown.read_text(encoding="utf-8")
    assert md.count("Left out:") == len(report.notes) == 3
    assert "Table 3" not in md and "λ_max" in md


def test_a_frame_of_ones_own_with_batch_sizes_only(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "batch_size": [32, 32, 128, 128, 512, 512],
            "seed": [0, 1, 0, 1, 0, 1],
            "test_accuracy": [0.9, 0.91, 0.89, 0.9, 0.86, 0.87],
            "measure": "my_sharpness",
            "value": [1.0, 1.2, 2.0, 2.5, 5.0, 6.0],
        }
    )
    report = build(df, tmp_path, n_boot=100)
    text = "\n".join(report.summary)
    assert "SB = B32 (smallest batch size)" in text
    assert "LB (B512) sharper than SB (B32) in 2/2 seeds by my_sharpness" in text
    assert "my_sharpness rises" in text
    assert "batch-size.png" in [p.name for p in report.figures]


def test_stale_files_of_an_earlier_report_are_removed(tmp_path: Path) -> None:
    build(study_frame(), tmp_path, n_boot=50)
    assert (tmp_path / "figures" / "density.png").exists()
    build(study_frame(density=False), tmp_path, n_boot=50)
    assert not (tmp_path / "figures" / "density.png").exists()


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (pd.DataFrame(), {}, "the results frame is empty"),
        (pd.DataFrame({"regime": ["SB"], "value": [1.0]}), {}, "lacks column(s) ['measure']"),
        (pd.DataFrame({"measure": ["x"], "value": [1.0]}), {}, "needs a 'regime' or a"),
        (None, {"sb": "SB"}, "name both the SB and the LB regime"),
        (None, {"sb": "SB", "lb": "XL"}, "regime 'XL' is not in the results"),
        (None, {"sb": "SB", "lb": "SB"}, "name two different regimes"),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path: Path, frame, kwargs, message) -> None:
    df = study_frame(density=False) if frame is None else frame
    with pytest.raises(ReportInputError, match=re.escape(message)):
        build(df, tmp_path, **kwargs)
    assert not (tmp_path / "report.html").exists()


def test_unknown_reference_network_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Keskar et al\. report the networks"):
        build(study_frame(), tmp_path / "r", reference="VGG")
    assert not (tmp_path / "r").exists()


def test_headline_components_and_labels() -> None:
    scores, columns = scores_frame(normalize(study_frame(density=False)))
    labels = [c.label for c in columns]
    assert labels[:4] == [
        "ε-sharpness (full, ε=1e-3)",
        "ε-sharpness (full, ε=5e-4)",
        "ε-sharpness (subspace 100, ε=1e-3)",
        "ε-sharpness (subspace 100, ε=5e-4)",
    ]
    lam = scores[scores.label == "λ_max"]
    raw = study_frame(density=False)
    first = raw[(raw.measure == "lambda_max") & (raw.component == "1")]
    assert sorted(lam["value"]) == sorted(first["value"])  # the largest eigenvalue, not λ_2


BASE = {
    "seed": [0, 1, 0, 1],
    "regime": ["SB", "SB", "LB", "LB"],
    "batch_size": [8, 8, 64, 64],
    "test_accuracy": [0.9, 0.91, 0.88, 0.87],
    "train_accuracy": [1.0] * 4,
}


def test_a_measure_with_no_finite_value_is_counted_not_fatal(tmp_path: Path) -> None:
    df = pd.concat(
        [
            pd.DataFrame({**BASE, "measure": "m", "value": [np.inf] * 4}),
            pd.DataFrame({**BASE, "measure": "z", "value": [1.0, 2.0, 3.0, 4.0]}),
        ]
    )
    report = build(df, tmp_path, n_boot=50)
    assert "m: 4 checkpoint(s) had a non-finite value, left out." in report.summary
    assert "LB sharper than SB in 2/2 seeds by z" in "\n".join(report.summary)


def test_keskar_settings_beyond_eps_get_their_own_columns(tmp_path: Path) -> None:
    settings = [f'{{"eps": 0.001, "subspace": 0, "solver": "{s}"}}' for s in ("pga", "lbfgsb")]
    df = pd.DataFrame(
        {
            **{k: v * 2 for k, v in BASE.items()},
            "measure": "keskar",
            "settings": [settings[0]] * 4 + [settings[1]] * 4,
            "value": np.arange(8.0),
        }
    )
    md = build(df, tmp_path, n_boot=50).markdown.read_text(encoding="utf-8")
    row = cells(md[md.index("**Table 3:") :], "SB")
    assert row[2:4] == ["4.50 ± 0.71", "0.500 ± 0.707"]  # lbfgsb: 4, 5; pga: 0, 1
    assert "ε-sharpness (full, ε=1e-3, solver=pga)" in md


def test_runs_without_seeds_are_compared_by_their_means(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {"regime": ["SB", "LB"], "measure": "m", "value": [1.0, 2.0], "test_accuracy": [0.9, 0.8]}
    )
    text = "\n".join(build(df, tmp_path, n_boot=50).summary)
    assert "LB sharper than SB on average by m (no seed was trained in both regimes)" in text
    assert "LB test accuracy is 10.00 points below SB: 80.0% vs 90.0%" in text


def test_learning_rate_sweeps_get_the_noise_scale_view(tmp_path: Path) -> None:
    # Smith et al. 2018: (B, lr) pairs with the same lr/B; the measure follows lr/B only.
    batch = [16, 16, 64, 64, 64, 64, 256, 256]
    lr = [1e-3, 1e-3, 4e-3, 4e-3, 1e-3, 1e-3, 4e-3, 4e-3]
    noise = np.array(lr) / np.array(batch)
    df = pd.DataFrame(
        {
            "batch_size": batch,
            "lr": lr,
            "seed": [0, 1] * 4,
            "regime": [f"B{b}-lr{r:g}" for b, r in zip(batch, lr, strict=True)],
            "test_accuracy": 0.9 + noise * 10,
            "measure": "m",
            "value": 1e-3 / noise + np.arange(8) * 0.01,
        }
    )
    report = build(df, tmp_path, n_boot=100)
    assert "noise.png" in [p.name for p in report.figures]
    md = report.markdown.read_text(encoding="utf-8")
    assert "τ with η/B [CI]" in md
    study = analyze(df, n_boot=100)
    trend = study.noise_trend["m"]  # m falls as the noise rises; ties in eta/B cap |tau-b|
    assert trend.estimate < -0.7 and trend.high < 0
    sentence = next(s for s in report.summary if s.startswith("With η/B, "))
    assert "test accuracy rises (" in sentence and "; m falls (" in sentence


def test_one_learning_rate_says_eta_over_b_adds_nothing(tmp_path: Path) -> None:
    df = study_frame(density=False)
    report = build(df, tmp_path, n_boot=50)
    md = report.markdown.read_text(encoding="utf-8")
    assert "Every run has learning rate η = 0.001, so η/B is proportional to 1/B" in md
    assert "noise.png" not in [p.name for p in report.figures]


def test_many_measures_spread_over_several_figures(tmp_path: Path) -> None:
    from flatness.report.figures import PANELS_PER_FIGURE

    n = PANELS_PER_FIGURE + 3
    df = pd.concat(
        [
            pd.DataFrame({**BASE, "measure": f"m{i:02d}", "value": [1.0, 2.0, 3.0, 4.0]})
            for i in range(n)
        ]
    )
    mine = tmp_path / "figures" / "mine.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"not ours")
    report = build(df, tmp_path, n_boot=20)
    names = sorted(p.name for p in report.figures)
    assert names == [
        "batch-size-2.png",
        "batch-size.png",
        "vs-test-accuracy-2.png",
        "vs-test-accuracy.png",
    ]
    assert "(part 2 of 2)" in report.markdown.read_text(encoding="utf-8")
    build(df[df.measure == "m00"], tmp_path, n_boot=20)
    left = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert "batch-size-2.png" not in left and "mine.png" in left  # only our own files go


def _confounded(within: list[float]) -> pd.DataFrame:
    """4 batch sizes x 4 seeds; sharpness and accuracy both follow the batch size, and
    within a batch size the accuracy of the seeds ranked by sharpness is ``within``."""
    rows = []
    for r, batch in enumerate((16, 64, 256, 1024)):
        for seed in range(4):
            rows.append(
                {"regime": f"B{batch}", "batch_size": batch, "seed": seed, "measure": "lambda_max",
                 "value": 10.0 * (r + 1) + seed, "test_accuracy": 0.95 - 0.05 * r + within[seed],
                 "train_accuracy": 0.99}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_summary_says_when_only_the_regime_links_sharpness_and_accuracy() -> None:
    from flatness.report.summary import summary_sentences

    # Within each batch size the ranks are (2, 4, 1, 3): exactly as many concordant
    # pairs as discordant ones, so the within-regime tau is 0.
    study = analyze(_confounded([0.002, 0.004, 0.001, 0.003]), n_boot=500)
    pooled = study.correlations[("λ_max", "test_accuracy", "kendall")]
    within = study.correlations[("λ_max", "test_accuracy", "within")]
    assert pooled.estimate < -0.6 and within.estimate == 0.0
    text = " ".join(summary_sentences(study))
    assert "same regime (different seeds), none of them is significant" in text

    study = analyze(_confounded([0.004, 0.003, 0.002, 0.001]), n_boot=500)
    assert study.correlations[("λ_max", "test_accuracy", "within")].estimate == -1.0
    text = " ".join(summary_sentences(study))
    assert (
        "Counting only pairs of checkpoints from the same regime, still significant: λ_max" in text
    )
