"""Benchmark the curvature engine against PyHessian 0.1 on the same models and data.

One run trains small-batch (SB) and large-batch (LB) networks on MNIST-1D (generated
offline), then, for each checkpoint and in the same process, times

* a full-data gradient, and one Hessian-vector product per strategy (ratios);
* top-1 and top-5 eigenvalues: ours (Lanczos, certified by residuals) vs PyHessian's
  power iteration, with errors against a float64 reference (dense Hessian for the tiny
  MLP, float64 Lanczos to a 1e-8 relative residual for the larger nets);
* the trace: ours (exact for piecewise-linear nets, Hutch++ with a standard error) vs
  PyHessian's Hutchinson, with errors against the exact float64 trace;
* the spectral density (PyHessian's ``density()`` is tried and its failure recorded);

and writes ``reports/benchmark-curvature.md``.

Usage::

    python analyses/benchmark_curvature.py            # the full benchmark (~20 min on 2 cores)
    python analyses/benchmark_curvature.py --quick    # tiny MLP only, one repeat (~1 min)
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import platform
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import flatness as fl
from flatness.curvature.hessian import HessianOperator
from flatness.zoo import TrainConfig, load_dataset, train_network

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- timing
def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall seconds of ``repeats`` calls, and the last call's value."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


class ProductCounter:
    """Counts PyHessian's Hessian-vector products by wrapping its module functions."""

    def __init__(self) -> None:
        import pyhessian  # noqa: F401 - its package attribute `hessian` is the class

        ph = sys.modules["pyhessian.hessian"]
        self.module = ph
        self.count = 0
        self._orig_hvp = ph.hessian_vector_product
        self._orig_data = ph.hessian.dataloader_hv_product

    def __enter__(self) -> ProductCounter:
        counter = self

        def hvp(*args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return counter._orig_hvp(*args, **kwargs)

        def data_hvp(obj: Any, v: Any) -> Any:
            counter.count += 1
            return counter._orig_data(obj, v)

        self.module.hessian_vector_product = hvp
        self.module.hessian.dataloader_hv_product = data_hvp
        return self

    def __exit__(self, *exc: object) -> None:
        self.module.hessian_vector_product = self._orig_hvp
        self.module.hessian.dataloader_hv_product = self._orig_data


def pyhessian_run(model: nn.Module, X: torch.Tensor, y: torch.Tensor, what: str, **kw: Any):
    """Construct PyHessian on the full data (one batch, its retained-graph path) and run
    ``what``; returns (value, products). Construction is part of the work timed."""
    from pyhessian import hessian

    net = copy.deepcopy(model).eval()
    with ProductCounter() as counter:
        h = hessian(net, nn.CrossEntropyLoss(), data=(X, y), cuda=False)
        out = getattr(h, what)(**kw)
    return out, counter.count


def pyhessian_product_time(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, repeats: int
) -> float:
    """Median time of one PyHessian retained-graph product on the full data."""
    from pyhessian import hessian

    ph = sys.modules["pyhessian.hessian"]
    h = hessian(copy.deepcopy(model).eval(), nn.CrossEntropyLoss(), data=(X, y), cuda=False)
    v = [torch.randn_like(p) for p in h.params]
    ph.hessian_vector_product(h.gradsH, h.params, v)
    t, _ = timed(lambda: ph.hessian_vector_product(h.gradsH, h.params, v), repeats)
    return t


# ------------------------------------------------------------------------ references
def reference(model: nn.Module, X: torch.Tensor, y: torch.Tensor, k: int) -> dict[str, Any]:
    """Float64 top-k eigenvalues and trace."""
    obj = fl.Objective(model, (X, y), dtype=torch.float64, batch_size=len(X))
    if obj.dim <= 4000:
        with HessianOperator(obj) as H:
            dense = H.to_dense()
        eig = torch.linalg.eigvalsh(dense).flip(0)
        return {
            "eigs": eig[:k].tolist(),
            "trace": float(torch.trace(dense)),
            "how": "dense float64 Hessian",
        }
    res = fl.hessian_eigenvalues(obj, k=k, tol=1e-8, max_matvecs=3000, seed=123)
    tr = fl.hessian_trace(obj, method="exact")
    worst = max(r / abs(e) for r, e in zip(res.residuals, res.eigenvalues, strict=True))
    return {
        "eigs": list(res.eigenvalues),
        "trace": tr.estimate,
        "how": f"float64 Lanczos (worst relative residual {worst:.1e}), exact float64 trace",
    }


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# ------------------------------------------------------------------------- one model
def bench_model(
    name: str, model: nn.Module, X: torch.Tensor, y: torch.Tensor, repeats: int
) -> dict[str, Any]:
    row: dict[str, Any] = {"model": name, "params": sum(p.numel() for p in model.parameters())}
    print(f"  reference for {name} ...", flush=True)
    ref = reference(model, X, y, k=5)
    row["reference"] = ref
    obj = fl.Objective(model, (X, y), batch_size=len(X))

    # gradient and products
    t_grad, _ = timed(obj.gradient, max(repeats, 5))
    row["grad_s"] = t_grad
    v = torch.randn(obj.dim)
    for strategy in ("auto", "retained", "double_backward", "forward_over_reverse"):
        with HessianOperator(obj, strategy=strategy) as H:  # type: ignore[arg-type]
            H.matvec(v)
            t, _ = timed(lambda H=H: H.matvec(v), max(repeats, 5))
            row[f"hvp_{strategy}_s"] = t
            if strategy == "auto":
                row["auto_choices"] = dict(H.choices)
    row["hvp_pyhessian_s"] = pyhessian_product_time(model, X, y, max(repeats, 5))
    V = torch.randn(obj.dim, 8)
    for batched in (False, True):
        with HessianOperator(obj, batched=batched) as H:
            H.matmat(V)
            t, _ = timed(lambda H=H: H.matmat(V), repeats)
            row[f"block8_{'batched' if batched else 'sequential'}_s"] = t / 8
    with HessianOperator(obj) as H:  # the automatic choice, timed on its first block
        H.matmat(V)
        row["block8_auto_batched"] = bool(H.choices["batched"])

    # eigenvalues
    for k, tag in ((1, "top1"), (5, "top5")):
        t, (vals, prods) = timed(
            lambda k=k: pyhessian_run(model, X, y, "eigenvalues", top_n=k), repeats
        )
        eigs = vals[0]
        row[f"ph_{tag}"] = {
            "s": t,
            "products": prods,
            "err": max(rel_err(e, r) for e, r in zip(eigs, ref["eigs"][:k], strict=True)),
        }
        t, res = timed(lambda k=k: fl.hessian_eigenvalues(obj, k=k, tol=1e-4, seed=0), repeats)
        if k > 1:
            t_nomc, res_nomc = timed(
                lambda k=k: fl.hessian_eigenvalues(
                    obj, k=k, tol=1e-4, seed=0, multiplicity_check=False
                ),
                repeats,
            )
            row[f"our_{tag}_nomc"] = {
                "s": t_nomc,
                "products": res_nomc.matvecs,
                "converged": res_nomc.all_converged,
            }
        row[f"our_{tag}"] = {
            "s": t,
            "products": res.matvecs,
            "err": max(
                rel_err(e, r) for e, r in zip(res.eigenvalues, ref["eigs"][:k], strict=True)
            ),
            "certified": max(
                r / abs(e) for r, e in zip(res.residuals, res.eigenvalues, strict=True)
            ),
            "converged": res.all_converged,
        }

    # trace
    t, (samples, prods) = timed(lambda: pyhessian_run(model, X, y, "trace"), repeats)
    row["ph_trace"] = {
        "s": t,
        "products": prods,
        "probes": len(samples),
        "err": rel_err(float(np.mean(samples)), ref["trace"]),
    }
    try:
        t, res = timed(lambda: fl.hessian_trace(obj, method="exact"), repeats)
        row["our_trace_exact"] = {"s": t, "err": rel_err(res.estimate, ref["trace"])}
    except ValueError as err:
        row["our_trace_exact"] = {"error": str(err)}
    t, res = timed(lambda: fl.hessian_trace(obj, method="hutchpp", budget=60, seed=0), repeats)
    row["our_trace_hutchpp"] = {
        "s": t,
        "products": res.matvecs,
        "stderr": res.stderr,
        "err": rel_err(res.estimate, ref["trace"]),
        "z": abs(res.estimate - ref["trace"]) / res.stderr,
    }

    # density
    try:
        pyhessian_run(model, X, y, "density", iter=20, n_v=1)
        row["ph_density"] = "ran"
    except Exception as err:  # recorded for the report
        row["ph_density"] = f"{type(err).__name__}: {str(err).splitlines()[0]}"
    t, res = timed(lambda: fl.spectral_density(obj, steps=40, runs=3, seed=0), 1)
    row["our_density"] = {"s": t, "products": res.matvecs}
    return row


# ----------------------------------------------------------------------- the report
def fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}g}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.{digits + 1}g}"


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        "# Curvature engine vs PyHessian 0.1",
        "",
        f"Generated by `{meta['command']}` on {meta['date']}.",
        f"Machine: {meta['machine']}; torch {meta['torch']} ({meta['threads']} threads); "
        f"device: {meta['device']}. GPU timings: {meta['gpu']}.",
        "",
        f"Data: MNIST-1D, {meta['n_train']} training examples (generated offline), all "
        "used as one fixed full-data objective in float32, eval mode. Times are medians "
        f"of {meta['repeats']} runs, in the same process, on the same model and data; "
        "each includes building the operator (PyHessian: its constructor).",
        "",
        "## Hessian-vector products (time / full-data gradient time)",
        "",
        "| model | params | gradient | PyHessian product | auto | retained | double backward | "
        "forward-over-reverse | block of 8, per vector: sequential / vectorized |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g = r["grad_s"]
        out.append(
            f"| {r['model']} | {r['params']:,} | {g * 1e3:.1f} ms | "
            f"{r['hvp_pyhessian_s'] / g:.2f} | {r['hvp_auto_s'] / g:.2f} | "
            f"{r['hvp_retained_s'] / g:.2f} | "
            f"{r['hvp_double_backward_s'] / g:.2f} | {r['hvp_forward_over_reverse_s'] / g:.2f} | "
            f"{r['block8_sequential_s'] / g:.2f} / {r['block8_batched_s'] / g:.2f} |"
        )
    out += [
        "",
        "## Eigenvalues",
        "",
        "Relative error against the float64 reference; ours stops when every relative "
        "residual ‖Hv − λv‖/|λ| ≤ 1e-4, which bounds the relative error of λ; PyHessian "
        "stops when its estimate changes by less than 1e-3 between two iterations.",
        "",
        "| model | top-k | PyHessian s | products | error | ours s | products | error | "
        "certified residual | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for tag, k in (("top1", 1), ("top5", 5)):
            ph, us = r[f"ph_{tag}"], r[f"our_{tag}"]
            out.append(
                f"| {r['model']} | {k} | {ph['s']:.2f} | {ph['products']} | {fmt(ph['err'])} | "
                f"{us['s']:.2f} | {us['products']} | {fmt(us['err'])} | "
                f"{fmt(us['certified'])}{'' if us['converged'] else ' (not converged)'} | "
                f"{ph['s'] / us['s']:.2f}× |"
            )
    out += [
        "",
        "Our top-5 runs include the multiplicity check (a search, outside the eigenvectors "
        "found, for a missed copy of a repeated eigenvalue). Without it "
        "(`multiplicity_check=False`):",
        "",
    ]
    for r in rows:
        nomc, ph = r["our_top5_nomc"], r["ph_top5"]
        out.append(
            f"- {r['model']}: {nomc['s']:.2f} s, {nomc['products']} products, "
            f"{'converged' if nomc['converged'] else 'NOT converged'}; "
            f"{ph['s'] / nomc['s']:.2f}× faster than PyHessian's top_n=5."
        )
    out += [
        "",
        "## Trace",
        "",
        "| model | PyHessian s | probes | error | exact (ours) s | error | speed-up | "
        "Hutch++ (60 products) s | error | stderr | |error|/stderr |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ph, ex, hp = r["ph_trace"], r["our_trace_exact"], r["our_trace_hutchpp"]
        exact = (
            f"{ex['s']:.2f} | {fmt(ex['err'])} | {ph['s'] / ex['s']:.2f}×"
            if "s" in ex
            else "refused | – | –"
        )
        out.append(
            f"| {r['model']} | {ph['s']:.2f} | {ph['probes']} | {fmt(ph['err'])} | {exact} | "
            f"{hp['s']:.2f} | {fmt(hp['err'])} | {fmt(hp['stderr'] / abs(r['reference']['trace']))}"
            f" (rel.) | {hp['z']:.2f} |"
        )
    out += ["", "## Spectral density", ""]
    for r in rows:
        out.append(
            f"- {r['model']}: PyHessian `density()`: {r['ph_density']}. Ours (SLQ, 3 runs × 40 "
            f"steps, full reorthogonalization): {r['our_density']['s']:.2f} s, "
            f"{r['our_density']['products']} products."
        )
    out += ["", "## Against the targets", "", *summary(rows), "", "## References", ""]
    for r in rows:
        out.append(
            f"- {r['model']}: {r['reference']['how']}; automatic strategy chose "
            f"`{r['auto_choices']}`."
        )
    out.append("")
    return "\n".join(out)


def _span(values: list[float], spec: str = ".2f") -> str:
    lo, hi = min(values), max(values)
    return f"{lo:{spec}}" if lo == hi else f"{lo:{spec}}–{hi:{spec}}"


def _met(values: list[float], ok: Callable[[float], bool], rows: list[dict[str, Any]]) -> str:
    hits = [r["model"] for r, v in zip(rows, values, strict=True) if ok(v)]
    if len(hits) == len(rows):
        return "met on every model"
    if not hits:
        return "not met on any model"
    return f"met on {', '.join(hits)} only"


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Each target of the benchmark, with the measured span and where it is met."""
    auto = [r["hvp_auto_s"] / r["grad_s"] for r in rows]
    ph_prod = [r["hvp_pyhessian_s"] / r["grad_s"] for r in rows]
    top1 = [r["ph_top1"]["s"] / r["our_top1"]["s"] for r in rows]
    top5 = [r["ph_top5"]["s"] / r["our_top5"]["s"] for r in rows]
    top5n = [r["ph_top5"]["s"] / r["our_top5_nomc"]["s"] for r in rows]
    exact = [
        r["ph_trace"]["s"] / r["our_trace_exact"]["s"] for r in rows if "s" in r["our_trace_exact"]
    ]
    exact_rows = [r for r in rows if "s" in r["our_trace_exact"]]
    block = [r["block8_sequential_s"] / r["block8_batched_s"] for r in rows]
    right = sum(
        1
        for r in rows
        if r["block8_auto_batched"] == (r["block8_batched_s"] < r["block8_sequential_s"])
    )
    return [
        f"- Full-data product / gradient, automatic strategy: {_span(auto)} (target ≤ 1.5: "
        f"{_met(auto, lambda v: v <= 1.5, rows)}). PyHessian's own retained-graph product "
        f"in the same run: {_span(ph_prod)}.",
        f"- Top-1 to a certified 1e-4 relative residual, PyHessian time / ours: {_span(top1)} "
        f"(target ≥ 1: {_met(top1, lambda v: v >= 1.0, rows)}); PyHessian's errors were "
        f"{_span([r['ph_top1']['err'] for r in rows], '.1e')}, ours "
        f"{_span([r['our_top1']['err'] for r in rows], '.1e')}.",
        f"- Top-5 to 1e-4, speed-up over PyHessian's top_n=5: {_span(top5)} with the "
        f"multiplicity check, {_span(top5n)} without (target ≥ 3: "
        f"{_met(top5, lambda v: v >= 3.0, rows)} with it; "
        f"{_met(top5n, lambda v: v >= 3.0, rows)} without).",
        f"- Exact trace, speed-up over PyHessian's Hutchinson: {_span(exact)} (target ≥ 4: "
        f"{_met(exact, lambda v: v >= 4.0, exact_rows)}), with no sampling error where "
        f"PyHessian's was {_span([r['ph_trace']['err'] for r in rows], '.1e')}.",
        f"- Vectorized block products / sequential ones, per vector: {_span(block)}× as "
        f"fast; the automatic choice (timed on its first block) picked the mode that was "
        f"faster in this timing on {right}/{len(rows)} models.",
    ]


# -------------------------------------------------------------------- shared pieces
def trained_checkpoints(data: Any, *, quick: bool) -> Iterator[tuple[str, str, nn.Module]]:
    """Train the benchmark's networks SB then LB on ``data`` (MNIST-1D), one at a time:
    yields ``(network label, regime, model in eval mode)``. Also used by
    ``benchmark_sharpness.py``, so both benchmarks score the same checkpoints."""
    models: list[tuple[str, TrainConfig]] = [
        ("tiny MLP", TrainConfig(network="tiny_mlp", epochs=3)),
    ]
    if not quick:
        models += [
            ("BN MLP", TrainConfig(network="mlp_bn", epochs=3)),
            (
                "conv net",
                TrainConfig(
                    network="c1", epochs=2, network_kwargs={"channels": 32, "hidden": [128, 64]}
                ),
            ),
        ]
    for label, cfg in models:
        for regime, batch in (("SB", 64), ("LB", "10%")):
            config = TrainConfig(
                **{
                    **cfg.to_dict(),
                    "dataset": "mnist1d",
                    "dataset_kwargs": {"n_train": data.n_train, "n_test": data.n_test, "seed": 0},
                    "batch_size": batch,
                    "regime": regime,
                    "milestones": (),
                }
            )
            print(f"training {label} {regime} ...", flush=True)
            yield label, regime, train_network(config, data=data).model.eval()


SHARPNESS_MARKERS = ("<!-- sharpness:begin -->", "<!-- sharpness:end -->")


def sharpness_block(text: str) -> str | None:
    """The sharpness section of a report, markers included, or None."""
    begin, end = SHARPNESS_MARKERS
    i, j = text.find(begin), text.find(end)
    return text[i : j + len(end)] if 0 <= i < j else None


def with_sharpness_block(text: str, block: str) -> str:
    """``text`` with ``block`` in place of its sharpness section, else inserted before
    ``## References``, else appended."""
    old = sharpness_block(text)
    if old is not None:
        return text.replace(old, block, 1)
    at = text.find("\n## References")
    if at >= 0:
        return f"{text[: at + 1]}{block}\n\n{text[at + 1 :]}"
    return f"{text.rstrip()}\n\n{block}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message="Using backward.. with create_graph=True")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny MLP only, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmark-curvature.md"))
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    torch.manual_seed(0)

    n_train = 4000
    data = load_dataset("mnist1d", n_train=n_train, n_test=1000, seed=0)
    X, y = data.train
    rows = []
    for label, regime, model in trained_checkpoints(data, quick=args.quick):
        print(f"benchmarking {label} {regime} ...", flush=True)
        try:
            rows.append(bench_model(f"{label} {regime}", model, X, y, repeats))
        except Exception:  # keep what finished; say what failed
            traceback.print_exc()
            return 1
    meta = {
        "command": "python analyses/benchmark_curvature.py" + (" --quick" if args.quick else ""),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} CPU threads, "
        f"Python {sys.version.split()[0]}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "gpu": "pending (no GPU was lent to the session that produced this report)",
        "n_train": n_train,
        "repeats": repeats,
    }
    text = render(rows, meta)
    if Path(args.out).exists():  # keep the section benchmark_sharpness.py wrote
        block = sharpness_block(Path(args.out).read_text())
        text = text if block is None else with_sharpness_block(text, block)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
