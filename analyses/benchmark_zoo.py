"""The model zoo: flatness and PyHessian 0.1 side by side on the models people train (issue 16).

Models (``analyses/models.py``, CPU sizes, random data, each after 20 full-batch SGD
steps on its data, ``models.fit``):
ResNet-18 (32×32 images), an ``nn.TransformerEncoder`` classifier with default settings,
a tiny Hugging Face GPT-2 built from a config, an LSTM classifier. On one thread, for
each model:

* a full-data gradient and one Hessian-vector product of each tool, in gradients;
* top-1 of each tool (flatness certified to 1e-4; PyHessian's power iteration),
  interleaved, the order rotating each repeat: wall time (construction included),
  products, λ_max, the time ratio per repeat (median and min–max); on ResNet-18 from the
  fresh-process runs below;
* peak memory of a top-1 call of each tool in a fresh process (``peak_memory.py``);
* for GPT-2 also flatness as a Hugging Face user calls it: the ``GPT2LMHeadModel``
  itself on dict batches with ``batch_loss=flatness.causal_lm_loss``, and PyHessian on
  the same model with ``(input_ids, next tokens)``.

A tool that fails is shown failing, with its error's first line. The GPU rows come
from ``reports/gpu-check.json`` when ``gpu_check.py`` ran on a GPU, else "pending".

Usage::

    python analyses/benchmark_zoo.py            # CPU sizes (~10 min on an idle core)
    python analyses/benchmark_zoo.py --quick    # tiny sizes, one repeat (seconds)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark_curvature as curvature
import models
import peers
from curvature_report import fmt, gpu_rows, mib, ratio_span, seconds_of, span

import flatness as fl

ROOT = Path(__file__).resolve().parents[1]
ZOO = ("ResNet-18", "Transformer", "GPT-2 (tiny)", "LSTM")
TOOLS = ("flatness", "pyhessian")


def hf_native(model: nn.Module, X: Tensor, y: Tensor) -> dict[str, peers.Run]:
    """GPT-2 as a Hugging Face user has it: the LM itself, dict batches, its own loss.

    flatness: ``Objective(lm, [{"input_ids": ...}], batch_loss=causal_lm_loss)``;
    PyHessian: ``hessian(lm, CrossEntropyLoss(), data=(input_ids, next tokens))``.

    Returns:
        ``{"flatness": Run, "pyhessian": Run}`` of a top-1 call each.
    """
    assert isinstance(model, models.NextTokenLogits)
    lm = model.lm

    def ours() -> peers.Run:
        batches = [{"input_ids": t} for t in X.split(64)]
        obj = fl.Objective(lm, batches, batch_loss=fl.causal_lm_loss)
        res = fl.hessian_eigenvalues(obj, k=1, tol=curvature.TOL, seed=0)
        return peers.Run(products=res.matvecs, values=list(res.eigenvalues))

    return {"flatness": peers.attempt(ours), "pyhessian": peers.pyhessian_top_k(lm, X, y, 1)}


def bench(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one zoo model.

    Returns:
        The model's row.
    """
    spec = models.case(name)
    n = spec.n_quick if args.quick else args.sizes.get(name, spec.n)
    same = reused(name, n, args)
    if same is not None:
        print(f"  {name}: the curvature benchmark's row of {same['date']} (same model and data)")
        return same
    print(f"  fitting {name} ({spec.steps} full-batch steps) ...", flush=True)
    model, X, y = models.prepare(name, n, quick=args.quick)
    big = name == "ResNet-18"
    row: dict[str, Any] = {
        "model": name,
        "about": spec.about,
        "examples": n,
        "params": sum(p.numel() for p in model.parameters()),
    }
    print(f"  products of {name} ...", flush=True)
    row["costs"] = curvature.product_costs(model, X, y, 1 if big else max(args.repeats, 3))
    row["memory"] = curvature.memory(name, TOOLS, n, model.state_dict(), args)
    if big and not args.no_memory:
        row["top1"] = {t: [curvature.run_of(row["memory"][t])] for t in TOOLS}
        row["fresh_process"] = True
    else:
        print(f"  top-1 of {name} ...", flush=True)
        row["top1"] = curvature.interleaved(model, X, y, 1, args.repeats, tools=TOOLS)
    if name == "GPT-2 (tiny)":
        print("  GPT-2 as a Hugging Face model ...", flush=True)
        row["hf"] = hf_native(model, X, y)
    return row


def reused(name: str, n: int, args: argparse.Namespace) -> dict[str, Any] | None:
    """An earlier measurement of the same model on the same data, if any.

    ``benchmark_curvature.py`` measures ResNet-18 and the Transformer the same way (the
    same fitted model, data, calls and fresh-process memory runs), so its row is taken
    rather than measured twice; so is a row of an earlier zoo run (``--only`` parts run
    in parallel with another ``--out``). ``--fresh`` measures again.

    Returns:
        The zoo's row, or ``None`` when there is no such row.
    """
    if args.quick or args.fresh:
        return None
    for path in map(Path, args.reuse):
        if not path.exists():
            continue
        row = peers.decode_runs(json.loads(path.read_text())).get(name)
        if row is None or row.get("examples") != n:
            continue
        if "case" not in row:  # a zoo row
            return dict(row)
        return {
            "model": name,
            "about": models.case(name).about,
            "examples": n,
            "params": row["params"],
            "costs": row["costs"],
            "memory": {t: row["memory"][t] for t in TOOLS},
            "top1": {t: row["top1"][t] for t in TOOLS},
            "fresh_process": bool(row.get("top1_fresh_process")),
            "date": row["date"],
            "from": "benchmark_curvature.py",
        }
    return None


def _top1(runs: list[peers.Run]) -> str:
    ok = [r for r in runs if r.ok]
    if not ok:
        return f"fails: `{runs[0].error}`" if runs else "–"
    lam = fmt(ok[-1].values[0], 4)
    return f"{seconds_of(runs):.2f} s, {ok[-1].products} products, λ {lam}"


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The report.

    Returns:
        Markdown text.
    """
    out = [
        "# Model zoo: flatness vs PyHessian 0.1",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} in {meta['minutes']:.0f} min. "
        f"Machine: {meta['machine']} (a CPU shared with other work).",
        "",
        "Each model after 20 full-batch SGD steps on its random data (BatchNorm statistics "
        "recomputed), cross-entropy (next-token "
        "for GPT-2, through `models.NextTokenLogits`: logits `(N, V, T−1)` against the next "
        "tokens, so both tools take `(inputs, targets)`), evaluation mode, float32. Top-1: "
        "flatness certified to a 1e-4 relative residual; PyHessian's power iteration at its "
        f"default tolerance (1e-3). Times: medians of {meta['repeats']} interleaved repeats "
        "(construction included), ratios per repeat as median (min–max). Peak memory: each "
        "call in a fresh process, RSS sampled every 2 ms (and `ru_maxrss`) minus the setup "
        "baseline (`peak_memory.py`). PyHessian's power iteration converges to the "
        "eigenvalue of largest magnitude, which at a random initialisation can be a negative "
        "one: its λ is then another eigenvalue than flatness's λ_max (largest algebraic); the "
        "few training steps make λ_max dominate, as on trained networks.",
        "",
        *([meta["note"], ""] if meta.get("note") else []),
        "| model | parameters | examples | gradient | product / gradient: flatness | "
        "PyHessian | top-1 flatness | top-1 PyHessian | PyHessian / flatness time | "
        "peak flatness | peak PyHessian | attention |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c, g = r["costs"], r["costs"]["grad_s"]
        ph = f"{c['hvp_pyhessian_s'] / g:.2f}" if "hvp_pyhessian_s" in c else "fails"
        ratio = span(ratio_span(r["top1"]["pyhessian"], r["top1"]["flatness"]))
        mem = [
            mib(r["memory"][t]["peak_bytes"]) if r["memory"][t].get("peak_bytes") else "fails"
            for t in TOOLS
        ]
        fresh = " (fresh processes)" if r.get("fresh_process") else ""
        out.append(
            f"| {r['model']}{fresh} | {r['params']:,} | {r['examples']} | {g * 1e3:.1f} ms | "
            f"{c['hvp_s'] / g:.2f} | {ph} | {_top1(r['top1']['flatness'])} | "
            f"{_top1(r['top1']['pyhessian'])} | {ratio} | {mem[0]} | {mem[1]} | "
            f"{c['choices'].get('attention', '–')} |"
        )
    out += ["", "## Failures", ""]
    failures = [
        f"- {r['model']}, {tool}: `{err}`" for r in rows for tool, err in _errors(r).items()
    ]
    out += failures or ["None."]
    hf = [r for r in rows if "hf" in r]
    if hf:
        out += ["", "## GPT-2 as a Hugging Face model", ""]
        for r in hf:
            ours, theirs = r["hf"]["flatness"], r["hf"]["pyhessian"]
            wrapped = [x for x in r["top1"]["flatness"] if x.ok]
            same = ""
            if ours.ok and wrapped:
                ref = wrapped[-1].values[0]
                gap = fmt(abs(ours.values[0] - ref) / abs(ref))
                same = f"; relative difference from the wrapped model's λ: {gap}"
            out.append(
                "- flatness, `Objective(GPT2LMHeadModel, [{'input_ids': ...}], "
                f"batch_loss=flatness.causal_lm_loss)`: {_top1([ours])}{same}."
            )
            out.append(
                "- PyHessian, `hessian(GPT2LMHeadModel, CrossEntropyLoss(), data=(input_ids, "
                f"next tokens))`: {_top1([theirs])}."
            )
    out += ["", "## Models", ""]
    out += [
        f"- {r['model']}: {r['about']}; operator `{r['costs']['choices']}`"
        + f"; measured {r.get('date', '')}"
        + (" by benchmark_curvature.py." if r.get("from") else ".")
        for r in rows
    ]
    out += ["", "## GPU", "", *meta["gpu"], ""]
    return "\n".join(out)


def _errors(row: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for tool in TOOLS:
        for run in row["top1"][tool]:
            if not run.ok:
                found[f"{tool} top-1"] = str(run.error)
        if row["memory"][tool].get("error"):
            found[f"{tool} (fresh process)"] = str(row["memory"][tool]["error"])
    if "pyhessian_error" in row["costs"]:
        found["pyhessian product"] = row["costs"]["pyhessian_error"]
    for tool, run in row.get("hf", {}).items():
        if not run.ok:
            found[f"{tool} on the Hugging Face model"] = str(run.error)
    return found


def main(argv: list[str] | None = None) -> int:
    """Run the zoo benchmark and write the report.

    Returns:
        The exit status (0).
    """
    parser = curvature.bench_parser(__doc__, ROOT / "reports" / "benchmark-zoo.md")
    parser.add_argument("--sequences", type=int, default=128, help="Transformer, LSTM")
    parser.add_argument("--gpt2-sequences", type=int, default=64)
    parser.add_argument("--only", nargs="*", choices=ZOO, help="models to run (default all)")
    parser.add_argument(
        "--reuse",
        nargs="+",
        default=[str(ROOT / "reports" / "benchmark-curvature.json")],
        metavar="JSON",
        help="rows of the curvature benchmark or of earlier zoo runs, taken for models "
        "measured there on the same data",
    )
    parser.add_argument("--fresh", action="store_true", help="measure every model here")
    parser.add_argument("--note", default="", help="a paragraph for the report's head")
    args = curvature.bench_arguments(parser, argv)
    args.sizes = {
        "ResNet-18": args.resnet_images,
        "Transformer": args.sequences,
        "LSTM": args.sequences,
        "GPT-2 (tiny)": args.gpt2_sequences,
    }
    started = time.perf_counter()
    rows = []
    for name in args.only or ZOO:
        print(f"benchmarking {name} ...", flush=True)
        rows.append(bench(name, args))
        if "date" not in rows[-1]:
            rows[-1]["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = {
        "command": "python analyses/benchmark_zoo.py"
        + (
            " --quick"
            if args.quick
            else f" --repeats {args.repeats} --resnet-images {args.resnet_images} "
            f"--sequences {args.sequences} --gpt2-sequences {args.gpt2_sequences}"
        ),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": (time.perf_counter() - started) / 60,
        "machine": f"{platform.machine()}, 1 torch thread, Python {sys.version.split()[0]}, "
        f"torch {torch.__version__}",
        "repeats": args.repeats,
        "note": args.note,
        "gpu": gpu_rows(ROOT / "reports" / "gpu-check.json"),
    }
    text = render(rows, meta)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    store = {r["model"]: r for r in rows}
    out.with_suffix(".json").write_text(json.dumps(peers.encode_runs(store), indent=1))
    print(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
