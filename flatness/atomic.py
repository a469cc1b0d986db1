"""Atomic file writes: readers never see half a file, a failure leaves none behind.

A file is written to a temporary sibling and moved into place with :func:`os.replace`,
so readers never see half a file and a crash leaves the old file intact. A write that
fails removes its temporary file; a full disk (or quota) becomes one
:class:`DiskFullError` naming the file. Every output flatness writes (checkpoints,
manifests, caches, reports, figures, exports) goes through :func:`atomic_path`.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A file could not be written because its disk (or the user's quota) is full.

    The message names the file and the remedy; ``errno`` is the original one
    (``ENOSPC`` or ``EDQUOT``).

    Args:
        path: The file that was being written.
        code: The ``errno`` of the failed write.
    """

    def __init__(self, path: str | os.PathLike[str], code: int = errno.ENOSPC) -> None:
        super().__init__(
            f"disk full while writing {path}: free space on that disk (or write elsewhere) "
            "and run again; no partial file was left"
        )
        self.errno = code
        self.path = Path(path)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    Parent directories are created. If the block raises, the temporary file is removed
    and ``path`` is left as it was.

    Raises:
        DiskFullError: If the disk is full (``ENOSPC``, ``EDQUOT``) while creating,
            writing or moving the file.

    Examples:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("hello")
        >>> target.read_text()
        'hello'
        >>> import shutil; shutil.rmtree(target.parent)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its files are private (0600); these honour the umask.
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        code = _disk_full(exc)
        if code is not None and not isinstance(exc, DiskFullError):
            raise DiskFullError(target, code) from None
        raise


def _disk_full(exc: BaseException) -> int | None:
    """The ``errno`` of a full disk among ``exc`` and the exceptions it arose from.

    torch's writer answers a failed write with a ``RuntimeError`` ("unexpected pos")
    raised while the ``OSError`` of the full disk is handled, so the chain is searched.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL:
            return current.errno
        current = current.__cause__ or current.__context__
    return None


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically.

    Raises:
        DiskFullError: If the disk is full.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
