"""Benchmark flatness's curvature engine against PyHessian 0.1 and curvlinops 3.0.1 (issue 19).

Models (``analyses/models.py``): a 3.4k-parameter MLP and the F1-style BatchNorm MLP,
each trained small-batch (SB) and large-batch (LB) on MNIST-1D (4000 examples, generated
offline); ResNet-18 on random 32×32 images and an ``nn.TransformerEncoder`` classifier on
random tokens (both after 20 full-batch SGD steps on their data, ``models.fit``). On one
thread
(``torch.set_num_threads(1)``), in one process, for each model:

* the cost of a product: a full-data gradient, one Hessian-vector product of flatness
  (default batches, and one batch) and of PyHessian, in gradients; building the
  objective and operator against PyHessian's constructor;
* top-1 and top-5: flatness (certified to a 1e-4 relative residual), PyHessian's power
  iteration (its default tolerance), curvlinops' ``HessianLinearOperator`` with scipy
  ``eigsh`` (tol 1e-4) — interleaved, the order rotating with each repeat; wall time
  (construction included), products, error against a float64 reference (MLPs) or the
  difference from flatness's certified value; ratios per repeat, median and min–max;
* products against the plain-Lanczos floor from the same start vector
  (``lanczos_floor.plain_lanczos_products``) and against ARPACK (``eigsh``);
* peak memory of a top-1 call of each tool, each in a fresh process
  (``peak_memory.py``: RSS sampled every 2 ms and ``ru_maxrss``, minus the setup
  baseline); on ResNet-18 these fresh-process runs are also its timings (its products
  are too slow for in-process repeats on a shared CPU);
* the trace (MLPs): exact, Hutch++ with 100 products, PyHessian's ``trace()``;

and writes ``reports/benchmark-curvature.md`` (``curvature_report.py``), with GPU rows
from ``reports/gpu-check.json`` when ``gpu_check.py`` ran on a GPU, else "pending".

Usage::

    python analyses/benchmark_curvature.py            # the full size (~12 min on an idle core)
    python analyses/benchmark_curvature.py --quick    # tiny sizes, one repeat (seconds)
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import curvature_report
import models
import peers
from lanczos_floor import plain_lanczos_products
from peak_memory import TOOLS, peak_in_subprocess

import flatness as fl
from flatness.curvature.hessian import HessianOperator
from flatness.zoo import TrainConfig, load_dataset, train_network

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4


# --------------------------------------------------------------------- the checkpoints
def trained_checkpoints(
    data: Any,
    *,
    quick: bool,
    networks: list[tuple[str, TrainConfig]] | None = None,
) -> Iterator[tuple[str, str, nn.Module]]:
    """Train networks SB then LB on ``data`` (MNIST-1D), one at a time.

    Args:
        data: The data set to train on.
        quick: Only the first network.
        networks: ``(label, TrainConfig)`` pairs (default: the tiny MLP, the BatchNorm
            MLP and a conv net, the checkpoints ``benchmark_sharpness.py`` scores).

    Yields:
        ``(network label, regime, model in eval mode)``.
    """
    if networks is None:
        networks = [
            ("tiny MLP", TrainConfig(network="tiny_mlp", epochs=3)),
            ("BN MLP", TrainConfig(network="mlp_bn", epochs=3)),
            (
                "conv net",
                TrainConfig(
                    network="c1", epochs=2, network_kwargs={"channels": 32, "hidden": [128, 64]}
                ),
            ),
        ]
    for label, cfg in networks[:1] if quick else networks:
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


MLPS = [
    ("MLP 3.4k", TrainConfig(network="tiny_mlp", network_kwargs={"width": 38}, epochs=3)),
    ("BN MLP", TrainConfig(network="mlp_bn", network_kwargs={"width": 256}, epochs=3)),
]
QUICK_WIDTH = {"MLP 3.4k": 8, "BN MLP": 32}
"""The MLPs' widths at the quick size (``models.CASES``' quick builds)."""


def benchmark_models(
    args: argparse.Namespace,
) -> Iterator[tuple[str, str, nn.Module, Tensor, Tensor, int]]:
    """The benchmark's models in order: ``(label, case name, model, X, y, n)``.

    The MLPs are trained SB and LB on the first ``n`` MNIST-1D examples; ResNet-18 and
    the Transformer are fitted to their random data by a few full-batch steps
    (:func:`models.prepare`). Only the cases
    named by ``args.only`` (all when empty) are built.
    """
    wanted = set(args.only or [c for c, _ in MLPS] + ["ResNet-18", "Transformer"])
    n = models.CASES["BN MLP"].n_quick if args.quick else models.CASES["BN MLP"].n
    nets = [
        (label, _quick(label, cfg) if args.quick else cfg) for label, cfg in MLPS if label in wanted
    ]
    if nets:
        data = load_dataset("mnist1d", n_train=n, n_test=1000, seed=0)
        X, y = data.train
        for label, regime, model in trained_checkpoints(data, quick=False, networks=nets):
            yield f"{label} {regime}", label, model, X, y, n
    for name, n_big in (("ResNet-18", args.resnet_images), ("Transformer", args.sequences)):
        if name in wanted:
            spec = models.case(name)
            size = spec.n_quick if args.quick else n_big
            print(f"fitting {name} ({spec.steps} full-batch steps) ...", flush=True)
            model, X, y = models.prepare(name, size, quick=args.quick)
            yield name, name, model, X, y, size


def _quick(label: str, cfg: TrainConfig) -> TrainConfig:
    kwargs = {**cfg.network_kwargs, "width": QUICK_WIDTH[label]}
    return TrainConfig(**{**cfg.to_dict(), "epochs": 1, "network_kwargs": kwargs})


# ----------------------------------------------------------------------- measurements
def reference(model: nn.Module, X: Tensor, y: Tensor, k: int) -> dict[str, Any]:
    """Float64 top-``k`` eigenvalues and trace: dense up to 4000 parameters, else Lanczos.

    Returns:
        ``{"eigs", "trace", "how"}``.
    """
    obj = fl.Objective(model, (X, y), dtype=torch.float64, batch_size=len(X))
    if obj.dim <= 4000:
        with HessianOperator(obj) as H:
            dense = H.to_dense()
        eig = torch.linalg.eigvalsh(dense).flip(0)
        return {"eigs": eig[:k].tolist(), "trace": float(torch.trace(dense)), "how": "dense"}
    res = fl.hessian_eigenvalues(obj, k=k, tol=1e-8, max_matvecs=3000, seed=123)
    worst = max(r / abs(e) for r, e in zip(res.residuals, res.eigenvalues, strict=True))
    try:
        trace: float | None = fl.hessian_trace(obj, method="exact").estimate
    except ValueError:
        trace = None
    return {
        "eigs": list(res.eigenvalues),
        "trace": trace,
        "how": f"float64 Lanczos (worst relative residual {worst:.1e})",
    }


def product_costs(model: nn.Module, X: Tensor, y: Tensor, repeats: int) -> dict[str, Any]:
    """Gradient, products and construction, in seconds (medians of ``repeats``).

    Returns:
        ``{"grad_s", "hvp_s", "hvp_one_batch_s", "hvp_pyhessian_s", "build_s",
        "build_pyhessian_s", "choices"}``.
    """
    obj = peers.flatness_objective(model, X, y)
    row: dict[str, Any] = {"grad_s": peers.gradient_seconds(obj, repeats)}
    with HessianOperator(obj) as H:
        row["hvp_s"] = peers.product_seconds(H, repeats)
        row["choices"] = dict(H.numerics)
    one = fl.Objective(model, (X, y), batch_size=len(X))
    with HessianOperator(one) as H:
        row["hvp_one_batch_s"] = peers.product_seconds(H, repeats)
    builds = []
    for _ in range(repeats):
        start = time.perf_counter()
        with HessianOperator(peers.flatness_objective(model, X, y)):
            builds.append(time.perf_counter() - start)
    row["build_s"] = float(np.median(builds))
    try:
        net = copy.deepcopy(model)
        row["hvp_pyhessian_s"] = peers.pyhessian_product_seconds(net, X, y, repeats)
        builds = []
        for _ in range(repeats):
            net = copy.deepcopy(model)
            start = time.perf_counter()
            peers._pyhessian(net, X, y)
            builds.append(time.perf_counter() - start)
        row["build_pyhessian_s"] = float(np.median(builds))
    except Exception as err:
        row["pyhessian_error"] = peers.first_line(err)
    return row


CALLS: dict[str, Callable[[nn.Module, Tensor, Tensor, int], peers.Run]] = {
    "flatness": lambda m, X, y, k: peers.flatness_top_k(m, X, y, k, tol=TOL),
    "pyhessian": lambda m, X, y, k: peers.pyhessian_top_k(copy.deepcopy(m), X, y, k),
    "curvlinops": lambda m, X, y, k: peers.curvlinops_top_k(m, X, y, k, tol=TOL),
}
MATH = ("pyhessian (math attention)", "curvlinops (math attention)")
SLOW = ("curvlinops", "curvlinops (math attention)")
"""Peers timed in the first round only (several times slower than the others)."""
"""The peers with the math attention kernel forced by hand (the issue's workaround)."""
for _peer in MATH:
    CALLS[_peer] = peers.with_math_attention(CALLS[_peer.split()[0]])


def interleaved(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    k: int,
    repeats: int,
    *,
    tools: tuple[str, ...] = TOOLS,
    once: tuple[str, ...] = (),
) -> dict[str, list[peers.Run]]:
    """Top-``k`` of every tool ``repeats`` times, the order rotating each repeat.

    Args:
        model: The network.
        X: Inputs.
        y: Targets.
        k: How many eigenvalues.
        repeats: How many rounds.
        tools: The tools (keys of :data:`CALLS`).
        once: Tools run in the first round only (the slow peers, to save time).

    Returns:
        ``{tool: [Run per round it ran in]}``.
    """
    runs: dict[str, list[peers.Run]] = {t: [] for t in tools}
    for r in range(repeats):
        for tool in tools[r % len(tools) :] + tools[: r % len(tools)]:
            if r == 0 or tool not in once:
                runs[tool].append(CALLS[tool](model, X, y, k))
    return runs


def floors(model: nn.Module, X: Tensor, y: Tensor, k: int, timed: peers.Run) -> dict[str, Any]:
    """flatness's products against plain Lanczos and ARPACK from the same start.

    Args:
        model: The network.
        X: Inputs.
        y: Targets.
        k: How many eigenvalues.
        timed: A timed flatness top-``k`` run of the same problem (its products are
            flatness's; without the multiplicity check it is run again only where the
            check ran).

    Returns:
        ``{"flatness", "no_check", "checked", "floor", "floor_converged", "eigsh"}``
        (or ``{"error"}``).
    """
    if not timed.ok:
        return {"error": timed.error}
    obj = peers.flatness_objective(model, X, y)
    checked = bool(timed.extra.get("multiplicity_checked"))
    try:
        no_check = timed.products
        if checked:
            no_check = fl.hessian_eigenvalues(
                obj, k=k, tol=TOL, seed=0, multiplicity_check=False
            ).matvecs
        with HessianOperator(obj) as H:
            floor = plain_lanczos_products(H, k, v0=peers.start_vector(obj.dim), tol=TOL)
            arpack, _ = peers.eigsh_floor(H, k, tol=TOL)
    except Exception as err:
        return {"error": peers.first_line(err)}
    return {
        "flatness": timed.products,
        "no_check": no_check,
        "checked": checked,
        "floor": floor.products,
        "floor_converged": floor.converged,
        "eigsh": arpack,
    }


def traces(model: nn.Module, X: Tensor, y: Tensor) -> dict[str, Any]:
    """Exact trace, Hutch++ with 100 products and PyHessian's ``trace()``.

    Returns:
        ``{"exact", "hutchpp100", "pyhessian"}`` as :class:`peers.Run`.
    """
    obj = peers.flatness_objective(model, X, y)

    def hutchpp(budget: int) -> peers.Run:
        res = fl.hessian_trace(obj, method="hutchpp", budget=budget, seed=0)
        return peers.Run(products=res.matvecs, values=[res.estimate], extra={"stderr": res.stderr})

    def exact() -> peers.Run:
        return peers.Run(values=[fl.hessian_trace(obj, method="exact").estimate])

    return {
        "exact": peers.attempt(exact),
        "hutchpp100": peers.attempt(lambda: hutchpp(100)),
        "pyhessian": peers.pyhessian_trace(copy.deepcopy(model), X, y),
    }


def bench(
    label: str, name: str, model: nn.Module, X: Tensor, y: Tensor, n: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Every measurement of one model (see the module docstring).

    Returns:
        The model's row for :func:`curvature_report.render`.
    """
    big = name == "ResNet-18"
    mlp = name in dict(MLPS)
    row: dict[str, Any] = {
        "model": label,
        "case": name,
        "examples": n,
        "params": sum(p.numel() for p in model.parameters()),
    }
    print(f"  products of {label} ...", flush=True)
    row["costs"] = product_costs(model, X, y, 1 if big else max(args.repeats, 3))
    ks = (1, 5) if not big or args.resnet_top5 else (1,)
    if mlp:
        print(f"  float64 reference of {label} ...", flush=True)
        row["reference"] = reference(model, X, y, k=5)
    row["memory"] = memory(name, TOOLS, n, model.state_dict(), args)
    for k in ks:
        print(f"  top-{k} of {label} ...", flush=True)
        if big and k == 1 and not args.no_memory:
            row[f"top{k}"] = {t: [run_of(row["memory"][t])] for t in TOOLS}
            row[f"top{k}_fresh_process"] = True
        else:
            tools = TOOLS + MATH if name == "Transformer" else TOOLS
            row[f"top{k}"] = interleaved(
                model, X, y, k, 1 if big else args.repeats, tools=tools, once=SLOW
            )
        if not big:
            row[f"floor{k}"] = floors(model, X, y, k, row[f"top{k}"]["flatness"][-1])
    if mlp:
        print(f"  traces of {label} ...", flush=True)
        row["trace"] = traces(model, X, y)
    return row


def memory(
    name: str,
    tools: tuple[str, ...],
    n: int,
    state: dict[str, Any] | None,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """Peak memory of each tool's top-1 on case ``name``, each in a fresh process.

    Returns:
        ``{tool: peak_in_subprocess(...)}``; with ``--no-memory`` rows saying so.
    """
    found = {}
    for tool in tools:
        if args.no_memory:
            found[tool] = {"peak_bytes": None, "error": "not measured (--no-memory)"}
            continue
        print(f"  peak memory of {name}, {tool} top-1 (fresh process) ...", flush=True)
        found[tool] = peak_in_subprocess(
            name, tool, 1, n=n, state=state, quick=args.quick, timeout=args.timeout
        )
    return found


def run_of(memory: dict[str, Any]) -> peers.Run:
    """A fresh-process measurement (:func:`peak_in_subprocess`) as a :class:`peers.Run`."""
    return peers.Run(
        seconds=memory.get("seconds") or float("nan"),
        products=memory.get("products"),
        values=memory.get("values") or [],
        error=memory.get("error"),
    )


def _order(row: dict[str, Any]) -> tuple[int, int]:
    cases = [c for c, _ in MLPS] + ["ResNet-18", "Transformer"]
    return (cases.index(row["case"]) if row["case"] in cases else len(cases), 0)


def bench_parser(doc: str | None, out: Path) -> argparse.ArgumentParser:
    """The options both benchmarks take: sizes, repeats, memory runs, the report's path.

    Returns:
        A parser to add the benchmark's own options to.
    """
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats")
    parser.add_argument("--resnet-images", type=int, default=32, help="ResNet-18 images")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the fresh-process memory runs"
    )
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per fresh process")
    parser.add_argument("--out", default=str(out), help="the report (Markdown)")
    return parser


def bench_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, and set up the run: one torch thread, one repeat when quick, quiet warnings.

    Returns:
        The arguments.
    """
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    warnings.filterwarnings("ignore", message="Using backward.. with create_graph=True")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.set_num_threads(1)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the report.

    Returns:
        The exit status (0).
    """
    parser = bench_parser(__doc__, ROOT / "reports" / "benchmark-curvature.md")
    parser.add_argument("--resnet-top5", action="store_true", help="also top-5 on ResNet-18")
    parser.add_argument("--sequences", type=int, default=128, help="Transformer sequences")
    parser.add_argument(
        "--only",
        nargs="*",
        help="models to (re)measure, e.g. 'BN MLP' 'ResNet-18'; the other rows are kept "
        "from the last run's JSON beside the report",
    )
    parser.add_argument("--note", default="", help="a paragraph for the report's head")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="measure nothing: add the rows of these stores (runs with another --out, "
        "e.g. in parallel) to this report's and write it",
    )
    args = bench_arguments(parser, argv)
    torch.manual_seed(0)
    out = Path(args.out)
    store = out.with_suffix(".json")
    rows: dict[str, dict[str, Any]] = (
        peers.decode_runs(json.loads(store.read_text()))
        if store.exists() and (args.only or args.merge)
        else {}
    )
    for other in args.merge or []:  # rows measured by runs with another --out
        rows.update(peers.decode_runs(json.loads(Path(other).read_text())))
    for label, name, model, X, y, n in [] if args.merge else benchmark_models(args):
        print(f"benchmarking {label} ...", flush=True)
        started = time.perf_counter()
        row = bench(label, name, model, X, y, n, args)
        row["minutes"] = (time.perf_counter() - started) / 60
        row["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        row["command"] = " ".join(
            ["python analyses/benchmark_curvature.py", *(argv or sys.argv[1:])]
        )
        rows[label] = row
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(peers.encode_runs(rows), indent=1))  # progress is kept
    store.write_text(json.dumps(peers.encode_runs(rows), indent=1))
    meta = {
        "command": "python analyses/benchmark_curvature.py"
        + (" --quick" if args.quick else "")
        + (
            ""
            if args.quick
            else f" --repeats {args.repeats} --resnet-images "
            f"{args.resnet_images} --sequences {args.sequences}"
        ),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread, "
        f"Python {sys.version.split()[0]}, torch {torch.__version__}",
        "repeats": args.repeats,
        "store": store.name,
        "note": args.note,
        "gpu": curvature_report.gpu_rows(ROOT / "reports" / "gpu-check.json"),
    }
    text = curvature_report.render(sorted(rows.values(), key=_order), meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
