"""Keskar's ε-sharpness per maximizer, and what accuracy each trace budget buys.

Writes ``reports/benchmark-sharpness.md`` (issue 19, the ε-sharpness and Hutch++
bullets). In one process, one torch thread:

* **Keskar ε-sharpness** (ε = 1e-3, full space, 10 iterations, random start, seed 0)
  with projected L-BFGS on the device (the default), scipy's L-BFGS-B and projected
  sign-gradient ascent (:mod:`keskar_solvers`: interleaved rounds, cost in gradient
  equivalents, per-round time ratios with min–max), on the small-batch (SB) and
  large-batch (LB) checkpoints of the tiny MLP and the BatchNorm MLP that
  ``benchmark_curvature.py`` trains on MNIST-1D (4000 training examples, one full-data
  float32 objective in eval mode), and on a hand-built ResNet-18 (11.2 M parameters,
  ``models.resnet18``) on random 32×32 images;
* **trace accuracy per budget** (:mod:`trace_accuracy`): Hutch++ and Hutchinson at 10,
  30 and 100 products and with a target standard error (budget as a cap), against the
  exact trace, beside PyHessian's ``trace()``, on the same checkpoints (the first 1000
  training examples);
* with ``--all-measures``, the cost of the other sharpness measures
  (:mod:`sharpness_measures`).

Usage::

    python analyses/benchmark_sharpness.py                 # about 10 minutes
    python analyses/benchmark_sharpness.py --quick         # tiny MLP, a narrow ResNet
    python analyses/benchmark_sharpness.py --all-measures  # + the other measures
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models
import sharpness_measures
from benchmark_curvature import trained_checkpoints
from keskar_solvers import SOLVERS, compare_solvers
from trace_accuracy import BUDGETS, TARGETS, trace_accuracy

import flatness as fl
from flatness.zoo import TrainConfig, load_dataset

ROOT = Path(__file__).resolve().parents[1]
TARGET = 15.0
"""Issue 19: ε-sharpness (full space, 10 iterations) within this many gradient equivalents."""
NETWORKS = [
    ("tiny MLP", TrainConfig(network="tiny_mlp", epochs=3)),
    ("BN MLP", TrainConfig(network="mlp_bn", epochs=3)),
]
NAMES = {
    "projected-lbfgs": "projected L-BFGS (device)",
    "lbfgsb": "scipy L-BFGS-B",
    "pga": "PGA",
}


def g(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits."""
    return f"{x:.{digits}g}"


def spread(values: list[float], spec: str = ".2f") -> str:
    """``median (min–max)`` of the values, or the one value."""
    if len(values) == 1:
        return f"{values[0]:{spec}}"
    med = statistics.median(values)
    return f"{med:{spec}} ({min(values):{spec}}–{max(values):{spec}})"


def keskar_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per model and solver."""
    out = [
        "| model | params | unit (ms) | solver | φ | φ / φ scipy | iterations | evaluations "
        f"| cost, measured | cost, nominal | time scipy / solver | ≤ {TARGET:g} | message |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        k = r["keskar"]
        scipy = k["solvers"]["lbfgsb"]["value"]
        for solver, m in k["solvers"].items():
            ratio = k["ratios"].get(solver)
            ok = "yes" if statistics.median(m["cost"]) <= TARGET else "no"
            out.append(
                f"| {r['model']} | {r['params']:,} | {k['grad_s'] * 1e3:.1f} | {NAMES[solver]} | "
                f"{g(m['value'])} | {m['value'] / scipy:.3f} | {m['iterations']} | "
                f"{m['evaluations']} | {spread(m['cost'], '.1f')} | {m['nominal']:.1f} | "
                f"{'–' if ratio is None else spread(ratio)} | {ok} | {m['message']} |"
            )
    return out


def trace_table(rows: list[dict[str, Any]]) -> list[str]:
    """One block of lines per model: fixed budgets, targets, PyHessian."""
    out = [
        "| model | method | budget or target | products min / median / max | median error | "
        "largest error | median reported stderr | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r.get("trace")
        if t is None:
            continue
        name = f"{r['model']} (tr = {t['exact']:.4g})"
        for (method, budget), s in t["fixed"].items():
            out.append(
                f"| {name} | {method} | {budget} | {_products(s)} | {s['median_error']:.1%} | "
                f"{s['max_error']:.1%} | {s['stderr']:.1%} | {s['seconds']:.2f} |"
            )
        for (method, goal), s in t["target"].items():
            out.append(
                f"| {name} | {method} | stderr ≤ {goal:.0%} (cap {r['cap']}; met "
                f"{s['met']}/{t['seeds']}) | {_products(s)} | {s['median_error']:.1%} | "
                f"{s['max_error']:.1%} | – | {s['seconds']:.2f} |"
            )
        ph = t["pyhessian"]
        if "error" in ph:
            out.append(f"| {name} | PyHessian trace() | – | failed: {ph['error']} | | | | |")
        else:
            out.append(
                f"| {name} | PyHessian trace() | mean moves < 1e-3 | {_products(ph)} | "
                f"{ph['median_error']:.1%} | {ph['max_error']:.1%} | none | "
                f"{ph['seconds']:.2f} |"
            )
    return out


def _products(s: dict[str, Any]) -> str:
    lo, med, hi = s["products"]
    return f"{lo:.0f} / {med:.0f} / {hi:.0f}"


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """The headline lines: the target per solver, values against scipy's."""
    lines = []
    for solver in SOLVERS:
        costs = [statistics.median(r["keskar"]["solvers"][solver]["cost"]) for r in rows]
        hits = sum(c <= TARGET for c in costs)
        values = [
            r["keskar"]["solvers"][solver]["value"] / r["keskar"]["solvers"]["lbfgsb"]["value"]
            for r in rows
        ]
        lines.append(
            f"- {NAMES[solver]}: {min(costs):.1f}–{max(costs):.1f} gradient equivalents "
            f"measured (medians per model); ≤ {TARGET:g} on **{hits}/{len(rows)}** models; "
            f"φ / φ(scipy L-BFGS-B) {min(values):.3f}–{max(values):.3f}."
        )
    return lines


def render(rows: list[dict[str, Any]], extra: list[str], meta: dict[str, Any]) -> str:
    """The report."""
    out = [
        "# Benchmark: Keskar ε-sharpness per maximizer, and trace accuracy per budget",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} in {meta['wall']:.0f} s "
        f"(training included). Machine: {meta['cpu']}, {meta['threads']} torch thread(s), "
        f"Python {meta['python']}, torch {meta['torch']}, device: cpu (no GPU was lent to "
        "this run). The machine was shared with other jobs: seconds are noisy, the "
        "interleaved ratios less so.",
        "",
        "## Keskar ε-sharpness (ε = 1e-3, full space, maxiter = 10, random start, seed 0)",
        "",
        *summary(rows),
        "",
        "*Cost, measured*: wall seconds of the whole call over the median time of one "
        "full-data `obj.value_and_gradient()` (the unit), median and min–max over "
        f"{meta['rounds']} interleaved round(s) (ResNet-18: {meta['resnet_rounds']}). "
        "*Cost, nominal*: the result's `gradient_equivalents` (its gradients plus one "
        "forward pass for f(x)). *Time scipy / solver*: per-round ratio of wall times. "
        "φ in percent; φ / φ scipy ≥ 1 means the solver found at least scipy's maximum. "
        f"ResNet-18: {meta['resnet_images']} random 32×32 images, random initialization, "
        "eval mode.",
        "",
        *keskar_table(rows),
        "",
        "## Trace accuracy per budget (relative error against the exact trace)",
        "",
        f"Exact trace: `hessian_trace(method='exact')`. {meta['seeds']} seeds per line; "
        f"the first {meta['n_trace']} training examples. *Reported stderr*: the estimate's "
        "own standard error relative to the exact trace (PyHessian reports none). Target "
        "lines: `target_stderr` relative, the budget a cap; Hutch++ sketches only while "
        "the sketch pays (adaptive split).",
        "",
        *trace_table(rows),
        *extra,
    ]
    return "\n".join(out) + "\n"


def cpu_name() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the report."""
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny MLP, a narrow ResNet")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved Keskar rounds")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per trace line")
    parser.add_argument("--images", type=int, default=32, help="ResNet-18 images")
    parser.add_argument("--all-measures", action="store_true", help="the other measures too")
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmark-sharpness.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rounds = 1 if args.quick else args.rounds
    n_train, n_trace, cap = 4000, 1000, 200
    data = load_dataset("mnist1d", n_train=n_train, n_test=1000, seed=0)
    X, y = data.train
    rows: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    sb: dict[str, tuple[torch.nn.Module, float]] = {}
    for label, regime, model in trained_checkpoints(data, quick=args.quick, networks=NETWORKS):
        name = f"{label} {regime}"
        print(f"measuring {name} ...", flush=True)
        obj = fl.Objective(model, (X, y), batch_size=len(X))
        row: dict[str, Any] = {"model": name, "params": obj.dim, "cap": cap}
        row["keskar"] = compare_solvers(obj, rounds=rounds)
        print(f"  keskar {time.perf_counter() - started:.0f} s", flush=True)
        row["trace"] = trace_accuracy(
            model, X[:n_trace], y[:n_trace], seeds=range(args.seeds), cap=cap
        )
        print(f"  trace {time.perf_counter() - started:.0f} s", flush=True)
        rows.append(row)
        if args.all_measures:
            other = sharpness_measures.bench_checkpoint(name, model, X, y, 1)
            others.append(other)
            if regime == "SB":
                sb[label] = (model, other["grad_s"])
            elif label in sb:
                unit = (sb[label][1] + other["grad_s"]) / 2
                pairs += sharpness_measures.bench_pair(label, sb[label][0], model, data, unit)
    print("measuring ResNet-18 ...", flush=True)
    net = models.resnet18(width=8 if args.quick else 64).eval()
    images = models.random_images(args.images)
    obj = fl.Objective(net, images)
    resnet = compare_solvers(obj, rounds=1, warmup=False, unit_repeats=3)
    rows.append({"model": "ResNet-18", "params": obj.dim, "keskar": resnet})
    meta = {
        "command": "python analyses/benchmark_sharpness.py"
        + (" --quick" if args.quick else "")
        + (" --all-measures" if args.all_measures else ""),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "rounds": rounds,
        "resnet_rounds": 1,
        "resnet_images": args.images,
        "seeds": args.seeds,
        "n_trace": n_trace,
        "n_train": n_train,
        "n_test": data.n_test,
        "wall": time.perf_counter() - started,
    }
    extra = sharpness_measures.tables(others, pairs, meta) if others else []
    text = render(rows, extra, meta)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out} ({meta['wall']:.0f} s); budgets {BUDGETS}, targets {TARGETS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
