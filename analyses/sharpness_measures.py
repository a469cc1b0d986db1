"""Cost of the sharpness measures other than Keskar's, in full-data gradient equivalents.

For each trained checkpoint (one fixed full-data float32 objective in eval mode) this
times adaptive worst-case sharpness (ℓ2 and ℓ∞), adaptive average sharpness, PAC-Bayes
flatness (plain and magnitude-aware), the gradient noise scale (per-example and
per-batch) and a 21 × 21 filter-normalized landscape, and, per network, the SB ↔ LB
parametric plot (25 points, running statistics interpolated and recomputed).
``benchmark_sharpness.py --all-measures`` runs it and puts :func:`tables` in its report.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

import flatness as fl

__all__ = ["bench_checkpoint", "bench_pair", "tables"]

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


def find(row: dict[str, Any], measure: str, setting: str | None = None) -> list[dict[str, Any]]:
    return [
        m
        for m in row["measures"]
        if m["measure"] == measure and (setting is None or m["setting"] == setting)
    ]


def tables(
    rows: list[dict[str, Any]], pairs: list[dict[str, Any]], meta: dict[str, Any]
) -> list[str]:
    """The cost tables of the other sharpness measures, and the SB vs LB values.

    Returns:
        Markdown lines.
    """
    out: list[str] = [
        "",
        "## The other sharpness measures",
        "",
        "Cost: wall seconds of the call over the median time of one full-data gradient of "
        "the same checkpoint, every measure timed once, cold; the measures' own counts of "
        "full-data evaluations (with a gradient where a gradient count is given).",
        "",
        "| checkpoint | params | train loss | gradient (ms) | loss only (ms) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['params']:,} | {r['loss']:.4f} | {r['grad_s'] * 1e3:.2f} | "
            f"{r['value_s'] * 1e3:.2f} |"
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
        "Settings: adaptive worst-case "
        f"ρ = {RHO['2']:g} (ℓ2) and {RHO['inf']:g} (ℓ∞), relative to |w|; average-case "
        f"σ = {SIGMA:g} relative to |w|; PAC-Bayes and noise-scale settings are the "
        "functions' defaults; all seeds 0. These are cost measurements: the values are "
        "printed for reference and are not a study of SB vs LB.",
    ]
    return out


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
