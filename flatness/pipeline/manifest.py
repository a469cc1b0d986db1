"""Read and validate a scoring manifest (TOML).

A manifest says what to score and how (see :mod:`flatness.zoo.manifests`, which
writes them after training)::

    [model]                      # required: how to build the network
    factory = "flatness.zoo.networks:build_network"
    kwargs = { name = "f1", input_shape = [40], num_classes = 10 }

    [data]                       # required: a built-in data set or a factory
    name = "mnist1d"             # or factory = "mypkg.data:load"
    kwargs = { n_train = 4000, n_test = 1000 }

    [scoring]                    # optional: see flatness.pipeline.scoring_settings
    examples = 1000              # a fixed, seeded subset of the training set
    dtype = "float32"            # float64; bfloat16/float16 with a measured warning
    loss = "cross_entropy"       # mse, causal_lm, sequence_classification, "mod:fn"
    groups = "blocks"            # or ["features.0", "classifier"]: per-group scores

    [measures]                   # optional (default: lambda_max with k = 1)
    lambda_max = { k = 5 }
    keskar = { eps = [1e-3, 5e-4], subspace = [0, 100] }

    [[runs]]                     # one entry per checkpoint, or a glob
    path = "sb/seed*/final.pt"
    regime = "SB"
    batch_size = 64

    [[pairs]]                    # optional: Keskar's parametric plot between two runs
    sb = "sb/seed0/final.pt"     # alpha = 0
    lb = "lb/seed0/final.pt"     # alpha = 1
    alphas = [-1.0, 2.0]         # the range, with `points` points (default 25)
    bn = "interpolate"           # or "recompute" (BatchNorm statistics at each alpha)
    curve = "linear"             # or "curvilinear"

Run paths are relative to the manifest's folder. A manifest is code, like a Python
script: its factories and ``plugins`` name Python modules that are imported (the
manifest's folder searched first: a file ``my_measures.py`` beside the manifest is
``"my_measures"``) and run, and the factories are called with the given ``kwargs``, so
read only manifests you trust. The same goes for a loss named ``"module:function"``
(:mod:`flatness.pipeline.named_losses`), and while a sweep runs the manifest's folder
stays first on ``sys.path``, so a factory may import a module beside it when it is
called. Names from the Python standard library or builtins
(``os:system``) are refused before anything is imported or called
(:func:`flatness.factories.refuse_standard_library`). The plugins are
imported when the manifest is read, before its ``[measures]`` are checked, so a
measure they register (:func:`flatness.register_measure`) may be named there. Every
validation error names the file, the line and the key.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flatness.factories import import_plugin, refuse_standard_library
from flatness.pipeline.measures import MEASURES, get_measure
from flatness.pipeline.scoring_settings import (
    DTYPES,
    SCORING_DEFAULTS,
    SettingError,
    check_scoring,
)
from flatness.zoo.manifests import DEFAULT_MEASURES

__all__ = [
    "DTYPES",
    "PAIR_DEFAULTS",
    "SCORING_DEFAULTS",
    "TABLES",
    "Manifest",
    "ManifestError",
    "PairSpec",
    "RunSpec",
    "manifest_from_dict",
    "read_manifest",
]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TABLES = ("model", "data", "scoring", "measures", "runs", "pairs")
PAIR_DEFAULTS: dict[str, Any] = {
    "alphas": [-1.0, 2.0],
    "points": 25,
    "curve": "linear",
    "bn": "interpolate",
}
"""Settings of a ``[[pairs]]`` entry (Keskar et al.'s parametric plot)."""


class ManifestError(ValueError):
    """The manifest is malformed; the message names the file, line and key."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One checkpoint to score, with the metadata the manifest gives for it."""

    path: Path
    meta: dict[str, Any]
    line: int | None = None


@dataclasses.dataclass(frozen=True)
class PairSpec:
    """Two checkpoints to interpolate between (SB at alpha = 0, LB at alpha = 1)."""

    sb: Path
    lb: Path
    settings: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(PAIR_DEFAULTS))
    label: str = ""


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A validated manifest.

    Build one from a file with :func:`read_manifest`, or directly in code, where the
    model factory may be any callable and the data a :class:`flatness.zoo.Dataset`.

    Attributes:
        model_factory: ``"package.module:function"`` or a callable returning the model.
        model_kwargs: Keyword arguments for the model factory.
        data: A built-in data set's name, a ``"package.module:function"`` factory, or a
            :class:`~flatness.zoo.Dataset` (or ``((X, y), (X_test, y_test))``).
        data_kwargs: Keyword arguments for the data set or factory.
        runs: The checkpoints.
        measures: Measure name -> settings.
        scoring: The ``[scoring]`` table, completed with defaults.
        pairs: Checkpoint pairs for Keskar's parametric plot.
        path: The manifest file, when read from one.
    """

    model_factory: str | Callable[..., Any]
    data: Any
    runs: tuple[RunSpec, ...]
    model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    measures: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_MEASURES)
    )
    scoring: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(SCORING_DEFAULTS))
    pairs: tuple[PairSpec, ...] = ()
    path: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scoring", {**SCORING_DEFAULTS, **self.scoring})
        object.__setattr__(
            self,
            "runs",
            tuple(r if isinstance(r, RunSpec) else RunSpec(Path(r), {}) for r in self.runs),
        )

    def with_measures(self, names: list[str]) -> Manifest:
        """Keep only the named measures (their manifest settings, else the defaults).

        Returns:
            A copy of the manifest with those measures.

        Raises:
            KeyError: For an unknown measure.
        """
        for name in names:
            get_measure(name)
        return dataclasses.replace(
            self, measures={n: dict(self.measures.get(n, {})) for n in names}
        )

    def with_scoring(self, **overrides: Any) -> Manifest:
        """Override ``[scoring]`` entries (``None`` values are ignored).

        Returns:
            A copy of the manifest with the new settings.

        Raises:
            SettingError: If a setting is wrong (it names the key).
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, scoring=check_scoring({**self.scoring, **given}))


class _Locator:
    """Find the line of a key in the TOML text, for error messages."""

    _header = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+)\s*\]\]?\s*(#.*)?$")
    _key = re.compile(r"^\s*\"?([A-Za-z0-9_-]+)\"?\s*=")

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line(self, table: str, key: str | None = None, index: int | None = None) -> int | None:
        current, count = None, -1
        table_line = None
        for no, raw in enumerate(self.lines, start=1):
            m = self._header.match(raw)
            if m:
                current = m.group(2).strip('"')
                if current == table and m.group(1) == "[[":
                    count += 1
                if current == table and (index is None or count == index):
                    table_line = table_line or no
                continue
            if current != table or (index is not None and count != index):
                continue
            k = self._key.match(raw)
            if key is not None and k and k.group(1) == key:
                return no
        return table_line

    def error(
        self, message: str, table: str, key: str | None = None, index: int | None = None
    ) -> ManifestError:
        no = self.line(table, key, index)
        where = f"{self.path}:{no}" if no else str(self.path)
        name = f"[{table}]" if index is None else f"[[{table}]] #{index + 1}"
        return ManifestError(f"{where}: {name}{' ' + key if key else ''}: {message}")


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _check_table(
    loc: _Locator, doc: Mapping[str, Any], name: str, required: bool
) -> dict[str, Any]:
    value = doc.get(name)
    if value is None:
        if required:
            raise ManifestError(f"{loc.path}: the [{name}] table is missing")
        return {}
    if not isinstance(value, dict):
        raise loc.error("must be a table", name)
    return value


def _check_keys(
    loc: _Locator, table: str, value: Mapping[str, Any], allowed: tuple[str, ...]
) -> None:
    for key in value:
        if key not in allowed:
            raise loc.error(f"unknown key; allowed keys are {list(allowed)}", table, key)


def _validate_scoring(loc: _Locator, scoring: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return check_scoring(scoring)
    except SettingError as exc:
        raise loc.error(exc.message, "scoring", exc.key) from None


def _validate_measures(loc: _Locator, measures: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, settings in measures.items():
        if name not in MEASURES:
            raise loc.error(
                f"unknown measure; known measures are {sorted(MEASURES)}", "measures", name
            )
        if not isinstance(settings, dict):
            raise loc.error("must be a table of settings, e.g. { k = 1 }", "measures", name)
        try:
            list(get_measure(name).tasks(settings))
        except (KeyError, TypeError) as exc:
            raise loc.error(str(exc).strip("\"'"), "measures", name) from None
        out[name] = dict(settings)
    return out


def _plain_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _validate_runs(loc: _Locator, root: Path, runs: Any) -> tuple[RunSpec, ...]:
    if not isinstance(runs, list) or not runs:
        raise ManifestError(f"{loc.path}: no [[runs]]: add one [[runs]] table per checkpoint")
    out: list[RunSpec] = []
    for i, entry in enumerate(runs):
        if not isinstance(entry, dict):
            raise loc.error("must be a table", "runs", index=i)
        path = entry.get("path")
        if not isinstance(path, str) or not path:
            raise loc.error(
                'needs a path = "..." to a checkpoint file or a glob', "runs", "path", i
            )
        for key in ("batch_size", "lr", "seed", "epoch"):
            if key in entry and not _plain_number(entry[key]):
                raise loc.error(f"must be a number, got {entry[key]!r}", "runs", key, i)
        meta = {k: v for k, v in entry.items() if k != "path"}
        line = loc.line("runs", "path", i)
        if _is_glob(path):
            pattern = path if os.path.isabs(path) else str(root / path)
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise loc.error(
                    f"the glob {path!r} matches no file under {root}", "runs", "path", i
                )
            out.extend(RunSpec(Path(m), dict(meta), line) for m in matches)
        else:
            p = Path(path)
            out.append(RunSpec(p if p.is_absolute() else root / p, meta, line))
    return tuple(out)


def _validate_pairs(loc: _Locator, root: Path, pairs: Any) -> tuple[PairSpec, ...]:
    if pairs is None:
        return ()
    if not isinstance(pairs, list):
        raise loc.error("must be an array of tables ([[pairs]])", "pairs")
    out = []
    for i, entry in enumerate(pairs):
        if not isinstance(entry, dict):
            raise loc.error("must be a table", "pairs", index=i)
        _check_keys(loc, "pairs", entry, ("sb", "lb", "label", *PAIR_DEFAULTS))
        ends = []
        for key in ("sb", "lb"):
            value = entry.get(key)
            if not isinstance(value, str) or not value:
                raise loc.error("needs a checkpoint path", "pairs", key, i)
            p = Path(value)
            ends.append(p if p.is_absolute() else root / p)
        settings = {**PAIR_DEFAULTS, **{k: v for k, v in entry.items() if k in PAIR_DEFAULTS}}
        lo_hi = settings["alphas"]
        if not (isinstance(lo_hi, list) and len(lo_hi) == 2 and all(map(_plain_number, lo_hi))):
            raise loc.error("must be [low, high], e.g. [-1.0, 2.0]", "pairs", "alphas", i)
        if not (isinstance(settings["points"], int) and settings["points"] >= 2):
            raise loc.error("must be an integer >= 2", "pairs", "points", i)
        for key, allowed in (
            ("curve", ("linear", "curvilinear")),
            ("bn", ("interpolate", "recompute")),
        ):
            if settings[key] not in allowed:
                raise loc.error(f"must be one of {list(allowed)}", "pairs", key, i)
        label = str(entry.get("label", f"{entry['sb']} -> {entry['lb']}"))
        out.append(PairSpec(ends[0], ends[1], settings, label))
    return tuple(out)


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest file.

    Args:
        path: The manifest (TOML).

    Returns:
        The validated manifest; its ``[scoring] plugins`` have been imported.

    Raises:
        ManifestError: If the file is missing, is not TOML, or a table or key is wrong;
            the message names the file, the line and the key.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{p}: cannot read the manifest ({exc.strerror or exc})") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{p}: not valid TOML: {exc}") from exc
    return manifest_from_dict(doc, path=p, text=text)


def manifest_from_dict(
    doc: Mapping[str, Any], *, path: Path | None = None, text: str = ""
) -> Manifest:
    """Validate a parsed manifest (as ``tomllib.loads`` returns it); see :func:`read_manifest`.

    Args:
        doc: The parsed manifest.
        path: The file it came from (run paths and plugins are relative to its folder;
            default: the working directory).
        text: The file's text, to name lines in error messages.

    Returns:
        The validated manifest; its ``[scoring] plugins`` have been imported.

    Raises:
        ManifestError: If a table or key is wrong or a plugin cannot be imported.
    """
    loc = _Locator(path or Path("<manifest>"), text)
    for key in doc:
        if key not in TABLES:
            raise loc.error(f"unknown table; a manifest has {list(TABLES)}", str(key))
    model = _check_table(loc, doc, "model", required=True)
    _check_keys(loc, "model", model, ("factory", "kwargs"))
    if not isinstance(model.get("factory"), str) or ":" not in model["factory"]:
        raise loc.error(
            'must name the model factory as "package.module:function"', "model", "factory"
        )
    data = _check_table(loc, doc, "data", required=True)
    _check_keys(loc, "data", data, ("name", "factory", "kwargs"))
    if ("name" in data) == ("factory" in data):
        raise loc.error('give exactly one of name = "mnist1d" or factory = "pkg.mod:fn"', "data")
    for table, value in (("model", model), ("data", data)):
        if not isinstance(value.get("kwargs", {}), dict):
            raise loc.error("must be a table, e.g. { width = 64 }", table, "kwargs")
    for table, key in (("model", "factory"), ("data", "factory"), ("data", "name")):
        spec = doc[table].get(key)
        if isinstance(spec, str) and ":" in spec:
            try:
                refuse_standard_library(spec, kind=f"{table} {key}")
            except ImportError as exc:
                raise loc.error(str(exc), table, key) from None
    scoring = _validate_scoring(loc, _check_table(loc, doc, "scoring", required=False))
    root = (path.parent if path is not None else Path.cwd()).resolve()
    for plugin in scoring["plugins"]:
        try:
            import_plugin(plugin, folder=root)
        except Exception as exc:  # the module's own errors too: name the manifest's line
            raise loc.error(str(exc), "scoring", "plugins") from exc
    measures_table = doc.get("measures", DEFAULT_MEASURES)
    if not isinstance(measures_table, dict):
        raise loc.error("must be a table", "measures")
    measures = _validate_measures(loc, measures_table)
    runs = _validate_runs(loc, root, doc.get("runs"))
    pairs = _validate_pairs(loc, root, doc.get("pairs"))
    return Manifest(
        model_factory=model["factory"],
        model_kwargs=dict(model.get("kwargs", {})),
        data=data.get("name", data.get("factory")),
        data_kwargs=dict(data.get("kwargs", {})),
        runs=runs,
        measures=measures,
        scoring=scoring,
        pairs=pairs,
        path=path,
    )
