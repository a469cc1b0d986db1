"""The ``[scoring]`` table of a manifest: its keys, their defaults and their checks.

::

    [scoring]
    examples = 1000              # a fixed, seeded subset of the training set ("all")
    seed = 0                     # seeds the subset and each measure's default seed
    device = "cpu"
    dtype = "float32"            # float64, or bfloat16/float16 (measured warning)
    batch_size = 1024            # examples per forward pass
    plugins = ["my_measures"]    # modules that register measures (imported: runs code)
    loss = "cross_entropy"       # mse, causal_lm, sequence_classification, "mod:fn"
    batch_loss = "mod:fn"        # instead of loss: batch_loss(model_fn, batch)
    groups = ["features.0", "classifier"]   # or "blocks": also score each group
    recompute_batchnorm = false  # recompute BatchNorm statistics on the scoring data

The loss keys are read in :mod:`flatness.pipeline.named_losses`, the groups in
:mod:`flatness.pipeline.groups`. A checkpoint stored in bfloat16 or float16 is
analysed in ``dtype`` (float32 unless asked), and its own precision is recorded with
the run. :func:`check_scoring` checks a table and raises :class:`SettingError` naming
the key, which the manifest reader turns into a message with the file and the line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flatness.pipeline.groups import BLOCKS
from flatness.pipeline.named_losses import loss_setting_error

__all__ = ["DTYPES", "SCORING_DEFAULTS", "SettingError", "check_scoring"]

DTYPES = ("float32", "float64", "bfloat16", "float16")
"""The precisions a manifest may score in (``[scoring] dtype``, ``--dtype``)."""

SCORING_DEFAULTS: dict[str, Any] = {
    "examples": None,
    "seed": 0,
    "device": "cpu",
    "dtype": "float32",
    "batch_size": 1024,
    "plugins": [],
    "loss": None,
    "batch_loss": None,
    "groups": None,
    "recompute_batchnorm": False,
}
"""Every ``[scoring]`` key with its default (``loss = None``: cross-entropy)."""


class SettingError(ValueError):
    """A ``[scoring]`` setting is wrong; :attr:`key` names it.

    Args:
        key: The setting.
        message: Why it is wrong and what to give instead.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"[scoring] {key}: {message}")
        self.key = key
        self.message = message


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_scoring(scoring: Mapping[str, Any]) -> dict[str, Any]:
    """Complete a ``[scoring]`` table with the defaults and check every key.

    Args:
        scoring: The table as given.

    Returns:
        The table with every key of :data:`SCORING_DEFAULTS`.

    Raises:
        SettingError: For an unknown key or a wrong value; it names the key.

    Examples:
        >>> check_scoring({"dtype": "bfloat16"})["dtype"]
        'bfloat16'
        >>> check_scoring({"dtype": "int8"})
        Traceback (most recent call last):
        ...
        flatness.pipeline.scoring_settings.SettingError: [scoring] dtype: must be one of ...
    """
    for key in scoring:
        if key not in SCORING_DEFAULTS:
            raise SettingError(key, f"unknown key; allowed keys are {list(SCORING_DEFAULTS)}")
    out = {**SCORING_DEFAULTS, **scoring}
    ex = out["examples"]
    if ex is not None and not (ex == "all" or (_non_negative_int(ex) and ex > 0)):
        raise SettingError("examples", f'must be a positive integer or "all", got {ex!r}')
    if out["dtype"] not in DTYPES:
        raise SettingError("dtype", f"must be one of {list(DTYPES)}, got {out['dtype']!r}")
    for key in ("seed", "batch_size"):
        if not _non_negative_int(out[key]):
            raise SettingError(key, f"must be a non-negative integer, got {out[key]!r}")
    if out["batch_size"] == 0:
        raise SettingError("batch_size", "must be positive")
    plugins = out["plugins"]
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise SettingError("plugins", 'must be a list of module names, e.g. ["my_measures"]')
    if not isinstance(out["device"], str):
        raise SettingError("device", f'must be a string such as "cuda", got {out["device"]!r}')
    problem = loss_setting_error(out)
    if problem is not None:
        raise SettingError(*problem)
    groups = out["groups"]
    if (
        groups is not None
        and groups != BLOCKS
        and not (
            isinstance(groups, list) and groups and all(isinstance(g, str) and g for g in groups)
        )
    ):
        raise SettingError(
            "groups",
            f'must be "{BLOCKS}" or a list of parameter names or module prefixes, e.g. '
            f'["features.0", "classifier"], got {groups!r}',
        )
    if not isinstance(out["recompute_batchnorm"], bool):
        raise SettingError(
            "recompute_batchnorm", f"must be true or false, got {out['recompute_batchnorm']!r}"
        )
    return out
