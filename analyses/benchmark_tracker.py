"""Benchmark the tracker (issue 14): warm-started lambda_max, and its overhead on training.

Two numbers, on one thread (``torch.set_num_threads(1)``), on MNIST-1D (4000 training
examples, generated offline) with the built-in networks (``tiny_mlp``, ``mlp_bn``,
``f1``, ``c1``):

1. **Products per lambda_max update.** Each network is trained with SGD (momentum 0.9,
   lr 0.05, batch 64); after every epoch the top eigenvalue of the loss on 512 seeded
   training examples is computed twice to a
   1e-3 relative residual (verified): cold (a random start) and warm (from the previous
   epoch's warm Ritz vector, as the tracker does). A pair is one epoch's move; pairs
   over epochs and seeds give the median and min–max of the products and their
   ratio, and the largest relative difference between the two certified values.
2. **Overhead on training time.** ``flatness.zoo.train_network`` with the default
   ``TrainConfig`` (Adam, lr 1e-3, batch 64) for some epochs, without and with a
   default :class:`flatness.Tracker` (``lambda_max``, cadence ``"budget"``) on 1000
   seeded training examples (the scoring default) plugged into ``on_step``; the runs
   alternate, the overhead is (with − without)/without per repeat, median and min–max.
   The budget bounds every measurement after the first (step 0, a cold call); the
   first one's seconds and the share of the rest are reported apart, with the run
   length from which the total stays under 10 %.

Writes ``reports/benchmark-tracker.md``.

Usage::

    python analyses/benchmark_tracker.py           # the full size (~6 min on an idle core)
    python analyses/benchmark_tracker.py --quick   # tiny sizes (seconds)
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import flatness as fl
from flatness.pipeline import training_subset
from flatness.zoo import TrainConfig, build_network, load_dataset, train_network

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = ("tiny_mlp", "mlp_bn", "f1", "c1")
TOL = 1e-3


def _spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """``median (min–max)``."""
    if not values:
        return "–"
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def warm_versus_cold(name: str, data: Any, *, epochs: int, seeds: int) -> dict[str, Any]:
    """Products of cold and warm lambda_max calls after each epoch of SGD.

    Returns:
        The network's parameter count and, per pair, the products and values.
    """
    subset = training_subset(data, 512, seed=0)
    X, y = data.train
    pairs: list[dict[str, float]] = []
    params = 0
    for seed in range(seeds):
        net = build_network(
            name, input_shape=data.input_shape, num_classes=data.num_classes, seed=seed
        )
        params = sum(p.numel() for p in net.parameters())
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        gen = torch.Generator().manual_seed(seed)
        previous = None
        for epoch in range(epochs + 1):
            net.eval()
            obj = fl.Objective(net, subset)
            cold = fl.hessian_eigenvalues(obj, tol=TOL, seed=epoch, return_eigenvectors=True)
            if previous is None:
                previous = cold
            else:
                warm = fl.hessian_eigenvalues(obj, tol=TOL, v0=previous, return_eigenvectors=True)
                pairs.append(
                    {
                        "cold": cold.matvecs,
                        "warm": warm.matvecs,
                        "converged": float(cold.all_converged and warm.all_converged),
                        "difference": abs(warm.eigenvalues[0] - cold.eigenvalues[0])
                        / abs(cold.eigenvalues[0]),
                        "lambda_max": cold.eigenvalues[0],
                    }
                )
                previous = warm
            net.train()
            order = torch.randperm(len(X), generator=gen)
            for i in range(0, len(X) - 63, 64):
                batch = order[i : i + 64]
                opt.zero_grad()
                F.cross_entropy(net(X[batch]), y[batch]).backward()
                opt.step()
    return {"network": name, "params": params, "pairs": pairs}


def overhead(name: str, data: Any, *, epochs: int, repeats: int) -> dict[str, Any]:
    """Training time without and with a default tracker, alternating.

    Returns:
        Seconds per repeat with and without, the overhead per repeat, the tracker's
        measurements and its own seconds.
    """
    config = TrainConfig(network=name, epochs=epochs, seed=0)
    subset = training_subset(data, 1000, seed=0)
    without: list[float] = []
    with_: list[float] = []
    shares: list[float] = []
    firsts: list[float] = []
    rests: list[float] = []
    per_nominal: list[float] = []
    measured: list[int] = []
    for repeat in range(repeats):
        for tracked in (repeat % 2 == 1, repeat % 2 == 0):
            tracker = fl.Tracker(subset) if tracked else None
            start = time.perf_counter()
            train_network(
                config,
                data=data,
                manifest=False,
                on_step=None if tracker is None else lambda m, f, t=tracker: t.update(m, **f),
                threads=1,
            )
            seconds = time.perf_counter() - start
            if tracker is None:
                without.append(seconds)
            else:
                with_.append(seconds)
                frame = tracker.frame()
                measured.append(len(frame))
                spent = frame["tracker_seconds"]
                shares.append(float(spent.sum()) / seconds)
                firsts.append(float(spent.iloc[0]))
                rests.append(float(spent.iloc[1:].sum()) / (seconds - float(spent.sum())))
                # wall seconds per nominal example-gradient, tracker vs training
                trained = epochs * (data.n_train // 64) * 64
                per_tracked = float(spent.iloc[0]) / float(
                    frame["tracker_example_gradients"].iloc[0]
                )
                per_trained = (seconds - float(spent.sum())) / trained
                per_nominal.append(per_tracked / per_trained)
    ratios = [w / wo - 1 for w, wo in zip(with_, without, strict=True)]
    return {
        "network": name,
        "epochs": epochs,
        "without": without,
        "with": with_,
        "overhead": ratios,
        "measured": measured,
        "tracker_share": shares,
        "first": firsts,
        "rest_share": rests,
        "wall_per_nominal": per_nominal,
    }


def epochs_under(row: dict[str, Any], limit: float = 0.1) -> str:
    """The run length (epochs) from which the tracker's total share stays under ``limit``.

    The first measurement costs ``first`` seconds once; the rest costs ``rest_share`` of
    the training time; an epoch of training takes ``without / epochs`` seconds.
    """
    first = statistics.median(row["first"])
    rest = max(statistics.median(row["rest_share"]), long_run(row))
    epoch = statistics.median(row["without"]) / row["epochs"]
    if rest >= limit:
        return f"never at overhead=0.1 (overhead={0.1 * limit / rest:.3f} would do)"
    return f"{first / ((limit - rest) * epoch):.0f}"


def long_run(row: dict[str, Any], overhead: float = 0.1) -> float:
    """The share the budgeted measurements take in the long run, in wall time.

    The budget holds the nominal cost (single-example gradients) at ``overhead`` of the
    training's; a nominal example-gradient of the tracker takes ``wall_per_nominal``
    times the wall time of one of training.
    """
    return overhead * statistics.median(row["wall_per_nominal"])


def render(warm: list[dict[str, Any]], costs: list[dict[str, Any]], *, quick: bool) -> str:
    """The report's markdown."""
    lines = [
        "# Benchmark: the tracker (issue 14)",
        "",
        f"Generated by `python analyses/benchmark_tracker.py{' --quick' if quick else ''}` "
        f"on {dt.date.today().isoformat()} ({platform.machine()}, torch {torch.__version__}, "
        "one thread, a CPU shared with other work). MNIST-1D, 4000 training examples; the "
        "tracker's fixed subset is 1000 seeded training examples (512 in the first table).",
        "",
        "## Products per lambda_max update: warm vs cold",
        "",
        f"After each epoch of SGD (momentum 0.9, lr 0.05, batch 64) lambda_max is computed "
        f"to a {TOL:g} relative residual (measured by a final product, as every call does) "
        "from a random start (cold) and from the previous epoch's Ritz vector (warm, what "
        "the tracker does). Pairs: epochs × seeds. Target (issue 14): warm ≤ 4.",
        "",
        "| network | parameters | pairs | cold products | warm products | warm/cold | warm ≤ 4 | "
        "max rel. difference | all certified |",
        "|---|---:|---:|---|---|---|---:|---:|:---:|",
    ]
    for row in warm:
        pairs = row["pairs"]
        cold = [p["cold"] for p in pairs]
        warm_ = [p["warm"] for p in pairs]
        ratios = [p["warm"] / p["cold"] for p in pairs]
        lines.append(
            f"| {row['network']} | {row['params']:,} | {len(pairs)} | {_spread(cold)} | "
            f"{_spread(warm_)} | {_spread(ratios, '{:.2f}')} | "
            f"{sum(w <= 4 for w in warm_)}/{len(pairs)} | "
            f"{max(p['difference'] for p in pairs):.1e} | "
            f"{'yes' if all(p['converged'] for p in pairs) else 'no'} |"
        )
    lines += [
        "",
        "## Overhead on training time at the default cadence",
        "",
        "`flatness.zoo.train_network` with the default `TrainConfig` (Adam, lr 1e-3, "
        "batch 64), with and without `fl.Tracker(subset)` (defaults: `lambda_max`, "
        '`every="budget"`, overhead budget 0.1 of the training in single-example '
        "gradients) in `on_step`; runs alternate. Overhead = (with − without)/without, per "
        "repeat. Tracker's share = its own `tracker_seconds` / the tracked run's time. "
        "First = the seconds of the step-0 measurement (a cold call, outside the budget); "
        "rest = the later measurements' seconds over the training's own seconds (what the "
        "budget bounds; 0 where the runs were too short for a second measurement); "
        "wall/nominal = the tracker's wall seconds per nominal example-gradient over the "
        "training's, so the budgeted measurements take about 0.1 × wall/nominal of the "
        "time in the long run; epochs for ≤ 10 % = first / ((0.1 − max(rest, long run)) × "
        "seconds per epoch). Target (issue 14): ≤ 10 %.",
        "",
        "| network | epochs | repeats | without (s) | with tracker (s) | overhead % | "
        "measurements | tracker's share % | first (s) | rest % | wall/nominal | "
        "long run % | epochs for ≤ 10 % |",
        "|---|---:|---:|---|---|---|---|---|---|---|---|---:|---:|",
    ]
    for row in costs:
        lines.append(
            f"| {row['network']} | {row['epochs']} | {len(row['without'])} | "
            f"{_spread(row['without'])} | {_spread(row['with'])} | "
            f"{_spread([100 * r for r in row['overhead']])} | "
            f"{_spread([float(m) for m in row['measured']], '{:.0f}')} | "
            f"{_spread([100 * s for s in row['tracker_share']])} | "
            f"{_spread(row['first'], '{:.2f}')} | "
            f"{_spread([100 * s for s in row['rest_share']])} | "
            f"{_spread(row['wall_per_nominal'], '{:.2f}')} | {100 * long_run(row):.1f} | "
            f"{epochs_under(row)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmark-tracker.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("mnist1d")
    networks = NETWORKS[:1] if args.quick else NETWORKS
    small = ("tiny_mlp", "mlp_bn")
    warm = [
        warm_versus_cold(
            n, data, epochs=1 if args.quick else 3, seeds=2 if n in small and not args.quick else 1
        )
        for n in networks
    ]
    long = {"tiny_mlp": 20, "mlp_bn": 10, "f1": 2, "c1": 2}
    costs = [overhead(n, data, epochs=1 if args.quick else long[n], repeats=2) for n in networks]
    text = render(warm, costs, quick=args.quick)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
