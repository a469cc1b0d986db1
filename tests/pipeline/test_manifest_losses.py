"""A manifest names its loss: built-in names, a loss_fn or a batch_loss by "module:function".

The end-to-end case is issue 16's: a tiny GPT-2 built from a config in a model factory
beside the manifest, random tokens from a data factory beside it, ``loss =
"causal_lm"``, scored by ``python -m flatness score`` run from another folder.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from flatness.pipeline.manifest import ManifestError, read_manifest
from flatness.pipeline.named_losses import resolve_loss
from flatness.pipeline.scoring import score
from tests.pipeline.conftest import REPO, manifest_text, save_run


def _sweep(tmp_path: Path, scoring: str) -> Path:
    save_run(tmp_path / "r0.pt", 0)
    text = manifest_text(["r0.pt"], measures="lambda_max = { k = 1 }")
    text = text.replace('dtype = "float64"\n', f'dtype = "float64"\n{scoring}\n')
    (tmp_path / "m.toml").write_text(text)
    return tmp_path / "m.toml"


@pytest.mark.parametrize(
    ("scoring", "match"),
    [
        ('loss = "l2"', r"m\.toml:\d+: \[scoring\] loss: unknown loss 'l2'.*cross_entropy, mse"),
        ('batch_loss = "lm_loss"', r"\[scoring\] batch_loss: give a batch_loss.*module:function"),
        ('loss = "mse"\nbatch_loss = "a:b"', r"\[scoring\] batch_loss: give one of loss"),
        ('loss = "os:system"', r"\[scoring\] loss: .*standard library"),
        ("loss = 3", r"\[scoring\] loss: must be a string"),
    ],
)
def test_a_wrong_loss_names_the_setting_and_its_line(
    tmp_path: Path, scoring: str, match: str
) -> None:
    with pytest.raises(ManifestError, match=match):
        read_manifest(_sweep(tmp_path, scoring))


def test_built_in_names_resolve() -> None:
    from flatness.losses import causal_lm_loss, sequence_classification_loss

    assert resolve_loss({}).loss_fn is F.cross_entropy
    assert resolve_loss({"loss": "mse"}).loss_fn is F.mse_loss
    assert resolve_loss({"loss": "causal_lm"}).batch_loss is causal_lm_loss
    seq = resolve_loss({"loss": "sequence_classification"})
    assert seq.batch_loss is sequence_classification_loss and seq.loss_fn is None


def test_a_loss_beside_the_manifest_and_a_missing_one(tmp_path: Path) -> None:
    (tmp_path / "mylosses.py").write_text(
        "import torch.nn.functional as F\n\n"
        "def half_ce(output, target):\n    return 0.5 * F.cross_entropy(output, target)\n\n"
        "def batch_ce(model_fn, batch):\n    x, y = batch\n"
        "    return F.cross_entropy(model_fn(x), y)\n"
    )
    values = {}
    for name, scoring in (
        ("default", ""),
        ("half", 'loss = "mylosses:half_ce"'),
        ("batch", 'batch_loss = "mylosses:batch_ce"'),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "mylosses.py").write_text((tmp_path / "mylosses.py").read_text())
        summary = score(_sweep(folder, scoring), store=folder / "s.sqlite")
        assert summary.ok, summary.failures
        with sqlite3.connect(folder / "s.sqlite") as db:
            values[name] = db.execute("SELECT value FROM measurements").fetchone()[0]
            train_loss = db.execute("SELECT train_loss FROM runs").fetchone()[0]
        values[name + "_loss"] = train_loss
    assert values["half"] == pytest.approx(0.5 * values["default"], rel=1e-8)
    assert values["batch"] == pytest.approx(values["default"], rel=1e-8)
    assert values["half_loss"] == pytest.approx(0.5 * values["default_loss"], rel=1e-8)
    gone = tmp_path / "gone"
    gone.mkdir()
    with pytest.raises(ValueError, match=r"\[scoring\] loss 'nomodule:f': cannot import"):
        score(_sweep(gone, 'loss = "nomodule:f"'), store=gone / "s.sqlite")


def test_another_loss_is_another_objective_but_the_default_is_the_old_one(
    tmp_path: Path,
) -> None:
    manifest = _sweep(tmp_path, "")
    assert score(manifest, store=tmp_path / "s.sqlite").ok
    same = manifest.read_text().replace(
        'dtype = "float64"\n', 'dtype = "float64"\nloss = "cross_entropy"\n'
    )
    manifest.write_text(same)
    assert score(manifest, store=tmp_path / "s.sqlite").reused == 1
    manifest.write_text(same.replace('"cross_entropy"', '"mse"'))
    with pytest.raises(ValueError, match=r"\[scoring\] loss = 'cross_entropy' → 'mse'"):
        score(manifest, store=tmp_path / "s.sqlite")


def test_a_tiny_gpt2_beside_its_manifest_is_scored_by_the_command(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "lm_model.py").write_text(
        textwrap.dedent(
            """
            import torch
            from transformers import GPT2Config, GPT2LMHeadModel

            def tiny_gpt2(vocab=32):
                torch.manual_seed(0)
                config = GPT2Config(vocab_size=vocab, n_positions=16, n_embd=8, n_layer=1,
                                    n_head=2)
                return GPT2LMHeadModel(config)
            """
        )
    )
    (folder / "lm_data.py").write_text(
        textwrap.dedent(
            """
            import torch

            def random_tokens(n=6, length=8, vocab=32):
                g = torch.Generator().manual_seed(0)
                ids = torch.randint(0, vocab, (n + 2, length), generator=g)
                mask = torch.ones_like(ids)
                mask[0, -3:] = 0  # one padded sequence
                return ({"input_ids": ids[:n], "attention_mask": mask[:n]},
                        {"input_ids": ids[n:], "attention_mask": mask[n:]})
            """
        )
    )
    sys.path.insert(0, str(folder))
    try:
        from lm_model import tiny_gpt2  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("lm_model", None)
    torch.save(tiny_gpt2().state_dict(), folder / "gpt2.pt")
    (folder / "m.toml").write_text(
        textwrap.dedent(
            """
            [model]
            factory = "lm_model:tiny_gpt2"
            [data]
            factory = "lm_data:random_tokens"
            [scoring]
            loss = "causal_lm"
            batch_size = 4
            [measures]
            lambda_max = { k = 1 }
            trace = { method = "hutchpp", budget = 12 }
            [[runs]]
            path = "gpt2.pt"
            regime = "SB"
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "flatness", "score", "lm/m.toml", "--no-progress"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "2 tasks computed" in out.stdout, out.stdout
    with sqlite3.connect(folder / "results.sqlite") as db:
        (train_loss,) = db.execute("SELECT train_loss FROM runs").fetchone()
        lam = db.execute("SELECT value FROM measurements WHERE measure = 'lambda_max'").fetchone()[
            0
        ]
    assert 2.0 < train_loss < 5.0  # about log(32) = 3.47 for a random network
    assert lam > 0


def test_a_tiny_bert_with_the_sequence_classification_loss(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tests.pipeline.factories import tiny_bert

    torch.save(tiny_bert().state_dict(), tmp_path / "bert.pt")
    (tmp_path / "m.toml").write_text(
        '[model]\nfactory = "tests.pipeline.factories:tiny_bert"\n'
        '[data]\nfactory = "tests.pipeline.factories:bert_data"\n'
        '[scoring]\nloss = "sequence_classification"\nbatch_size = 5\n'
        '[measures]\nlambda_max = { k = 1 }\n[[runs]]\npath = "bert.pt"\n'
    )
    summary = score(tmp_path / "m.toml", store=tmp_path / "s.sqlite", groups="blocks")
    assert summary.ok, summary.failures
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        settings = [s for (s,) in db.execute("SELECT settings FROM measurements")]
        (train_loss,) = db.execute("SELECT train_loss FROM runs").fetchone()
    assert 0.5 < train_loss < 2.0  # about log(3) for a random classifier
    assert sorted(json.loads(s).get("group", "") for s in settings) == ["", "bert", "classifier"]
