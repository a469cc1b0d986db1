"""Peak host memory of one tool's call, measured in a fresh process.

On the CPU there is no allocator statistic like ``torch.cuda.max_memory_allocated``, and
in a process that ran other calls before, freed pages stay with the allocator and hide
the next call's peak. So each measured call runs alone in a new Python process
(:func:`peak_in_subprocess`), which

1. imports torch, flatness, PyHessian, curvlinops and scipy, builds the model and the
   data (loading trained weights where given), sets one thread and runs one forward pass
   on two examples (so every tool finds the same kernels initialised);
2. reads the resident set size (RSS) after a garbage collection: the *setup baseline*;
3. runs the call while a thread samples the RSS every 2 ms (:func:`peak_during`); the
   peak is the largest sample, or ``ru_maxrss`` if the kernel's own high-water mark rose
   during the call (then it is exact);
4. prints the peak minus the baseline, the call's seconds and products as JSON (and, for
   flatness, its Lanczos basis: vectors, device, bytes).

Usage (the benchmarks call it; by hand)::

    python analyses/peak_memory.py "ResNet-18" flatness 1 --n 256 [--state weights.pt] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TOOLS = ("flatness", "pyhessian", "curvlinops")

__all__ = ["TOOLS", "peak_during", "peak_in_subprocess"]


def peak_during(call: Callable[[], Any], interval: float = 0.002) -> tuple[Any, int]:
    """Run ``call`` and measure the peak RSS above the RSS just before it.

    Returns:
        ``(the call's value, peak bytes above the baseline)``.
    """
    import psutil

    gc.collect()
    proc = psutil.Process()
    base = proc.memory_info().rss
    high_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = call()
    finally:
        stop.set()
        sampler.join()
    high_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    top = max(peak[0], high_after if high_after > high_before else 0)
    return out, top - base


def peak_in_subprocess(
    case: str,
    tool: str,
    k: int,
    *,
    n: int,
    state: dict[str, Any] | None = None,
    quick: bool = False,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Run one tool's top-``k`` on a benchmark model in a fresh process.

    Args:
        case: A name of :data:`models.CASES`.
        tool: One of :data:`TOOLS`.
        k: How many eigenvalues.
        n: How many examples (the case's ``data(n)``).
        state: Trained weights (a ``state_dict``) to load into the model, if any.
        quick: Use the case's quick size.
        timeout: Seconds before the child is stopped.

    Returns:
        ``{"peak_bytes", "seconds", "products", "values", "error", "basis"}``; a child that dies
        gives its error (the last line of its stderr) and no peak.
    """
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(HERE / "peak_memory.py"), case, tool, str(k), "--n", str(n)]
        if state is not None:
            path = Path(tmp) / "state.pt"
            torch.save(state, path)
            cmd += ["--state", str(path)]
        if quick:
            cmd.append("--quick")
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"peak_bytes": None, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"peak_bytes": None, "error": f"exit {done.returncode}: {tail[:160]}"}
    return dict(json.loads(lines[-1]))


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case")
    parser.add_argument("tool", choices=TOOLS)
    parser.add_argument("k", type=int)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--state")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # every peer is imported before the baseline, so the baseline is the same for all;
    # curvlinops is a benchmark-only dependency (not in CI): measured where installed
    if importlib.util.find_spec("curvlinops") is not None:
        import curvlinops  # noqa: F401
    import pyhessian  # noqa: F401
    import scipy.sparse.linalg  # noqa: F401
    import torch

    sys.path.insert(0, str(HERE))
    import models
    import peers

    torch.set_num_threads(1)
    spec = models.case(args.case)
    model = spec.build(args.quick)
    if args.state:
        model.load_state_dict(torch.load(args.state, weights_only=True))
    model.eval()
    X, y = spec.data(args.n)
    with torch.no_grad():
        model(X[:2])
    call = {
        "flatness": lambda: peers.flatness_top_k(model, X, y, args.k),
        "pyhessian": lambda: peers.pyhessian_top_k(model, X, y, args.k),
        "curvlinops": lambda: peers.curvlinops_top_k(model, X, y, args.k),
    }[args.tool]
    run, peak = peak_during(call)
    print(
        json.dumps(
            {
                "peak_bytes": peak if run.ok else None,
                "seconds": run.seconds,
                "products": run.products,
                "values": run.values,
                "error": run.error,
                "basis": (run.extra.get("choices") or {}).get("basis"),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
