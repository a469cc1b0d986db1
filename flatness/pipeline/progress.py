"""Progress bars for a sweep: tqdm's when asked for and installed, else nothing."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress"]


class Progress:
    """tqdm bars when asked for and installed; otherwise silent.

    Args:
        enabled: Whether to show bars.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def bar(self, total: int, desc: str, leave: bool) -> Any:
        """A progress bar over ``total`` steps.

        Returns:
            A ``tqdm`` bar, or ``None`` when progress bars are off.
        """
        if not self.enabled:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, leave=leave, file=sys.stderr, dynamic_ncols=True)
