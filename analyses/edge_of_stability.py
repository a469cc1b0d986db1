"""The Edge of Stability, tracked (Cohen, Kaur, Li, Kolter & Talwalkar, ICLR 2021).

Full-batch gradient descent on a tiny MLP (40 → tanh 50 → tanh 50 → 10) with the
square loss on one-hot targets (:math:`\\tfrac12\\lVert f(x) - e_y\\rVert^2`, averaged
over examples), on 1000 seeded MNIST-1D training examples, at two learning rates
:math:`\\eta`. A :class:`flatness.Tracker` measures :math:`\\lambda_{\\max}` of the
training loss every few steps (warm-started Lanczos, certified to a 1e-3 relative
residual). Cohen et al. observe *progressive sharpening* (:math:`\\lambda_{\\max}`
rises) until it reaches the stability threshold :math:`2/\\eta`, then *the edge of
stability*: :math:`\\lambda_{\\max}` hovers just above :math:`2/\\eta` while the loss
keeps falling, non-monotonically.

The report states, per learning rate: the step at which :math:`\\lambda_{\\max}` first
reaches :math:`2/\\eta`, its largest value, the median over the second half of the
run (the value it hovers at) and its ratio to :math:`2/\\eta`, the loss at the start
and the end, the share of steps at which the full-batch loss went up, and the warm
calls' products.

Writes ``reports/edge-of-stability.md`` and ``reports/edge-of-stability.png``.

Usage::

    python analyses/edge_of_stability.py           # ~1 minute on an idle core
    python analyses/edge_of_stability.py --quick   # a few hundred steps
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

import flatness as fl
from flatness.pipeline import training_subset
from flatness.zoo import load_dataset

ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATES = (0.2, 0.4)


def half_square_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:math:`\\tfrac12\\lVert f(x) - t\\rVert^2` averaged over the batch."""
    return 0.5 * ((output - target) ** 2).sum(dim=1).mean()


def tiny_mlp(seed: int = 0) -> nn.Module:
    """40 → tanh 50 → tanh 50 → 10, seeded."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(40, 50), nn.Tanh(), nn.Linear(50, 50), nn.Tanh(), nn.Linear(50, 10)
    )


def run(
    lr: float, data: tuple[torch.Tensor, torch.Tensor], *, steps: int, every: int
) -> pd.DataFrame:
    """Full-batch GD at ``lr``, tracked.

    Returns:
        The tracker's frame, with the full-batch loss of every step (``losses``) in its
        ``attrs``.
    """
    X, Y = data
    net = tiny_mlp()
    tracker = fl.Tracker(data, loss_fn=half_square_loss, every=every, run=f"gd lr={lr:g}")
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    losses = []
    for step in range(steps + 1):
        tracker.update(net, step=step, lr=lr, batch_size=len(X), epoch=float(step))
        optimizer.zero_grad()
        loss = half_square_loss(net(X), Y)
        losses.append(float(loss.detach()))
        if step < steps:
            loss.backward()
            optimizer.step()
    frame = tracker.frame()
    frame.attrs["losses"] = losses
    return frame


def describe(frame: pd.DataFrame) -> dict[str, Any]:
    """The trajectory in numbers (see the module doc)."""
    threshold = float(frame["stability_threshold"].iloc[0])
    lam = frame["lambda_max"]
    reached = frame.loc[lam >= threshold, "step"]
    second_half = frame[frame["step"] >= frame["step"].max() / 2]
    losses = frame.attrs["losses"]
    ups = sum(b > a for a, b in itertools.pairwise(losses))
    warm = frame.loc[frame["lambda_max_warm"] == 1, "lambda_max_matvecs"]
    return {
        "lr": float(frame["lr"].iloc[0]),
        "threshold": threshold,
        "initial": float(lam.iloc[0]),
        "reached": None if reached.empty else int(reached.iloc[0]),
        "peak": float(lam.max()),
        "peak_step": int(frame.loc[lam.idxmax(), "step"]),
        "hover": float(second_half["lambda_max"].median()),
        "hover_low": float(second_half["lambda_max"].quantile(0.1)),
        "hover_high": float(second_half["lambda_max"].quantile(0.9)),
        "loss_start": losses[0],
        "loss_end": losses[-1],
        "ups": ups / (len(losses) - 1),
        "warm_median": float(warm.median()) if len(warm) else float("nan"),
        "warm_max": int(warm.max()) if len(warm) else 0,
        "certified": bool((frame["lambda_max_converged"] == 1).all()),
        "measurements": len(frame),
    }


def plot(frames: list[pd.DataFrame], out: Path) -> None:
    """λ_max against steps with the 2/η lines, and the full-batch loss."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for frame, color in zip(frames, ("tab:blue", "tab:orange"), strict=False):
        lr = float(frame["lr"].iloc[0])
        top.plot(frame["step"], frame["lambda_max"], color=color, label=f"η = {lr:g}")
        top.axhline(2 / lr, color=color, linestyle="--", linewidth=1, label=f"2/η = {2 / lr:g}")
        bottom.plot(frame.attrs["losses"], color=color, linewidth=1, label=f"η = {lr:g}")
    top.set_ylabel("λ_max of the training loss")
    top.set_title("Full-batch GD, tanh MLP, MNIST-1D (1000), square loss")
    top.legend(fontsize=8)
    bottom.set_ylabel("training loss")
    bottom.set_xlabel("step")
    bottom.set_yscale("log")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def render(rows: list[dict[str, Any]], *, steps: int, every: int, quick: bool, png: str) -> str:
    """The report's markdown."""
    lines = [
        "# The Edge of Stability, tracked",
        "",
        f"Generated by `python analyses/edge_of_stability.py{' --quick' if quick else ''}` on "
        f"{dt.date.today().isoformat()} (torch {torch.__version__}, one thread). Full-batch "
        f"gradient descent, {steps} steps, on a 40 → tanh 50 → tanh 50 → 10 MLP with the "
        "square loss ½‖f(x) − e_y‖² averaged over 1000 seeded MNIST-1D training examples; "
        f"`fl.Tracker` measured λ_max of the training loss every {every} steps (Lanczos warm-"
        "started from the previous Ritz vector, certified to a 1e-3 relative residual). "
        "Cohen et al. (ICLR 2021) predict progressive sharpening up to the stability "
        "threshold 2/η, then λ_max hovering just above it while the loss keeps falling "
        "non-monotonically.",
        "",
        f"![λ_max and the loss against steps]({png})",
        "",
        "| η | 2/η | λ_max at step 0 | first step with λ_max ≥ 2/η | peak (step) | "
        "median λ_max, second half (10–90 %) | median / (2/η) | loss start → end | "
        "steps where the loss rose | warm products, median (max) | all certified |",
        "|---:|---:|---:|---:|---|---|---:|---|---:|---|:---:|",
    ]
    for r in rows:
        reached = "never" if r["reached"] is None else str(r["reached"])
        lines.append(
            f"| {r['lr']:g} | {r['threshold']:.2f} | {r['initial']:.2f} | {reached} | "
            f"{r['peak']:.2f} ({r['peak_step']}) | {r['hover']:.2f} "
            f"({r['hover_low']:.2f}–{r['hover_high']:.2f}) | {r['hover'] / r['threshold']:.3f} | "
            f"{r['loss_start']:.3f} → {r['loss_end']:.3f} | {100 * r['ups']:.1f} % | "
            f"{r['warm_median']:.0f} ({r['warm_max']}) | {'yes' if r['certified'] else 'no'} |"
        )
    lines += ["", "## What the numbers say", ""]
    for r in rows:
        if r["reached"] is None:
            lines.append(
                f"- η = {r['lr']:g}: λ_max rose from {r['initial']:.2f} to {r['peak']:.2f} "
                f"without reaching 2/η = {r['threshold']:.2f} in {steps} steps."
            )
            continue
        lines.append(
            f"- η = {r['lr']:g}: λ_max rose from {r['initial']:.2f} and reached 2/η = "
            f"{r['threshold']:.2f} at step {r['reached']}, overshot to {r['peak']:.2f} "
            f"(step {r['peak_step']}), and over the second half hovered at a median "
            f"{r['hover']:.2f}, {r['hover'] / r['threshold']:.3f} × 2/η (10–90 %: "
            f"{r['hover_low']:.2f}–{r['hover_high']:.2f}); the loss still fell from "
            f"{r['loss_start']:.3f} to {r['loss_end']:.3f}, rising at "
            f"{100 * r['ups']:.1f} % of the steps."
        )
    lines += [
        "",
        "Warm starts are cheap while the top eigenvector moves slowly (progressive "
        "sharpening) and dearer at the edge of stability, where the top eigenvalues "
        "crowd around 2/η and the top eigenvector turns from one measurement to the next; "
        "every value above is certified all the same.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred steps")
    parser.add_argument("--out", default=str(ROOT / "reports" / "edge-of-stability.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, every = (300, 20) if args.quick else (2000, 10)
    X, y = training_subset(load_dataset("mnist1d"), 1000, seed=0)
    data = (X, F.one_hot(y, 10).to(X.dtype))
    frames = [run(lr, data, steps=steps, every=every) for lr in LEARNING_RATES]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    plot(frames, png)
    text = render(
        [describe(f) for f in frames], steps=steps, every=every, quick=args.quick, png=png.name
    )
    out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
