"""How much of Keskar's ε-sharpness is the gradient? A first-order check of the study.

Keskar et al.'s Metric 2.1 is the largest rise of the training loss f in the box
C_ε = {y : |y_i| ≤ ε(|x_i| + 1)} around the checkpoint x, relative to 1 + f(x), ×100.
At a point that is not an exact minimum (training stops at 98% training accuracy, so
the full-batch gradient g is not zero) the rise has a first-order part

    φ_lin = 100 · ε Σ_i |g_i| (|x_i| + 1) / (1 + f(x)),

the maximum of g·y over the box, reached at a corner; the curvature can add at most

    φ_quad ≤ 100 · ½ ε² λ_max ‖|x| + 1‖² / (1 + f(x))

(the box's largest squared radius times the largest eigenvalue). If the measured φ is
close to φ_lin, the metric at these checkpoints ranks them by their gradient, not by
the curvature of the minimum. This script computes both bounds for every checkpoint of
the study (on the same objective the store's numbers were computed on, via
:func:`flatness.pipeline.scoring_objective`) and writes
``reports/keskar-mnist1d/first-order.md`` and ``first-order.csv``.

Usage (after ``python analyses/keskar/run.py``)::

    python analyses/keskar/first_order.py     # about a minute on 2 CPU cores
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

import flatness as fl
from flatness.report import format_mean_std
from flatness.studies.keskar2017 import FULL

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs/keskar"  # the folders analyses/keskar/run.py gives the study
OUT = ROOT / "reports/keskar-mnist1d"


def first_order_rows(case: str) -> list[dict[str, object]]:
    """φ, φ_lin and the quadratic bound for every checkpoint and ε of one case."""
    folder = RUNS / case
    df = fl.load_results(folder / "results.sqlite")
    settings = df["settings"].map(json.loads)
    keskar = df[(df.measure == "keskar") & (settings.map(lambda s: s.get("subspace")) == 0)]
    lam = df[(df.measure == "lambda_max") & (df.component == "1")].set_index("checkpoint")
    rows: list[dict[str, object]] = []
    for checkpoint, group in keskar.groupby("checkpoint"):
        first = group.iloc[0]
        obj = fl.pipeline.scoring_objective(folder / "manifest.toml", folder / first.path)
        theta = obj.theta0
        with torch.no_grad():
            loss = float(obj.value(theta))
        grad = obj.gradient(theta)
        scale = theta.abs() + 1
        linear = float((grad.abs() * scale).sum())
        radius2 = float((scale**2).sum())
        top = float(lam.loc[checkpoint, "value"]) if checkpoint in lam.index else float("nan")
        for _, row in group.iterrows():
            eps = float(json.loads(row.settings)["eps"])
            rows.append(
                {
                    "case": case,
                    "regime": row.regime,
                    "batch_size": row.batch_size,
                    "seed": row.seed,
                    "eps": eps,
                    "phi": float(row.value),
                    "phi_linear": 100 * eps * linear / (1 + loss),
                    "phi_quadratic_bound": 100 * 0.5 * eps**2 * top * radius2 / (1 + loss),
                    "grad_norm": float(grad.norm()),
                    "train_loss": loss,
                    "test_accuracy": float(row.test_accuracy),
                }
            )
    return rows


def main() -> int:
    torch.set_num_threads(2)
    started = time.perf_counter()
    frame = pd.DataFrame([r for case in FULL.cases for r in first_order_rows(case.name)])
    frame["linear_share"] = frame["phi_linear"] / frame["phi"]
    frame["beyond_quadratic"] = frame["phi"] > frame["phi_linear"] + frame["phi_quadratic_bound"]
    OUT.mkdir(parents=True, exist_ok=True)
    frame.to_csv(OUT / "first-order.csv", index=False)
    lines = [
        "# How much of Keskar's ε-sharpness is the gradient?",
        "",
        "Written by `python analyses/keskar/first_order.py` from the stores of "
        "`python analyses/keskar/run.py`. For every checkpoint: the stored full-space ε-sharpness "
        "φ (10 L-BFGS-B iterations), its first-order part φ_lin = 100·ε·Σ|g_i|(|x_i|+1)/(1+f) "
        "(the maximum of the linearized rise over the box) and an upper bound on what "
        "the curvature can add, 100·½ε²·λ_max·‖|x|+1‖²/(1+f). Mean ± std over seeds; "
        "φ_lin/φ per checkpoint; φ above both: checkpoints whose φ exceeds φ_lin plus the "
        "curvature bound.",
        "",
        "| case | regime | batch | ε | φ | φ_lin | φ_lin / φ | curvature bound | φ above both "
        "| ‖g‖ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (case, batch, regime, eps), group in frame.groupby(
        ["case", "batch_size", "regime", "eps"], sort=True
    ):
        n = len(group)

        def cell(column: str, data: pd.DataFrame = group, n: int = n) -> str:
            return format_mean_std(data[column].mean(), data[column].std(ddof=1), n)

        lines.append(
            f"| {case} | {regime} | {int(batch)} | {eps:g} | {cell('phi')} | "
            f"{cell('phi_linear')} | {cell('linear_share')} | {cell('phi_quadratic_bound')} "
            f"| {int(group['beyond_quadratic'].sum())}/{n} | {cell('grad_norm')} |"
        )
    share = frame["linear_share"]
    lines += [
        "",
        f"Over all {len(frame)} checkpoint × ε values, φ_lin / φ ranges from "
        f"{share.min():.2f} to {share.max():.2f} (median {share.median():.2f}). "
        f"In {int(frame['beyond_quadratic'].sum())} of them φ exceeds φ_lin plus the "
        "curvature bound: the rise in the box is then beyond any quadratic model of the "
        "loss at the checkpoint (higher-order terms; the box reaches far outside the "
        "region where the Hessian describes the loss).",
        "",
        f"Computed in {time.perf_counter() - started:.0f} s.",
    ]
    (OUT / "first-order.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
