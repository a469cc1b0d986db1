"""The CUDA paths of the curvature engine, checked and timed in one short run (issues 16, 19).

A prepared script for a machine with a GPU (the ``device`` tool), at most a few minutes
on one H200. Each check runs on ``--device`` and compares with the CPU in float64 where
a value is compared:

1. ``objective``: an Objective on the device: loss and gradient against the CPU's;
2. ``hvp <strategy>``: one product per strategy (retained graph, double backward,
   forward-over-reverse) against the CPU float64 product;
3. ``block``: a block of 8 products vectorized (``torch.vmap``/``is_grads_batched``)
   against column by column: time per vector and agreement;
4. ``top-k``: λ_1 … λ_5 (certified to 1e-4), time and products, and PyHessian's top-1 on
   the same device for time;
5. ``basis on host``: top-5 with ``HessianOptions(basis_device="cpu")`` against the
   basis on the device: same values, peak device memory of each;
6. ``ResNet-18 memory``: top-1 peak device memory (``torch.cuda.max_memory_allocated``
   above the setup) of flatness against PyHessian;
7. ``attention``: products through ``nn.TransformerEncoder`` and a Hugging Face GPT-2 on
   the device (fused attention kernels lack double backward there too): the routing
   recorded and the product against the CPU's.

Every check is caught: a failure is a row with its error's first line. The rows go to
``gpu-check.json`` (under ``$OUT`` when set, else ``reports/``), which
``benchmark_curvature.py`` and ``benchmark_zoo.py`` show as their GPU section when it
was written on CUDA.

Usage::

    python analyses/gpu_check.py                          # on the GPU (cuda)
    python analyses/gpu_check.py --device cpu --quick     # the same paths on the CPU, tiny
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models
import peers

import flatness as fl
from flatness.curvature.hessian import HessianOperator

ROOT = Path(__file__).resolve().parents[1]


class Checks:
    """The rows of the run: one per check, with its result, seconds and error."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rows: list[dict[str, Any]] = []

    def run(self, name: str, check: Callable[[], str]) -> None:
        """Run one check; its text result, or its failure, becomes a row."""
        self.sync()
        start = time.perf_counter()
        try:
            result, ok = check(), True
        except Exception as err:  # a failing path is a result of the check
            result, ok = f"fails: {peers.first_line(err)}", False
        self.sync()
        seconds = time.perf_counter() - start
        self.rows.append({"name": name, "ok": ok, "result": result, "seconds": seconds})
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {result} ({seconds:.2f} s)", flush=True)

    def sync(self) -> None:
        """Wait for the device's queued work (timings on CUDA are asynchronous)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def peak_reset(self) -> int:
        """Reset the device's peak-memory statistic; return the memory allocated now."""
        if self.device.type != "cuda":
            return 0
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        return int(torch.cuda.memory_allocated(self.device))

    def peak_above(self, base: int) -> str:
        """The peak device memory since :meth:`peak_reset` above ``base``, in MiB."""
        if self.device.type != "cuda":
            return "n/a on cpu"
        return f"{(torch.cuda.max_memory_allocated(self.device) - base) / 2**20:.0f} MiB"


def rel(a: Tensor, b: Tensor) -> float:
    """``‖a − b‖ / ‖b‖`` in float64 on the CPU."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def run_checks(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    """All checks on ``device`` (tiny models when ``quick``).

    Returns:
        The rows.
    """
    checks = Checks(device)
    mlp = models.case("BN MLP")
    net = mlp.build(quick)
    X, y = mlp.data(mlp.n_quick if quick else mlp.n)
    cpu64 = fl.Objective(net, (X, y), dtype=torch.float64, device="cpu")
    obj = fl.Objective(net, (X, y), device=device)
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(1))

    def objective() -> str:
        value, grad = obj.value_and_gradient()
        ref_value, ref_grad = cpu64.value_and_gradient()
        return (
            f"loss rel. error {abs(float(value) - float(ref_value)) / abs(float(ref_value)):.1e}, "
            f"gradient {rel(grad, ref_grad):.1e}"
        )

    checks.run("objective", objective)
    reference = cpu64.hvp(v.double())
    for strategy in ("retained", "double_backward", "forward_over_reverse"):

        def product(strategy: str = strategy) -> str:
            with HessianOperator(obj, strategy=strategy) as H:  # type: ignore[arg-type]
                Hv = H.matvec(v.to(device))
                checks.sync()
                start = time.perf_counter()
                H.matvec(v.to(device))
                checks.sync()
                took = time.perf_counter() - start
            return f"rel. error {rel(Hv, reference):.1e}, {took * 1e3:.1f} ms per product"

        checks.run(f"hvp {strategy}", product)

    def block() -> str:
        V = torch.randn(obj.dim, 8, generator=torch.Generator().manual_seed(2)).to(device)
        times, outs = {}, {}
        for batched in (False, True):
            with HessianOperator(obj, batched=batched) as H:
                H.matmat(V)
                checks.sync()
                start = time.perf_counter()
                outs[batched] = H.matmat(V)
                checks.sync()
                times[batched] = (time.perf_counter() - start) / 8
        return (
            f"per vector: sequential {times[False] * 1e3:.1f} ms, vectorized "
            f"{times[True] * 1e3:.1f} ms ({times[False] / times[True]:.2f}× as fast); "
            f"rel. difference {rel(outs[True], outs[False]):.1e}"
        )

    checks.run("block of 8: vectorized vs sequential", block)
    for k in (1, 5):

        def top_k(k: int = k) -> str:
            res = fl.hessian_eigenvalues(obj, k=k, tol=1e-4, seed=0)
            vals = ", ".join(f"{x:.5g}" for x in res.eigenvalues)
            return (
                f"λ = {vals}; {res.matvecs} products, converged {res.all_converged}, "
                f"{res.seconds:.2f} s"
            )

        checks.run(f"top-{k} (BN MLP)", top_k)

    def pyhessian_top1() -> str:
        from pyhessian import hessian

        model = copy.deepcopy(net).to(device).eval()
        data = (X.to(device), y.to(device))
        with peers.ProductCounter() as counter:
            h = hessian(model, nn.CrossEntropyLoss(), data=data, cuda=device.type == "cuda")
            vals, _ = h.eigenvalues(top_n=1)
        return f"λ = {vals[0]:.5g}; {counter.count} products"

    checks.run("PyHessian top-1 (BN MLP)", pyhessian_top1)

    def basis_on_host() -> str:
        found = {}
        for where in ("operator", "cpu"):
            base = checks.peak_reset()
            res = fl.hessian_eigenvalues(
                obj, k=5, tol=1e-4, seed=0, hessian=fl.HessianOptions(basis_device=where)
            )
            found[where] = (res.eigenvalues, checks.peak_above(base), res.seconds)
        gap = max(
            abs(a - b) / abs(b) for a, b in zip(found["cpu"][0], found["operator"][0], strict=True)
        )
        return (
            f"values agree to {gap:.1e}; peak on the device {found['operator'][1]} (basis "
            f"there) vs {found['cpu'][1]} (basis on host); {found['operator'][2]:.2f} s vs "
            f"{found['cpu'][2]:.2f} s"
        )

    checks.run("top-5 with the basis on the host", basis_on_host)
    checks.run("ResNet-18 top-1 memory", lambda: _resnet_memory(checks, quick))
    for name in ("Transformer", "GPT-2 (tiny)"):

        def attention(name: str = name) -> str:
            return _attention(name, device, quick)

        checks.run(f"attention: {name}", attention)
    return checks.rows


def _resnet_memory(checks: Checks, quick: bool) -> str:
    from pyhessian import hessian

    spec = models.case("ResNet-18")
    device = checks.device
    X, y = (t.to(device) for t in spec.data(spec.n_quick if quick else spec.n))
    net = models.fit(spec.build(quick).to(device), X, y, steps=spec.steps)
    base = checks.peak_reset()
    start = time.perf_counter()
    res = fl.hessian_eigenvalues(fl.Objective(net, (X, y)), k=1, tol=1e-4, seed=0)
    checks.sync()
    ours, ours_s = checks.peak_above(base), time.perf_counter() - start
    model = copy.deepcopy(net).eval()
    base = checks.peak_reset()
    start = time.perf_counter()
    with peers.ProductCounter() as counter:
        h = hessian(model, nn.CrossEntropyLoss(), data=(X, y), cuda=device.type == "cuda")
        vals, _ = h.eigenvalues(top_n=1)
    checks.sync()
    theirs, theirs_s = checks.peak_above(base), time.perf_counter() - start
    return (
        f"flatness λ {res.eigenvalues[0]:.5g}, {res.matvecs} products, {ours_s:.2f} s, peak "
        f"{ours}; PyHessian λ {vals[0]:.5g}, {counter.count} products, {theirs_s:.2f} s, "
        f"peak {theirs}"
    )


def _attention(name: str, device: torch.device, quick: bool) -> str:
    spec = models.case(name)
    net = spec.build(quick)
    X, y = spec.data(spec.n_quick)
    on_device = fl.Objective(net, (X, y), device=device)
    cpu64 = fl.Objective(net, (X, y), dtype=torch.float64, device="cpu")
    v = torch.randn(on_device.dim, generator=torch.Generator().manual_seed(3))
    with HessianOperator(on_device) as H:
        Hv = H.matvec(v.to(device))
        routed = H.numerics.get("attention")
    with HessianOperator(cpu64) as H:
        ref = H.matvec(v.double())
    return f"attention routed: {routed}; product rel. error vs CPU float64 {rel(Hv, ref):.1e}"


def main(argv: list[str] | None = None) -> int:
    """Run the checks and write the JSON.

    Returns:
        0 when every check passed, else 1.
    """
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="Using backward.. with create_graph=True")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny models")
    out_dir = os.environ.get("OUT")
    default = Path(out_dir) / "gpu-check.json" if out_dir else ROOT / "reports" / "gpu-check.json"
    parser.add_argument("--out", default=str(default))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    started = time.perf_counter()
    rows = run_checks(device, args.quick)
    record = {
        "device": device.type,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "seconds": time.perf_counter() - started,
        "checks": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out} ({record['seconds']:.0f} s)")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
