"""A study declared in TOML, run end to end by `flatness study`, and its format's checks."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from flatness.cli import main
from flatness.study import StudySpec, load_study, study_from_dict

# The miniature of tests/test_demo.py: a tiny MLP for a few epochs on 200 MNIST-1D signals.
STUDY_TOML = """
name = "mini-toml"
title = "A miniature study declared in TOML"
questions = ["Is LB sharper than SB in every seed?"]

[defaults]
seeds = [0, 1]
examples = 100
measures = { lambda_max = { k = 1 }, keskar = { eps = [1e-3], subspace = [0], maxiter = 3 } }
train = { optimizer = "adam", lr = 1e-3, epochs = 2, target_accuracy = 0.98 }

[[cases]]
name = "tiny"
title = "tiny MLP on MNIST-1D: SB vs LB"
reference = "F1"
pair_seed = 0
regimes = { SB = { batch_size = "0.5%" }, LB = { batch_size = "10%" } }
sweep = { B5 = { batch_size = 5 } }
sweep_seeds = [0]

[cases.train]
network = "tiny_mlp"
network_kwargs = { width = 8, depth = 1 }
dataset = "mnist1d"
dataset_kwargs = { n_train = 200, n_test = 100 }
"""


def _run(args: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(args)
    return code, buffer.getvalue()


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_toml_study_runs_end_to_end_and_reruns_reuse_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("study.toml").write_text(STUDY_TOML, encoding="utf-8")
    args = ["study", "study.toml", "--runs", "r", "--out", "o", "--no-progress"]
    code, printed = _run(args)
    assert code == 0, printed
    assert "flatness study mini-toml, plan main" in printed
    assert "train: 5 networks" in printed and "\n- tiny: LB is" in printed
    for path in ("o/report.html", "o/report.md", "o/tiny/report.html", "r/tiny/results.sqlite"):
        assert Path(path).is_file(), path
    manifest = Path("r/tiny/manifest.toml").read_text(encoding="utf-8")
    assert manifest.count("[[runs]]") == 5 and 'sb = "sb/seed0/final.pt"' in manifest
    md = Path("o/report.md").read_text(encoding="utf-8")
    assert "flatness study study.toml --runs r --out o" in md
    assert "tiny: tiny_mlp (width=8, depth=1) on mnist1d" in md
    # The [defaults] train table is merged under the case's own.
    assert "adam, lr 0.001, until 98% training accuracy (at most 2 epochs)" in md

    code, printed = _run(args)
    assert code == 0, printed
    assert "0 networks trained and 5 reused" in printed and "is up to date" in printed
    assert "0 tasks (measures and parametric plots) computed" in printed


def test_study_list_names_the_built_in_studies_and_their_questions() -> None:
    code, printed = _run(["study", "--list"])
    assert code == 0
    assert printed.startswith("keskar2017: ")
    assert "plans: demo, full, ci (default demo)" in printed
    assert "demo: Batch size in two questions" in printed  # the demo study is listed too
    from flatness.studies import keskar2017

    assert f"- {keskar2017.QUESTIONS[0]}" in printed


def test_study_needs_its_folders_and_a_known_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["study", "keskar2017"]) == 1
    assert "give --runs DIR and --out DIR" in capsys.readouterr().err
    assert main(["study", "nope", "--runs", "r", "--out", "o"]) == 1
    assert "no built-in study 'nope'; choose one of ['demo', 'hoffer2017', 'keskar2017'" in (
        capsys.readouterr().err
    )
    assert main(["study", "keskar2017", "--plan", "huge", "--runs", "r", "--out", "o"]) == 1
    assert "has no plan 'huge'; choose one of ['ci', 'demo', 'full']" in capsys.readouterr().err
    assert not Path("r").exists() and not Path("o").exists()


def test_load_study_reads_cases_defaults_and_questions(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(STUDY_TOML, encoding="utf-8")
    study = load_study(path)
    assert isinstance(study, StudySpec)
    assert study.questions == ("Is LB sharper than SB in every seed?",)
    case = study.plan().cases[0]
    assert case.seeds == (0, 1) and case.sweep_seeds == (0,) and case.pair == ("SB", "LB")
    assert case.train["optimizer"] == "adam" and case.train["network"] == "tiny_mlp"
    assert case.measures["lambda_max"] == {"k": 1}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"name": "s", "title": "t", "cases": []}, "at least one"),
        ({"title": "t", "cases": [{}]}, "the study's name"),
        ({"name": "s", "title": "t", "plans": {}}, "unknown top-level keys"),
        ({"name": "s", "title": "t", "defaults": {"seed": [0]}}, r"\[defaults\] has unknown"),
        (
            {"name": "s", "title": "t", "cases": [{"name": "a", "title": "a", "epochs": 3}]},
            r"case 1: unknown keys \['epochs'\]",
        ),
        (
            {"name": "s", "title": "t", "cases": [{"name": "a", "title": "a", "train": {}}]},
            r"missing \['regimes', 'seeds'\]",
        ),
        (
            {
                "name": "s",
                "title": "t",
                "cases": [
                    {
                        "name": "a",
                        "title": "a",
                        "train": {},
                        "seeds": [1],
                        "regimes": {"SB": {}, "LB": {}},
                        "pair_seed": 0,
                    }
                ],
            },
            "pair_seed 0 is not among the seeds",
        ),
    ],
)
def test_study_files_are_checked(doc: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        study_from_dict(doc)


def test_a_file_that_is_not_toml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = ", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_study(path)
