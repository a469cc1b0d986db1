"""Cost of the sharpness measures, in full-data gradient equivalents, on the curvature
benchmark's checkpoints.

The same small-batch (SB) and large-batch (LB) networks as
``analyses/benchmark_curvature.py`` are trained on MNIST-1D (generated offline; the
training code is imported from that script). For each checkpoint, on one fixed
full-data float32 objective in eval mode, this times

* one full-data loss-and-gradient evaluation (``obj.value_and_gradient()``, median of
  several runs after a warm-up): the unit, a *gradient equivalent* being
  ``seconds / that time``;
* Keskar et al.'s ε-sharpness, ε = 1e-3, full space, 10 iterations, with L-BFGS-B and
  with projected sign-gradient ascent (issue #3 target: at most 15 gradient
  equivalents), and L-BFGS-B in a random 100-dimensional subspace;
* adaptive worst-case sharpness (ℓ2 and ℓ∞), adaptive average sharpness, PAC-Bayes
  flatness (plain and magnitude-aware), the gradient noise scale (per-example and
  per-batch), a 21 × 21 filter-normalized landscape, and, per network, the SB ↔ LB
  parametric plot (25 points, running statistics interpolated and recomputed);

and writes a ``## Sharpness measures`` section into ``reports/benchmark-curvature.md``
between ``<!-- sharpness:begin -->`` and ``<!-- sharpness:end -->`` (replacing an
earlier one), which ``benchmark_curvature.py`` keeps when it rewrites the report.

Usage::

    python analyses/benchmark_sharpness.py            # all six checkpoints (a few minutes)
    python analyses/benchmark_sharpness.py --quick    # tiny MLP only, one repeat (~1 min)
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import flatness as fl
from flatness.zoo import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark_curvature as curvature  # the sibling script: its training and report helpers

ROOT = Path(__file__).resolve().parents[1]
TARGET = 15.0
"""Issue #3: ε-sharpness (full space, 10 iterations) within this many gradient equivalents."""

EPS, MAXITER, SUBSPACE = 1e-3, 10, 100
RHO = {"2": 0.5, "inf": 1e-3}
"""Radii of adaptive worst-case sharpness, relative to |w| (ℓ2 over all weights; ℓ∞ per weight)."""
SIGMA = 0.1
"""Relative noise of adaptive average sharpness."""
STEPS = 20
SAMPLES = 32
GRID = 21
ALPHAS = np.linspace(-1.0, 2.0, 25)
NOISE_BATCHES = 32
"""Batches of the per-batch gradient noise scale."""


# ----------------------------------------------------------------------------- timing
def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 0) -> tuple[float, Any]:
    """Median wall seconds of ``repeats`` calls after ``warmup`` untimed ones, and the
    last call's value."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def record(
    measure: str,
    setting: str,
    res: Any,
    *,
    value: float,
    seconds: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One measurement: its value, wall seconds and evaluation counts, plus ``extra``."""
    return {
        "measure": measure,
        "setting": setting,
        "value": value,
        "seconds": res.seconds if seconds is None else seconds,
        "evaluations": getattr(res, "evaluations", None),
        "gradients": getattr(res, "gradients", None),
        **extra,
    }


# ------------------------------------------------------------------------- one model
def bench_checkpoint(
    name: str, model: nn.Module, X: torch.Tensor, y: torch.Tensor, repeats: int
) -> dict[str, Any]:
    obj = fl.Objective(model, (X, y), batch_size=len(X))
    row: dict[str, Any] = {"model": name, "params": obj.dim, "measures": []}
    row["grad_s"], (loss, _) = median_time(obj.value_and_gradient, max(2 * repeats + 1, 5), 2)
    row["value_s"], _ = median_time(obj.value, max(2 * repeats + 1, 5), 2)
    row["loss"] = float(loss)
    ms = row["measures"]

    for solver, dim in (("lbfgsb", None), ("pga", None), ("lbfgsb", SUBSPACE)):
        seconds, res = median_time(
            lambda s=solver, d=dim: fl.keskar_sharpness(
                obj, eps=EPS, subspace_dim=d, solver=s, maxiter=MAXITER, seed=0
            ),
            repeats,
            warmup=1,
        )
        space = "full" if dim is None else f"p={dim}"
        print(f"    {res!r}", flush=True)
        ms.append(
            record(
                "keskar",
                f"{solver}, {space}",
                res,
                value=res.value,
                seconds=seconds,
                solver=solver,
                space=space,
                iterations=res.iterations,
                at_bound=res.at_bound,
            )
        )

    for p, rho in RHO.items():
        res = fl.adaptive_sharpness(obj, rho=rho, p=p, steps=STEPS, seed=0)
        ms.append(
            record("adaptive", f"ℓ{'∞' if p == 'inf' else p}, ρ={rho:g}", res, value=res.value)
        )
    res = fl.average_sharpness(obj, sigma=SIGMA, samples=SAMPLES, adaptive=True, seed=0)
    ms.append(record("average", f"adaptive, σ={SIGMA:g}", res, value=res.value, stderr=res.stderr))
    for mag in (False, True):
        res = fl.pacbayes_flatness(obj, magnitude_aware=mag, seed=0)
        ms.append(
            record(
                "pacbayes",
                res.measure,
                res,
                value=res.value,
                sigma=res.sigma,
                status=res.status,
                iterations=res.iterations,
            )
        )
    res = fl.gradient_noise_scale(obj, method="examples", seed=0)
    ms.append(
        record(
            "noise",
            "examples",
            res,
            value=res.b_simple,
            stderr=res.b_simple_stderr,
            gradients=res.num_gradients,
        )
    )
    batched = fl.Objective(model, (X, y), batch_size=-(-len(X) // NOISE_BATCHES))
    res = fl.gradient_noise_scale(batched, method="batches", seed=0)
    ms.append(
        record(
            "noise",
            f"batches of {batched.batches[0][0].shape[0]}",
            res,
            value=res.b_simple,
            stderr=res.b_simple_stderr,
            gradients=res.num_gradients,
        )
    )
    res = fl.loss_landscape_2d(obj, steps=GRID, seed=0)
    ms.append(record("landscape", f"{GRID}×{GRID}, span ±1", res, value=float(res.loss.max())))
    for m in ms:
        m["ge"] = m["seconds"] / row["grad_s"]
    for m in find(row, "keskar"):  # the time not explained by the evaluations themselves
        m["beyond"] = m["ge"] - m["evaluations"] - row["value_s"] / row["grad_s"]
    return row


def bench_pair(
    label: str, sb: nn.Module, lb: nn.Module, data: Any, unit: float
) -> list[dict[str, Any]]:
    """The SB -> LB parametric plot of one network, with each way of setting BN statistics."""
    out = []
    at0, at1 = int(np.argmin(abs(ALPHAS))), int(np.argmin(abs(ALPHAS - 1)))
    for bn in ("interpolate", "recompute"):
        res = fl.parametric_plot(
            sb, lb, train=data.train, test=data.test, alphas=ALPHAS, bn=bn, batch_size=data.n_train
        )
        loss = res.train_loss
        acc = res.test_accuracy
        out.append(
            {
                "model": label,
                "bn": bn,
                "seconds": res.seconds,
                "evaluations": res.evaluations,
                "ge": res.seconds / unit,
                "barrier": float(loss[at0 : at1 + 1].max() - max(loss[at0], loss[at1])),
                "test_acc": None if acc is None else (float(acc[at0]), float(acc[at1])),
            }
        )
    return out


# ----------------------------------------------------------------------- the report
def g(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if not np.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


def span(values: list[float], spec: str = ".1f") -> str:
    lo, hi = min(values), max(values)
    if f"{lo:{spec}}" == f"{hi:{spec}}":
        return f"{lo:{spec}}"
    return f"{lo:{spec}} to {hi:{spec}}" if lo < 0 else f"{lo:{spec}}–{hi:{spec}}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    counts = {f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()}
    return ", ".join(sorted(counts)) or "none loaded"


def find(row: dict[str, Any], measure: str, setting: str | None = None) -> list[dict[str, Any]]:
    return [
        m
        for m in row["measures"]
        if m["measure"] == measure and (setting is None or m["setting"] == setting)
    ]


def summary(rows: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> list[str]:
    """Computed: the target, per solver, and the spans of every other measure's cost."""
    lines = []
    n = len(rows)
    for setting, label in (
        ("lbfgsb, full", "L-BFGS-B"),
        ("pga, full", "projected sign-gradient ascent (PGA)"),
    ):
        ms = [find(r, "keskar", setting)[0] for r in rows]
        costs = [m["ge"] for m in ms]
        hits = [r["model"] for r, c in zip(rows, costs, strict=True) if c <= TARGET]
        where = (
            f"met on {len(hits)}/{n} checkpoints"
            if len(hits) in (0, n)
            else f"met on {len(hits)}/{n} checkpoints ({', '.join(hits)})"
        )
        lines.append(
            f"- ε-sharpness (ε = {EPS:g}, full space, {MAXITER} iterations), {label}: "
            f"{span(costs)} gradient equivalents with "
            f"{span([m['evaluations'] for m in ms], 'd')} loss-and-gradient evaluations "
            f"({span([m['beyond'] for m in ms])} spent beyond them); "
            f"target ≤ {TARGET:g}: **{where}**."
        )
    sub = [find(r, "keskar", f"lbfgsb, p={SUBSPACE}")[0]["ge"] for r in rows]
    lines.append(f"- L-BFGS-B in a random {SUBSPACE}-dimensional subspace: {span(sub)}.")
    others = []
    for measure in ("adaptive", "average", "pacbayes", "noise", "landscape"):
        settings = dict.fromkeys(m["setting"] for r in rows for m in find(r, measure))
        for s in settings:
            costs = [m["ge"] for r in rows for m in find(r, measure, s)]
            others.append(f"{measure} ({s}) {span(costs)}")
    for bn in ("interpolate", "recompute"):
        costs = [p["ge"] for p in pairs if p["bn"] == bn]
        if costs:
            others.append(f"parametric plot (BN {bn}) {span(costs)}")
    lines.append("- Other measures, gradient equivalents: " + "; ".join(others) + ".")
    return lines


def render(rows: list[dict[str, Any]], pairs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    begin, end = curvature.SHARPNESS_MARKERS
    out = [
        begin,
        "## Sharpness measures",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} in {meta['wall']:.0f} s "
        f"(training included). Machine: {meta['cpu']}, {meta['threads']} torch threads "
        f"(BLAS threads: {meta['blas']}), Python {meta['python']}; torch {meta['torch']}; "
        "device: cpu.",
        "",
        f"The same checkpoints as above (trained again by the same code and seeds), on "
        f"MNIST-1D, {meta['n_train']} training examples as one fixed full-data float32 "
        "objective in eval mode. **Cost** is wall seconds of the whole call divided by the "
        "median time of one full-data `obj.value_and_gradient()` of the same checkpoint "
        f"(median of {meta['grad_repeats']} after 2 warm-up calls): *gradient equivalents*. "
        f"Keskar times are medians of {meta['repeats']} calls after one warm-up call; every "
        "other measure was timed once, cold. Counts are the measures' own: full-data "
        "evaluations (with a gradient where a gradient count is given).",
        "",
        "### Summary",
        "",
        *summary(rows, pairs),
        "",
        "### The unit",
        "",
        "| checkpoint | params | train loss | gradient (ms) | loss only (ms) | loss / gradient |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['params']:,} | {r['loss']:.4f} | {r['grad_s'] * 1e3:.2f} | "
            f"{r['value_s'] * 1e3:.2f} | {r['value_s'] / r['grad_s']:.2f} |"
        )
    out += [
        "",
        f"### Keskar ε-sharpness (ε = {EPS:g}, maxiter = {MAXITER}, random start, seed 0)",
        "",
        "φ is in percent. Evaluations: loss-and-gradient evaluations by the solver (one more "
        "loss evaluation gives f(x)). At bound: fraction of coordinates on a face of the box. "
        "Beyond evaluations: cost − evaluations − (loss time / gradient time), the gradient "
        "equivalents spent outside the objective's own evaluations (solver bookkeeping, "
        "host transfers, the subspace products, the box and the start); it is negative "
        "where the evaluations inside the call ran faster than the median that defines the "
        "unit.",
        "",
        "| checkpoint | solver | space | φ | iterations | evaluations | at bound | "
        f"seconds | cost | beyond evaluations | ≤ {TARGET:g} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for m in find(r, "keskar"):
            ok = "yes" if m["ge"] <= TARGET else "no"
            out.append(
                f"| {r['model']} | {m['solver']} | {m['space']} | {g(m['value'])} | "
                f"{m['iterations']} | {m['evaluations']} | {m['at_bound']:.2f} | "
                f"{m['seconds']:.3f} | {m['ge']:.1f} | {m['beyond']:.1f} | "
                f"{ok if m['space'] == 'full' else '–'} |"
            )
    out += [
        "",
        f"### Adaptive worst-case sharpness (η = 0, {STEPS} projected-ascent steps, whole data)",
        "",
        "Value: max f(w + δ) − f(w) found, ‖δ / |w|‖_p ≤ ρ.",
        "",
        "| checkpoint | ball | value | evaluations | gradients | seconds | cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for m in find(r, "adaptive"):
            out.append(
                f"| {r['model']} | {m['setting']} | {g(m['value'])} | {m['evaluations']} | "
                f"{m['gradients']} | {m['seconds']:.3f} | {m['ge']:.1f} |"
            )
    out += [
        "",
        f"### Average sharpness (adaptive, σ = {SIGMA:g}, {SAMPLES} samples)",
        "",
        "| checkpoint | value ± stderr | evaluations | seconds | cost |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        for m in find(r, "average"):
            out.append(
                f"| {r['model']} | {g(m['value'])} ± {g(m['stderr'], 2)} | "
                f"{m['evaluations']} | {m['seconds']:.3f} | {m['ge']:.1f} |"
            )
    out += [
        "",
        "### PAC-Bayes flatness (Jiang et al. 2019; loss criterion, threshold 0.1, "
        "16 samples per σ, bisection to 1%)",
        "",
        "| checkpoint | measure | value 1/σ'² | σ' | status | bisections | evaluations | "
        "seconds | cost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for m in find(r, "pacbayes"):
            out.append(
                f"| {r['model']} | {m['setting']} | {g(m['value'])} | {g(m['sigma'])} | "
                f"{m['status']} | {m['iterations']} | {m['evaluations']} | "
                f"{m['seconds']:.3f} | {m['ge']:.1f} |"
            )
    out += [
        "",
        "### Gradient noise scale B_simple (McCandlish et al. 2018; 20 jackknife groups)",
        "",
        "| checkpoint | units | B_simple ± stderr | unit gradients | seconds | cost |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for m in find(r, "noise"):
            out.append(
                f"| {r['model']} | {m['setting']} | {g(m['value'])} ± {g(m['stderr'], 2)} | "
                f"{m['gradients']} | {m['seconds']:.3f} | {m['ge']:.1f} |"
            )
    out += [
        "",
        "### 2-D loss landscape (filter-normalized directions, loss and accuracy per point)",
        "",
        "| checkpoint | grid | max loss on grid | evaluations | seconds | cost |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for m in find(r, "landscape"):
            out.append(
                f"| {r['model']} | {m['setting']} | {g(m['value'])} | {m['evaluations']} | "
                f"{m['seconds']:.3f} | {m['ge']:.1f} |"
            )
    out += [
        "",
        f"### Parametric plot SB ↔ LB ({len(ALPHAS)} points, α ∈ [−1, 2], train and test)",
        "",
        "Cost unit: the mean of the SB and LB gradient times. Barrier: the largest training "
        "loss on α ∈ [0, 1] minus the larger of the two end points. Evaluations: passes over "
        f"a split ({meta['n_train']} training, {meta['n_test']} test examples), plus one "
        "over the training data per point where BatchNorm statistics are recomputed.",
        "",
        "| network | BN statistics | barrier | test accuracy SB / LB | evaluations | "
        "seconds | cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        acc = "–" if p["test_acc"] is None else f"{p['test_acc'][0]:.3f} / {p['test_acc'][1]:.3f}"
        out.append(
            f"| {p['model']} | {p['bn']} | {g(p['barrier'])} | {acc} | {p['evaluations']} | "
            f"{p['seconds']:.3f} | {p['ge']:.1f} |"
        )
    out += side_by_side(rows)
    out += [
        "",
        "Settings: Keskar ε = 1e-3 (Keskar et al. 2017, Metric 2.1); adaptive worst-case "
        f"ρ = {RHO['2']:g} (ℓ2) and {RHO['inf']:g} (ℓ∞), relative to |w|; average-case "
        f"σ = {SIGMA:g} relative to |w|; PAC-Bayes and noise-scale settings are the "
        "functions' defaults; all seeds 0. These are cost measurements: the values are "
        "printed for reference and are not a study of SB vs LB.",
        end,
    ]
    return "\n".join(out)


def side_by_side(rows: list[dict[str, Any]]) -> list[str]:
    """SB and LB values of each network next to each other (informative only)."""
    by_name = {r["model"]: r for r in rows}
    nets = [r["model"][:-3] for r in rows if r["model"].endswith(" SB")]
    nets = [n for n in nets if f"{n} LB" in by_name]
    if not nets:
        return []
    out = [
        "",
        "### SB vs LB values (informative, one seed, not a claim)",
        "",
        "| measure | " + " | ".join(f"{n} SB | {n} LB" for n in nets) + " |",
        "|---|" + "---|---|" * len(nets),
    ]
    lines = [("train loss", lambda r: r["loss"])]
    for m in by_name[f"{nets[0]} SB"]["measures"]:
        if m["measure"] == "landscape":
            continue
        key = (m["measure"], m["setting"])
        lines.append(
            (
                f"{m['measure']} {m['setting']}",
                lambda r, key=key: find(r, *key)[0]["value"],
            )
        )
    for label, get in lines:
        cells = [g(get(by_name[f"{n} {reg}"])) for n in nets for reg in ("SB", "LB")]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def write_section(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else ""
    text = curvature.with_sharpness_block(text, block) if text else block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny MLP only, one repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each Keskar call")
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmark-curvature.md"))
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    torch.manual_seed(0)

    n_train = 4000
    data = load_dataset("mnist1d", n_train=n_train, n_test=1000, seed=0)
    X, y = data.train
    rows: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    sb: dict[str, tuple[nn.Module, float]] = {}
    for label, regime, model in curvature.trained_checkpoints(data, quick=args.quick):
        print(f"measuring {label} {regime} ...", flush=True)
        row = bench_checkpoint(f"{label} {regime}", model, X, y, repeats)
        rows.append(row)
        if regime == "SB":
            sb[label] = (model, row["grad_s"])
        elif label in sb:
            unit = (sb[label][1] + row["grad_s"]) / 2
            pairs += bench_pair(label, sb[label][0], model, data, unit)
    meta = {
        "command": "python analyses/benchmark_sharpness.py" + (" --quick" if args.quick else ""),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "blas": blas_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "n_train": n_train,
        "n_test": data.n_test,
        "repeats": repeats,
        "grad_repeats": max(2 * repeats + 1, 5),
        "wall": time.perf_counter() - started,
    }
    block = render(rows, pairs, meta)
    write_section(Path(args.out), block)
    print(block)
    print(f"wrote the sharpness section of {args.out} ({meta['wall']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
