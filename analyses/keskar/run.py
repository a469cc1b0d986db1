"""Keskar et al. (ICLR 2017) on the built-in data, de-confounded: the whole study.

The ``full`` plan of the built-in study ``keskar2017``
(:data:`flatness.studies.keskar2017.FULL`), run with the repository's folders. Every
case trains SB (0.5% of the training set) and LB (10%) with Adam (lr 1e-3) until 98%
training accuracy, as the paper did, and LB-U: LB trained for exactly as many updates as
SB of the same seed; the F1 cases also train SB-C and LB-C, both until the training loss
is at most 0.02 (at most 100 epochs):

- **f1-mnist1d**: an F1-style network (3 × [Linear 256, BatchNorm, ReLU]) on MNIST-1D
  (4000 training, 1000 test signals, generated offline), SB = 20 examples, LB = 400,
  seeds 0-3;
- **f1-digits**: the same network on scikit-learn's 8×8 digits (1437 training images),
  SB = 7, LB = 144, seeds 0-4;
- **c1-mnist1d**: a C1-style conv net (2 × [Conv 32×5, BatchNorm, ReLU, max-pool], dense
  192 and 96 with BatchNorm and dropout) on MNIST-1D, SB, LB and LB-U, seeds 0-2.

Every checkpoint is scored on a fixed subset of 1000 training examples (all of digits)
with λ_max and the top-5 eigenvalues, the Hutch++ trace (30 products), Keskar's
ε-sharpness at ε = 1e-3 and 5e-4 in full space and averaged over three random
100-dimensional subspaces (10 L-BFGS-B iterations each), adaptive sharpness (ρ = 0.05),
average-case adaptive sharpness (σ = 0.01), the gradient norm and the weight norm; the
parametric plot between SB and LB is drawn for every seed. Reports go to
``reports/keskar-mnist1d/`` (an overview answering, per case, whether LB is sharper and
less accurate as trained, with equal updates and at equal training loss; then one folder
per case); checkpoints and results stores to ``runs/keskar/`` (reruns reuse both).
``analyses/keskar/first_order.py`` then asks how much of the ε-sharpness is the
gradient's first-order term, ``analyses/keskar/subspace_calibration.py`` why the
subspace value can exceed the full-space one.

Usage::

    python analyses/keskar/run.py          # about 30 minutes on 2 quiet CPU cores
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
