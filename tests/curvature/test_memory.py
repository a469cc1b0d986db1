"""Memory: building, using and closing Hessian operators does not grow the process.

Each test repeats a call many times after a warm-up and compares the resident set size
(RSS) before and after, with ``gc.collect()`` and glibc's ``malloc_trim`` first (so
that freed memory the allocator keeps does not count). A leak of the retained graphs
grows the process by megabytes per call (issue 17 item 1: 157 MiB for 300 operators);
the tolerances leave room for the allocator's own noise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import flatness as fl
from flatness.curvature.hessian import HessianOperator
from flatness.curvature.objective import Objective
from flatness.curvature.options import HessianOptions

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"), reason="RSS is read from /proc/self/statm"
)

#: Allowed growth over a whole loop; a leak of the graphs is several times this.
TOLERANCE_MIB = 12.0


def _trim_function() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (returns freed heap memory to the system), if present."""
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim  # type: ignore[arg-type]
    except (OSError, AttributeError, TypeError):
        return None
    return trim


_TRIM = _trim_function()


def rss_mib() -> float:
    """The resident set size of this process in MiB, after a garbage collection."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def growth_mib(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """RSS growth in MiB over ``repeats`` calls of ``fn``, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    before = rss_mib()
    for _ in range(repeats):
        fn()
    return rss_mib() - before


def _objective(*, batchnorm: bool = False, n: int = 2000) -> Objective:
    """An MLP whose batch graphs hold a few MB of saved activations."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(20, 128)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(128))
    layers += [nn.Tanh(), nn.Linear(128, 10)]
    net = nn.Sequential(*layers)
    X, y = torch.randn(n, 20), torch.randint(0, 10, (n,))
    return Objective(net, (X, y), batch_size=500)


@pytest.mark.parametrize(
    ("strategy", "batchnorm"),
    [("auto", False), ("auto", True), ("double_backward", False), ("forward_over_reverse", False)],
)
def test_building_and_closing_operators_does_not_grow_memory(
    strategy: str, batchnorm: bool
) -> None:
    obj = _objective(batchnorm=batchnorm)
    v = torch.randn(obj.dim)

    def build_use_close() -> None:
        with HessianOperator(obj, strategy=strategy) as H:  # type: ignore[arg-type]
            H.matvec(v)

    assert growth_mib(build_use_close, repeats=30) < TOLERANCE_MIB


def test_dropping_an_operator_without_closing_frees_it() -> None:
    obj = _objective()

    def build_and_drop() -> None:
        H = HessianOperator(obj)
        assert H.retained_batches == len(obj.batches)

    assert growth_mib(build_and_drop, repeats=30) < TOLERANCE_MIB


def test_closed_operators_kept_alive_hold_no_graphs() -> None:
    obj = _objective()
    kept: list[HessianOperator] = []

    def build_and_close() -> None:
        H = HessianOperator(obj)
        H.close()
        kept.append(H)

    assert growth_mib(build_and_close, repeats=30) < TOLERANCE_MIB
    assert all(H.retained_batches == 0 for H in kept)


def test_repeated_eigenvalue_calls_do_not_grow_memory() -> None:
    obj = _objective()
    options = HessianOptions(batched=False)
    assert (
        growth_mib(lambda: fl.hessian_eigenvalues(obj, k=1, max_matvecs=8, hessian=options), 25)
        < TOLERANCE_MIB
    )


def test_repeated_scoring_does_not_grow_memory(tmp_path: Path) -> None:
    from tests.pipeline.factories import tiny_net

    torch.save(tiny_net(hidden=256).state_dict(), tmp_path / "run.pt")
    (tmp_path / "manifest.toml").write_text(
        '[model]\nfactory = "tests.pipeline.factories:tiny_net"\nkwargs = { hidden = 256 }\n\n'
        '[data]\nfactory = "tests.pipeline.factories:tiny_data"\n'
        "kwargs = { n = 4000 }\n\n"
        '[scoring]\nexamples = 4000\nseed = 0\ndtype = "float64"\nbatch_size = 1000\n\n'
        '[measures]\nlambda_max = { k = 1 }\n\n[[runs]]\npath = "run.pt"\n'
    )
    calls = iter(range(100))

    def score_into_a_new_store() -> None:
        summary = fl.score(tmp_path / "manifest.toml", store=tmp_path / f"{next(calls)}.sqlite")
        assert summary.ok and summary.computed == 1

    assert growth_mib(score_into_a_new_store, repeats=8, warmup=2) < TOLERANCE_MIB
