"""Doctest collection: the Lightning callback's module is skipped where Lightning is missing."""

from importlib.util import find_spec

collect_ignore = (
    [] if find_spec("lightning") or find_spec("pytorch_lightning") else ["lightning.py"]
)
