"""A manifest names code that runs: the standard library is refused, the code is shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import flatness as fl
from flatness.factories import import_factory, import_plugin
from flatness.pipeline.manifest import ManifestError
from tests.pipeline.conftest import REPO, manifest_text, save_run


def _os_system(tmp_path: Path) -> str:
    target = tmp_path / "PWNED"
    return f'factory = "os:system"\nkwargs = {{ command = "touch {target}" }}'


def _manifest(tmp_path: Path, **parts: str) -> Path:
    save_run(tmp_path / "a.pt", 0)
    path = tmp_path / "m.toml"
    path.write_text(manifest_text(["a.pt"], **parts))
    return path


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        ({"model": "os:system"}, r"\[model\] factory"),
        ({"data": 'factory = "subprocess:call"\nkwargs = { args = "true" }'}, r"\[data\] factory"),
        ({"data": 'name = "builtins:exec"'}, r"\[data\] name"),
    ],
)
def test_standard_library_factories_are_refused_before_anything_runs(
    tmp_path: Path, parts: dict[str, str], key: str
) -> None:
    if parts.get("model") == "os:system":
        parts = {"model": _os_system(tmp_path)}
    manifest = _manifest(tmp_path, **parts)
    with pytest.raises(ManifestError, match=rf"m\.toml:\d+: {key}: .*standard library"):
        fl.score(manifest, store=tmp_path / "r.sqlite")
    assert not (tmp_path / "PWNED").exists()


def test_the_cli_refuses_os_system_with_one_line_and_runs_nothing(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, model=_os_system(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "flatness", "score", str(manifest), "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "m.toml" in proc.stderr and "[model] factory" in proc.stderr
    assert "'os:system'" in proc.stderr and "standard library" in proc.stderr
    assert not (tmp_path / "PWNED").exists()


def test_standard_library_plugins_are_refused(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    text = manifest.read_text().replace(
        'dtype = "float64"', 'dtype = "float64"\nplugins = ["this"]'
    )
    manifest.write_text(text)
    with pytest.raises(ManifestError, match=r"\[scoring\] plugins: .*'this'.*standard library"):
        fl.read_manifest(manifest)
    with pytest.raises(ImportError, match="standard library"):
        import_plugin("antigravity")


def test_import_factory_refuses_the_standard_library_and_builtins() -> None:
    for spec in ("os:system", "builtins:eval", "importlib:import_module", "os.path:join"):
        with pytest.raises(ImportError, match=f"{spec!r}.*standard library"):
            import_factory(spec, kind="model factory")
    assert import_factory("tests.pipeline.factories:tiny_net")().__class__.__name__ == "Sequential"


def test_the_code_a_manifest_runs_is_shown_before_the_sweep(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    lines: list[str] = []
    fl.score(manifest, store=tmp_path / "r.sqlite", measures=["trace"], echo=lines.append)
    assert lines[0] == (
        f"{manifest} runs code: model factory tests.pipeline.factories:tiny_net, "
        "data factory tests.pipeline.factories:tiny_data"
    )


def test_score_help_says_a_manifest_is_code() -> None:
    from flatness.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = " ".join(sub.choices["score"].format_help().split())  # type: ignore[union-attr]
    assert "imported and run" in text and "like a Python script" in text
