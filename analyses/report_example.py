"""An example comparison report: train, score and report a small SB/LB study on digits.

Trains scikit-learn's digits (shipped with the package, no download) with the zoo's
``tiny_mlp`` at three batch sizes (SB = 16, B64, LB = 10% of the training set, about
144), five seeds each, with Adam to 98% training accuracy (Keskar et al.'s protocol);
scores every checkpoint with λ_max, the Hutch++ trace, the spectral density, Keskar's
ε-sharpness (ε = 1e-3, 5e-4; full space and a 100-dimensional random subspace),
adaptive and average sharpness and the gradient noise scale, plus the parametric plot
between the seed-0 SB and LB runs (same initialization); then writes the report with
Keskar et al.'s F1 values beside ours.

Usage::

    python analyses/report_example.py      # about two minutes on 2 CPU cores

Checkpoints and the results store go to ``runs/report-example/`` (reruns reuse both);
the report to ``reports/example-digits/`` (``report.html``, ``report.md``, ``figures/``,
``data/``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import flatness as fl
from flatness.zoo.sweep import SweepSpec, train_sweep

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "report-example"
OUT = ROOT / "reports" / "example-digits"

SWEEP = SweepSpec(
    train={
        "network": "tiny_mlp",
        "dataset": "digits_flat",
        "optimizer": "adam",
        "lr": 3e-3,
        "epochs": 60,
        "target_accuracy": 0.98,
    },
    regimes={"SB": {"batch_size": 16}, "B64": {"batch_size": 64}, "LB": {"batch_size": "10%"}},
    seeds=(0, 1, 2, 3, 4),
    scoring={"examples": 1000, "seed": 0},
    measures={
        "lambda_max": {"k": 3},
        "trace": {},
        "density": {},
        "keskar": {"eps": [1e-3, 5e-4], "subspace": [0, 100]},
        "adaptive_sharpness": {"rho": 0.05},
        "average_sharpness": {"sigma": 0.01},
        "noise_scale": {},
    },
)

PAIR = '\n[[pairs]]\nsb = "sb/seed0/final.pt"\nlb = "lb/seed0/final.pt"\nlabel = "seed 0"\n'


def main() -> int:
    torch.set_num_threads(2)
    started = time.perf_counter()
    result = train_sweep(SWEEP, RUNS, progress=False)
    trained = sum(run.status == "trained" for run in result.runs)
    print(f"trained {trained} runs, reused {len(result.runs) - trained} ({RUNS})")
    text = result.manifest.read_text(encoding="utf-8")
    if "[[pairs]]" not in text:
        result.manifest.write_text(text + PAIR, encoding="utf-8")
    summary = fl.score(result.manifest, progress=False)
    print(summary)
    report = fl.report.build_from_store(
        summary.store,
        OUT,
        reference="F1",
        title="Example report: tiny MLP on digits, SB vs LB",
        command="python analyses/report_example.py",
        root=RUNS,
    )
    print("\n".join(report.summary))
    print(f"wrote {report.html} and {report.markdown} in {time.perf_counter() - started:.0f} s")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
