"""Keskar et al. (ICLR 2017) reproduced on the built-in data: the whole study.

The ``full`` plan of the built-in study ``keskar2017``
(:data:`flatness.studies.keskar2017.FULL`), run with the repository's folders:

- **f1-mnist1d**: an F1-style network (3 × [Linear 256, BatchNorm, ReLU]) on MNIST-1D
  (4000 training, 1000 test signals, generated offline), SB = 0.5% of the training set
  (20 examples) and LB = 10% (400), Adam (lr 1e-3), each trained until 98% training
  accuracy, 5 seeds each; plus a batch-size sweep at 40, 80, 160 and 240 with 3 seeds,
  so six batch sizes span SB to LB; the parametric plot between the seed-0 SB and LB
  runs (same initialization).
- **c1-mnist1d**: a C1-style conv net (2 × [Conv 32×5, BatchNorm, ReLU, max-pool], dense
  192 and 96 with BatchNorm and dropout) on MNIST-1D, SB and LB, 5 seeds.
- **f1-digits**: the F1-style network on scikit-learn's 8×8 digits (1437 training
  images), SB (7 examples) and LB (144), 5 seeds: the second, smaller case.

Every checkpoint is scored on a fixed subset of 1000 training examples (all of digits)
with λ_max and the top-5 eigenvalues, the Hutch++ trace with its standard error, the
SLQ spectral density, Keskar's ε-sharpness at ε = 1e-3 and 5e-4 in full space and in
a random 100-dimensional subspace (10 L-BFGS-B iterations), adaptive sharpness
(Kwon et al. 2021, ρ = 0.05), average-case adaptive sharpness (σ = 0.01) and the
gradient noise scale. Reports go to ``reports/keskar-mnist1d/`` (an overview, then one
folder per case); checkpoints and results stores to ``runs/keskar/`` (reruns reuse
both). ``analyses/keskar/first_order.py`` then asks how much of the ε-sharpness is the
gradient's first-order term.

Usage::

    python analyses/keskar/run.py          # about 25 minutes on 2 CPU cores
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flatness.cli import main

ROOT = Path(__file__).resolve().parents[2]
RUNS = "runs/keskar"
"""Checkpoints and results stores, relative to the repository's root."""
OUT = "reports/keskar-mnist1d"
"""The overview and the cases' reports, relative to the repository's root."""

if __name__ == "__main__":
    os.chdir(ROOT)  # the reports name the command relative to the root
    sys.exit(
        main(["study", "keskar2017", "--plan", "full", "--runs", RUNS, "--out", OUT, *sys.argv[1:]])
    )
