"""No import circles in the package (issue 13's house: the tree shows the data flow).

Every import counts: at module level, inside functions, under ``TYPE_CHECKING`` and
through ``importlib.import_module("flatness...")``, so a circle cannot be hidden by
moving an import out of sight. The one circle allowed is a deprecation path: the
old name ``flatness.report.build.build_from_store`` is served by a lazy module
``__getattr__`` that imports its new home (which imports ``build``); it goes when the
deprecated name does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flatness

PACKAGE = Path(flatness.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, however it imports them."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return {m for m in found if m in modules and m != name}


def _circles() -> list[list[str]]:
    """The strongly connected components of the import graph with more than one module."""
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return circles


DEPRECATION_SHIMS = [["flatness.report.build", "flatness.report.from_store"]]


def test_no_import_circles() -> None:
    circles = [c for c in _circles() if c not in DEPRECATION_SHIMS]
    assert circles == []


def test_the_old_import_paths_still_work() -> None:
    from flatness.curvature import eigen_result, linear_operator, trace_result
    from flatness.curvature.eigenvalues import EigenResult, power_iteration
    from flatness.curvature.hutchinson import hutchinson_trace
    from flatness.curvature.lanczos import lanczos_eigenpairs, lanczos_tridiagonal
    from flatness.curvature.lanczos_kernel import lanczos_tridiagonal as kernel
    from flatness.curvature.operator import DenseOperator, SymmetricOperator, Target, to_scipy
    from flatness.curvature.power_iteration import power_iteration as power
    from flatness.curvature.thick_restart import lanczos_eigenpairs as eigenpairs
    from flatness.curvature.trace import TRACE_METHODS, ExactMethod, TraceMethod, TraceResult
    from flatness.pipeline.scorer import Task, plan_tasks
    from flatness.pipeline.task_plan import Task as task
    from flatness.pipeline.task_plan import plan_tasks as plan
    from flatness.study.outcome import CaseResult as case_result
    from flatness.study.runner import CaseResult, StudyResult, has_measurements

    assert EigenResult is eigen_result.EigenResult and power_iteration is power
    assert lanczos_eigenpairs is eigenpairs and lanczos_tridiagonal is kernel
    assert DenseOperator is linear_operator.DenseOperator and to_scipy is linear_operator.to_scipy
    assert SymmetricOperator is linear_operator.SymmetricOperator and Target is not None
    assert TraceResult is trace_result.TraceResult and TRACE_METHODS == (
        "hutchpp",
        "hutchinson",
        "exact",
    )
    assert ExactMethod is trace_result.ExactMethod and TraceMethod is trace_result.TraceMethod
    assert Task is task and plan_tasks is plan and CaseResult is case_result
    assert StudyResult is not None and callable(has_measurements) and callable(hutchinson_trace)
