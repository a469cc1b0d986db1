"""Data-parallel Hessian products: 1 process x 2 threads vs 2 processes x 1 thread.

On this 2-core machine the same two cores either run one process with two intra-op
threads (the ``Objective`` sums every batch itself) or two ``gloo`` processes with
one thread each, each holding half of the examples (``Objective(...,
distributed="auto")`` under an initialized process group, its partial sums
all-reduced). For the zoo's medium network (the ``BN MLP`` of
``analyses/models.py``, 146k parameters, fitted by 20 full-batch SGD steps) on 4000
MNIST-1D examples it times

* one Hessian-vector product (:meth:`~flatness.curvature.hessian.HessianOperator.matvec`,
  after a warm-up that lets the operator pick its strategy), ``--products`` of them
  per run, their median;
* the top 5 eigenvalues (:func:`flatness.hessian_eigenvalues`, ``k=5``, ``seed=0``);
* the communication share of a product: seconds inside ``Objective.reduce`` (the
  all-reduce of the partial sum) over the product's seconds, on rank 0.

Runs of the two configurations alternate ``--repeats`` times, each in fresh
processes; the report gives the speed-ups (one process's time over two processes')
as the median and the min-max over the repeats. GPU rows stay "pending" unless a GPU
is lent.

Run: ``python analyses/benchmark_distributed.py`` (about 5 minutes on 2 cores;
``--quick`` for a smoke run) → ``reports/benchmark-distributed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "reports" / "benchmark-distributed.md"
CASE = "BN MLP"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One process's (one rank's) timings; every rank runs it.

    Returns:
        ``hvp`` (median seconds of a product), ``top5`` (seconds), ``comm_share``
        (median share of a product's seconds inside the all-reduce), ``world``,
        ``threads`` and the top eigenvalues.
    """
    import torch
    import torch.distributed as dist

    sys.path.insert(0, str(REPO))
    import flatness as fl
    from analyses.models import fit, prepare

    torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    model, X, y = prepare(CASE, args.examples, quick=args.quick)
    fit(model, X, y, steps=5 if args.quick else 20)
    objective = fl.Objective(model, (X, y), distributed="auto")
    inside = [0.0]
    reduce = objective.reduce

    def timed_reduce(partial: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = reduce(partial)
        inside[0] += time.perf_counter() - start
        return out

    objective.reduce = timed_reduce  # type: ignore[method-assign]
    operator = fl.HessianOperator(objective)
    v = torch.randn(operator.dim, generator=torch.Generator().manual_seed(0))
    v = v.to(objective.dtype)
    for _ in range(2):  # warm-up: the operator measures its strategies
        operator.matvec(v)
    seconds, shares = [], []
    for _ in range(args.products):
        if world > 1:
            dist.barrier()
        inside[0] = 0.0
        start = time.perf_counter()
        operator.matvec(v)
        took = time.perf_counter() - start
        seconds.append(took)
        shares.append(inside[0] / took)
    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    eig = fl.hessian_eigenvalues(objective, k=5, seed=0)
    top5 = time.perf_counter() - start
    if world > 1:
        dist.destroy_process_group()
    return {
        "world": world,
        "threads": args.threads,
        "hvp": statistics.median(seconds),
        "comm_share": statistics.median(shares),
        "top5": top5,
        "eigenvalues": [float(e) for e in eig.eigenvalues],
        "local_examples": int(objective.local_examples),
        "parameters": int(operator.dim),
    }


def _launch(world: int, threads: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Run :func:`measure` in ``world`` fresh processes; rank 0's timings."""
    port = str(_port())
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
        if world > 1:
            env |= {
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(world),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
            }
        else:
            env = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE")}
        out = folder / f"w{world}-r{rank}.json"
        command = [sys.executable, __file__, "--worker", str(out), "--threads", str(threads)]
        command += ["--examples", str(args.examples), "--products", str(args.products)]
        command += ["--quick"] if args.quick else []
        procs.append(subprocess.Popen(command, env=env, cwd=REPO))
    for proc in procs:
        if proc.wait(timeout=args.timeout) != 0:
            raise RuntimeError(f"a {world}-process run failed (exit {proc.returncode})")
    return dict(json.loads((folder / f"w{world}-r0.json").read_text()))


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def report(runs: list[tuple[dict[str, Any], dict[str, Any]]], args: argparse.Namespace) -> str:
    """The Markdown report of alternating (1 × 2, 2 × 1) runs.

    Returns:
        The report's text.
    """
    hvp = [one["hvp"] / two["hvp"] for one, two in runs]
    top5 = [one["top5"] / two["top5"] for one, two in runs]
    share = [two["comm_share"] for _, two in runs]
    one_ms = [one["hvp"] * 1e3 for one, _ in runs]
    two_ms = [two["hvp"] * 1e3 for _, two in runs]
    one_s = [one["top5"] for one, _ in runs]
    two_s = [two["top5"] for _, two in runs]
    gap = max(
        abs(a - b) / max(abs(a), 1e-12)
        for one, two in runs
        for a, b in zip(one["eigenvalues"], two["eigenvalues"], strict=True)
    )
    lines = [
        "# Data-parallel Hessian products: one process or two on two cores",
        "",
        f"Generated by `python analyses/benchmark_distributed.py"
        f"{' --quick' if args.quick else ''}` on {time.strftime('%Y-%m-%d')} "
        f"({os.cpu_count()} CPU cores, shared with other work: load average "
        f"{os.getloadavg()[1]:.1f} over the last 5 minutes at the end; {len(runs)} "
        f"alternating repeat(s) within the --budget, {args.products} products per run).",
        "",
        f"Network: the zoo's medium network ({CASE}: 40-256-256-256-10 MLP with BatchNorm"
        f"{', narrowed to width 32 by --quick' if args.quick else ''}, "
        f"{runs[0][0]['parameters']:,} parameters, fitted by "
        f"{5 if args.quick else 20} full-batch SGD steps) on {args.examples} MNIST-1D "
        "examples, float32, evaluation mode. **1 × 2**: one process, two intra-op "
        "threads. **2 × 1**: two `gloo` processes with one thread each, each holding "
        f'{runs[0][1]["local_examples"]} examples (`Objective(..., distributed="auto")`), '
        "partial sums all-reduced. Speed-up = time of 1 × 2 / time of 2 × 1: median "
        "(min–max) over the repeats.",
        "",
        "| device | measure | 1 × 2 | 2 × 1 | speed-up |",
        "|---|---|---|---|---|",
        f"| CPU (2 cores) | one HVP (ms) | {_spread(one_ms)} | {_spread(two_ms)} "
        f"| {_spread(hvp)} |",
        f"| CPU (2 cores) | top-5 eigenvalues (s) | {_spread(one_s)} | {_spread(two_s)} "
        f"| {_spread(top5)} |",
        "| GPU | one HVP | pending (no GPU lent) | pending | pending |",
        "| GPU | top-5 eigenvalues | pending (no GPU lent) | pending | pending |",
        "",
        f"Communication share of an HVP (2 × 1, rank 0: seconds inside the all-reduce of "
        f"the partial sum / seconds of the product): **{_spread([100 * s for s in share])} %**.",
        "The share includes the wait for the slower rank (the all-reduce is where the "
        "ranks meet), so on a shared machine it also measures load imbalance.",
        "",
        f"The top-5 eigenvalues of the two configurations agree to {gap:.1e} (relative).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker``, one process of it).

    Returns:
        The exit status (0).
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 examples, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats")
    parser.add_argument("--products", type=int, default=10, help="timed products per run")
    parser.add_argument("--examples", type=int, default=4000, help="MNIST-1D examples")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument(
        "--budget", type=float, default=420, help="no new repeat after this many seconds"
    )
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=OUT, help="the report (Markdown)")
    args = parser.parse_args(argv)
    if args.worker is not None:
        result = measure(args)
        if int(os.environ.get("RANK", "0")) == 0:
            args.worker.write_text(json.dumps(result))
        return 0
    if args.quick:
        args.repeats, args.examples, args.products = 1, 500, 3
    runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            if runs and time.monotonic() - began > args.budget:
                break  # the report says how many repeats ran
            one = _launch(1, 2, args, Path(folder))
            two = _launch(2, 1, args, Path(folder))
            runs.append((one, two))
            print(f"1x2 {one['hvp'] * 1e3:.1f} ms, 2x1 {two['hvp'] * 1e3:.1f} ms", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(runs, args))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
