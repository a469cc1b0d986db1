"""The report names the checkpoints scored with stale (or recomputed) BatchNorm statistics."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

import flatness as fl
from flatness.batchnorm import StaleBatchNormWarning
from tests.pipeline.conftest import manifest_text
from tests.pipeline.factories import bn_net, stale_bn_net


def test_a_report_from_the_store_names_the_stale_checkpoint(tmp_path: Path) -> None:
    for i in range(2):
        torch.save(stale_bn_net().state_dict(), tmp_path / f"stale{i}.pt")
        torch.save(bn_net(seed=i).state_dict(), tmp_path / f"fresh{i}.pt")
    runs = ["stale0.pt", "fresh0.pt", "stale1.pt", "fresh1.pt"]
    text = manifest_text(runs, measures="lambda_max = { k = 1 }",
                         model='factory = "tests.pipeline.factories:bn_net"')  # fmt: skip
    (tmp_path / "m.toml").write_text(text.replace("examples = 30\n", "examples = 40\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleBatchNormWarning)
        assert fl.score(tmp_path / "m.toml", store=tmp_path / "s.sqlite").ok
    df = fl.load_results(tmp_path / "s.sqlite", details=True)
    page = Path(fl.report.build(df, out=tmp_path / "r").markdown).read_text()
    assert "## BatchNorm statistics" in page
    assert "2 checkpoint(s) had stale BatchNorm statistics" in page
    assert "recompute_batchnorm = true" in page
    section = page.split("## BatchNorm statistics")[1].split("<a id=")[0]
    assert "stale0.pt" in section and "fresh0.pt" not in section
    without_meta = fl.report.build(df.drop(columns="meta"), out=tmp_path / "q").markdown
    assert "BatchNorm statistics" not in Path(without_meta).read_text()
