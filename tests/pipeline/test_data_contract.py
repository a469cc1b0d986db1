"""What a data factory may return (flatness.dataset's contract), scored end to end.

Token ids stay integers, dicts of tensors and Hugging Face-style data sets become dict
batches, a list of batches is scored as given, and modules beside a manifest are found
when a factory imports them as it is called.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from flatness.dataset import BatchData, Dataset, coerce_data
from flatness.pipeline.scoring import score
from flatness.zoo.data import load_dataset
from tests.pipeline.conftest import REPO
from tests.pipeline.factories import batch_list_data, dict_data, item_data, token_data, token_net


def _token_manifest(tmp_path: Path, data: str, scoring: str = "") -> Path:
    torch.save(token_net().state_dict(), tmp_path / "r.pt")
    path = tmp_path / "m.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [model]
            factory = "tests.pipeline.factories:token_net"
            [data]
            factory = "tests.pipeline.factories:{data}"
            [scoring]
            dtype = "float64"
            batch_size = 10
            {scoring}
            [measures]
            lambda_max = {{ k = 1 }}
            [[runs]]
            path = "r.pt"
            """
        )
    )
    return path


def test_token_ids_keep_their_dtype() -> None:
    data = coerce_data(token_data(), name="t", settings={})
    assert isinstance(data, Dataset)
    assert data.train[0].dtype == torch.int64 and data.num_classes == 3


def test_floating_targets_make_a_data_set_without_classes() -> None:
    x = torch.randn(6, 2, dtype=torch.float64)
    data = coerce_data(((x, x[:, :1]), (x, x[:, :1])), name="r", settings={})
    assert isinstance(data, Dataset) and data.num_classes == 0
    assert data.train[1].dtype == torch.float64  # targets keep their dtype


@pytest.mark.parametrize("factory", ["token_data", "dict_data", "item_data", "batch_list_data"])
def test_every_form_of_data_is_scored(tmp_path: Path, factory: str) -> None:
    summary = score(_token_manifest(tmp_path, factory), store=tmp_path / "s.sqlite")
    assert summary.ok, summary.failures
    assert summary.computed == 1


def test_dicts_and_items_become_dict_batches() -> None:
    for made in (dict_data(), item_data()):
        data = coerce_data(made, name="d", settings={})
        assert isinstance(data, BatchData) and isinstance(data.train, dict)
        assert set(data.train) == {"input_ids", "labels"}  # the text column is dropped
        assert data.train["input_ids"].dtype == torch.int64
        assert (data.n_train, data.n_test) == (24, 8)


def test_a_list_of_batches_refuses_a_subset(tmp_path: Path) -> None:
    manifest = _token_manifest(tmp_path, "batch_list_data", "examples = 5")
    summary = score(manifest, store=tmp_path / "s.sqlite")
    assert not summary.ok
    assert "[scoring] examples = 5" in summary.failures[0]
    assert coerce_data(batch_list_data(), name="b", settings={}).n_train == 20


def test_training_still_needs_class_labels() -> None:
    x = torch.randn(6, 2)
    with pytest.raises(TypeError, match="labels must be integers"):
        from flatness.dataset import coerce_dataset

        coerce_dataset(((x, x), (x, x)), name="r", settings={})
    with pytest.raises(TypeError, match="not trained on"):
        load_dataset("tests.pipeline.factories:dict_data")


def test_items_of_different_lengths_are_refused_with_the_remedy() -> None:
    ds = item_data()[0]
    ds.ids = [list(range(i % 3 + 1)) for i in range(len(ds.labels))]  # type: ignore[assignment]
    ds.ids = [torch.tensor(i) for i in ds.ids]  # type: ignore[assignment]
    with pytest.raises(ValueError, match="pad them to one length"):
        coerce_data((ds, ds), name="pkg:items", settings={})


def test_modules_beside_the_manifest_are_found_when_factories_are_called(
    tmp_path: Path,
) -> None:
    """A factory that imports a sibling module when called, run from another folder
    (module names no other test imports: a module already imported is not looked up)."""
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "h2_models.py").write_text(
        "def build():\n    import h2_helpers\n    return h2_helpers.net()\n"
    )
    (folder / "h2_helpers.py").write_text(
        "from torch import nn\n\ndef net():\n    return nn.Sequential(nn.Linear(5, 3))\n"
    )
    (folder / "h2_data.py").write_text(
        "def load():\n    import h2_tokens\n    return h2_tokens.pairs()\n"
    )
    (folder / "h2_tokens.py").write_text(
        "import torch\n\ndef pairs():\n    g = torch.Generator().manual_seed(0)\n"
        "    x = torch.randn(20, 5, generator=g)\n    y = torch.arange(20) % 3\n"
        "    return (x, y), (x, y)\n"
    )
    torch.manual_seed(0)
    torch.save(torch.nn.Sequential(torch.nn.Linear(5, 3)).state_dict(), folder / "r.pt")
    (folder / "m.toml").write_text(
        '[model]\nfactory = "h2_models:build"\n[data]\nfactory = "h2_data:load"\n'
        '[measures]\nlambda_max = {}\n[[runs]]\npath = "r.pt"\n'
    )
    before = list(sys.path)
    summary = score(folder / "m.toml", store=tmp_path / "s.sqlite")
    assert summary.ok, summary.failures
    assert sys.path == before  # the folder is taken off sys.path after the sweep
    out = subprocess.run(
        [sys.executable, "-m", "flatness", "score", "study/m.toml", "--store", "t.sqlite"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "1 tasks computed" in out.stdout


def test_an_indexable_data_set_that_is_not_torch_s_is_read_too() -> None:
    class Rows:  # what a Hugging Face datasets.Dataset looks like: no torch base class
        def __init__(self, n: int) -> None:
            self.items = item_data()[0]
            self.n = n

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int) -> dict:
            return self.items[i]

    data = coerce_data((Rows(10), Rows(3)), name="hf", settings={})
    assert isinstance(data, BatchData) and data.n_train == 10
    assert data.train["labels"].dtype == torch.int64
