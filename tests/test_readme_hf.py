"""The README's "Transformers and Hugging Face" example runs as written (issue 16 item 7)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("transformers")

README = Path(__file__).resolve().parents[1] / "README.md"

SNIPPET = """\
import torch
from transformers import GPT2Config, GPT2LMHeadModel
import flatness as fl

config = GPT2Config(vocab_size=100, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                    bos_token_id=0, eos_token_id=0)
model = GPT2LMHeadModel(config).eval()                      # built from a config: no download
gen = torch.Generator().manual_seed(0)
batches = [                                                  # what a tokenizer returns
    {"input_ids": torch.randint(0, 100, (4, 16), generator=gen),
     "attention_mask": torch.ones(4, 16, dtype=torch.long)}
    for _ in range(2)
]
obj = fl.Objective(model, batches, batch_loss=fl.causal_lm_loss)   # token-mean next-token loss
top = fl.hessian_eigenvalues(obj, k=1, tol=1e-3, seed=0)
trace = fl.hessian_trace(obj, method="hutchpp", budget=40, seed=0)
print(top.eigenvalues[0], top.all_converged, trace.estimate, trace.stderr)
print(top.choices["attention"])                              # 'math'
"""


def _readme_block() -> str | None:
    """The first Python block of the README's Transformers section, if it has one."""
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    section = re.search(r"^## Transformers and Hugging Face$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if section is None:
        return None
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    return None if block is None else block.group(1)


def test_the_example_runs_and_routes_attention(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(SNIPPET, "README example", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    value, converged, trace, stderr = lines[0].split()
    assert float(value) > 0 and converged == "True"
    assert float(trace) == float(trace) and float(stderr) >= 0  # finite numbers
    assert lines[1] == "math"


def test_the_readme_shows_this_example() -> None:
    block = _readme_block()
    assert block is not None, "the README has no 'Transformers and Hugging Face' section"
    assert block.strip() == SNIPPET.strip()
