"""Intra-op threads on a busy machine: 1 against 2 threads, idle and under load (issue 17).

With other work on the cores, torch's OpenMP threads wait for each other at every
parallel region; a small network's kernels are too short to gain from a second thread
and lose most when a busy core delays one of them. This times, with
``torch.set_num_threads(1)`` and ``(2)``:

* a 64 × 64 matrix product (the issue's example);
* one training step (forward, cross-entropy, backward, Adam) of the built-in networks
  on MNIST-1D-shaped inputs (40 features, 10 classes) at the demo's small batch (20,
  0.5% of 4000) and large batch (400, 10%);
* one Hessian-vector product of the same networks on the scoring default of 1000
  examples (eval mode, retained graph: :class:`flatness.HessianOperator`);

first as the machine is (on a shared machine: not idle), then with ``--load`` CPU
burners (``while True: pass`` processes this script starts and stops). Each time is the
median of repeats over about a second (at least three). The numbers fix the rule of
:mod:`flatness.threads`.

Usage::

    python analyses/benchmark_threads.py              # idle, then with 2 burners
    python analyses/benchmark_threads.py --load 0     # without load only
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from flatness import HessianOperator, Objective
from flatness.threads import SMALL_WORK, intra_op_threads, work_size
from flatness.zoo.networks import build_network

NETWORKS: dict[str, tuple[str, dict[str, object]]] = {
    "tiny_mlp": ("tiny_mlp", {}),
    "f1 256x3 (demo)": ("f1", {"width": 256, "depth": 3}),
    "f1 512x5": ("f1", {}),
    "c1 32 (full study)": ("c1", {"channels": 32, "hidden": [192, 96]}),
}


def median_seconds(fn: Callable[[], object], budget: float = 1.0, most: int = 50) -> float:
    """The median time of ``fn()`` over repeats filling about ``budget`` seconds."""
    fn()  # warm-up
    times: list[float] = []
    spent = 0.0
    while len(times) < 3 or (spent < budget and len(times) < most):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    return statistics.median(times)


def train_step(net: nn.Module, batch: int) -> Callable[[], object]:
    """One Adam step of ``net`` on a random batch of MNIST-1D shape."""
    x, y = torch.randn(batch, 40), torch.randint(0, 10, (batch,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()

    def step() -> None:
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


@contextmanager
def burners(count: int) -> Iterator[None]:
    """``count`` busy-loop processes for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5 if procs else 0.0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def rows() -> Iterator[tuple[str, float, float]]:
    """(workload, ms with 1 thread, ms with 2 threads) for every workload."""
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    yield "matmul 64x64", *(_both(lambda: a @ b))
    data = torch.randn(1000, 40), torch.randint(0, 10, (1000,))
    for label, (name, kwargs) in NETWORKS.items():
        net = build_network(name, input_shape=[40], num_classes=10, **kwargs)
        size = sum(p.numel() for p in net.parameters())
        for batch in (20, 400):
            work = work_size(net, batch)
            tag = f"train {label}, batch {batch} ({size} params, work {work:.1e})"
            yield tag, *(_both(train_step(net, batch)))
        net.eval()
        with HessianOperator(Objective(net, data)) as H:
            hvp = functools.partial(H.matvec, torch.randn(H.dim))
            work = work_size(net, 1000)
            yield f"HVP {label}, 1000 examples (work {work:.1e})", *(_both(hvp))


def _both(fn: Callable[[], object]) -> tuple[float, float]:
    out = []
    for n in (1, 2):
        with intra_op_threads(n):
            out.append(1000 * median_seconds(fn))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    """Print the table: each workload, idle and under load, 1 and 2 threads."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=int, default=2, help="CPU burners for the loaded run")
    args = parser.parse_args(argv)
    print(f"cpus {os.cpu_count()}, torch {torch.__version__}, SMALL_WORK {SMALL_WORK:.1e}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    loads = [0] + ([args.load] if args.load > 0 else [])
    table: dict[str, list[float]] = {}
    for load in loads:
        with burners(load):
            for name, one, two in rows():
                table.setdefault(name, []).extend([one, two])
                print(f"  load {load}: {name}: 1 thread {one:.3g} ms, 2 threads {two:.3g} ms")
    print()
    head = "| workload | no burners 1 thr (ms) | no burners 2 thr (ms) |"
    if len(loads) > 1:
        head += f" {args.load} burners 1 thr (ms) | {args.load} burners 2 thr (ms) |"
    print(head)
    print("|" + "---|" * (1 + 2 * len(loads)))
    for name, values in table.items():
        print(f"| {name} | " + " | ".join(f"{v:.3g}" for v in values) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
