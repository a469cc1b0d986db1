"""The files a report wrote, so that a rebuild removes those and no other file.

A report's folder may hold the user's own files beside the report (notes, a
``data/foo.csv``, a ``figures/bar.png``), whatever their names. :func:`flatness.report.build`
lists every file it writes in :data:`MANIFEST` (``.flatness-report.json`` in the folder);
the next build of that folder removes the listed files it does not write again, and
nothing else. The list is read as untrusted: only plain relative paths inside the folder
are honoured, so an edited or forged list cannot remove files elsewhere. A folder without
the list (a report of an older version, or no report at all) has nothing removed.
:class:`Report` is what a build wrote.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flatness.atomic import write_text_atomic
from flatness.results import PlainData

__all__ = [
    "MANIFEST",
    "Report",
    "list_own_files",
    "read_manifest",
    "remove_earlier",
    "write_manifest",
]

MANIFEST = ".flatness-report.json"
"""The list of a report's own files, in its folder."""


def _own(base: Path, name: object) -> str | None:
    """``name`` if it is a plain relative path to a file inside ``base``, else ``None``."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts):
        return None
    if path.as_posix() != name or name == MANIFEST:
        return None
    root = base.resolve()
    target = (base / path).resolve()
    return name if target.parent.is_relative_to(root) and target != root else None


def read_manifest(base: Path) -> set[str]:
    """The files an earlier report listed in ``base`` (relative POSIX paths).

    Returns:
        The names honoured: plain relative paths inside ``base``; an empty set when
        there is no list or it cannot be read.
    """
    try:
        doc = json.loads((base / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list):
        return set()
    return {name for name in files if _own(base, name) is not None}


def remove_earlier(base: Path, earlier: Iterable[str], written: Iterable[str]) -> None:
    """Remove the files of ``earlier`` (an earlier report's list) not in ``written``.

    Only regular files (not links, not folders) named by a plain relative path inside
    ``base`` are removed.
    """
    keep = set(written)
    for name in earlier:
        if _own(base, name) is None or name in keep:
            continue
        path = base / name
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)


def write_manifest(base: Path, files: Iterable[Path | str]) -> None:
    """List ``files`` (paths inside ``base``) as the report's own, atomically."""
    names = sorted(
        {Path(f).resolve().relative_to(base.resolve()).as_posix() for f in files} - {MANIFEST}
    )
    write_text_atomic(base / MANIFEST, json.dumps({"version": 1, "files": names}, indent=1) + "\n")


def list_own_files(base: Path, earlier: set[str], written: Sequence[Path], finished: bool) -> None:
    """After a build: remove the earlier report's files not written again and list the new.

    A build that failed removes nothing and lists what it wrote beside the earlier
    report's files (all of them are still the report's to replace next time); an error
    while listing them then is not allowed to hide the build's own error.

    Args:
        base: The report's folder.
        earlier: The earlier report's list (:func:`read_manifest`).
        written: The figures and data files this build wrote (its pages are added).
        finished: Whether the build wrote its pages.
    """
    pages = [base / "report.md", base / "report.html"]
    if finished:
        done = [*written, *pages]
        remove_earlier(base, earlier, {p.relative_to(base).as_posix() for p in done})
        write_manifest(base, done)
        return
    own = [*written, *(p for p in pages if p.is_file())]
    own += [base / name for name in earlier]
    if own:
        with contextlib.suppress(OSError):
            write_manifest(base, own)


@dataclass(frozen=True)
class Report(PlainData):
    """What :func:`build` wrote.

    Attributes:
        out: The report's folder.
        html: The self-contained HTML page.
        markdown: The Markdown version (figures beside it in ``figures/``).
        figures: The PNG files.
        data: The CSV files (``scores.csv`` and one per table).
        summary: The generated summary sentences.
        notes: The sections left out and why.
        seconds: Wall-clock seconds to build it.
    """

    out: Path
    html: Path
    markdown: Path
    figures: tuple[Path, ...]
    data: tuple[Path, ...]
    summary: tuple[str, ...]
    notes: tuple[str, ...]
    seconds: float

    def __repr__(self) -> str:
        return (
            f"Report(html={str(self.html)!r}, figures={len(self.figures)}, "
            f"sections left out={len(self.notes)}, seconds={self.seconds:.1f})"
        )
