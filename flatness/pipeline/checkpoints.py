"""Read checkpoints safely and put their weights into a model.

Four kinds of file are understood:

- a plain ``state_dict`` saved with ``torch.save`` (``.pt``/``.pth``);
- a dictionary holding the weights under ``"state_dict"``, ``"model"`` or
  ``"model_state_dict"`` and, optionally, metadata under ``"meta"`` (what
  :func:`flatness.train_network` writes) or as top-level entries (``epoch``,
  ``global_step``, ``lr``, ``batch_size``, ``seed``, ``hyper_parameters``: see
  :data:`META_KEYS`);
- a PyTorch Lightning ``.ckpt`` (weights under ``"state_dict"`` with the
  LightningModule's attribute prefix, for example ``model.``, which
  :func:`load_into` strips; its metadata is read like any dictionary's: the epoch,
  global step and hyper-parameters);
- a ``.safetensors`` file (metadata from its header: a JSON ``"meta"`` entry, or the
  header's string entries).

Pickled files are read with ``torch.load(weights_only=True)``: only tensors and plain
containers are rebuilt, so a file from the internet cannot run code. A checkpoint that
needs full unpickling is refused with a message naming the file and the trust flag
(``trust_pickle=True``, ``--trust-pickle`` on the command line).

Each checkpoint is identified by the SHA-256 of its bytes: renaming or moving it does
not make it a new checkpoint, changing it does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import zipfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

WEIGHT_KEYS = ("state_dict", "model_state_dict", "model")
"""Keys under which a checkpoint dictionary may hold the weights, tried in order."""

META_KEYS = (
    "epoch", "global_step", "step", "lr", "learning_rate", "batch_size", "seed",
    "hyper_parameters", "hparams", "pytorch-lightning_version",
)  # fmt: skip
"""Top-level entries of a checkpoint dictionary kept as metadata (Lightning's or not)."""

LIGHTNING_META_KEYS = META_KEYS
"""Former name of :data:`META_KEYS` (Lightning's entries are read like any dictionary's)."""

HYPER_PARAMETER_KEYS = ("lr", "learning_rate", "batch_size", "seed")
"""Entries of ``hyper_parameters`` (or ``hparams``) that become metadata of their own."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file, the cause and the fix."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The weights and metadata read from one checkpoint file.

    Attributes:
        path: The file.
        sha256: Hex SHA-256 of the file's bytes (its identity in the results store).
        format: ``"state_dict"``, ``"dict"``, ``"lightning"`` or ``"safetensors"``.
        state_dict: The tensors, on the CPU.
        meta: Metadata found in the file (empty when there is none).
    """

    path: Path
    sha256: str
    format: str
    state_dict: dict[str, Tensor] = dataclasses.field(repr=False)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)


def file_sha256(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in chunks.

    Returns:
        The digest as 64 hexadecimal characters.

    Raises:
        OSError: If the file cannot be read.

    Examples:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"abc")
        >>> file_sha256(f.name)[:16]
        'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        if trust_pickle or "global" not in str(exc).lower():
            raise CheckpointError(
                f"{path}: the file is not a readable checkpoint "
                f"({_first_line(exc, after='WeightsUnpickler error: ')}); "
                "it may be corrupt or truncated: re-save or re-copy it"
            ) from exc
        raise CheckpointError(
            f"{path}: refusing to unpickle it: it holds Python objects other than tensors "
            f"and plain containers ({_first_line(exc, after='WeightsUnpickler error: ')}), "
            "and unpickling can run arbitrary code. If you trust where the file comes "
            "from, pass --trust-pickle (trust_pickle=True); better, re-save its state_dict"
        ) from exc
    except (EOFError, RuntimeError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: the file is corrupt or truncated ({_first_line(exc)}); "
            "re-save or re-copy the checkpoint"
        ) from exc


def _first_line(exc: BaseException, *, after: str = "") -> str:
    text = str(exc)
    if after and after in text:
        text = text.split(after, 1)[1]
    elif after:  # torch's long advice about weights_only says nothing about this file
        return type(exc).__name__
    line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return line[:200]


def _load_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: the safetensors file is corrupt or truncated ({_first_line(exc)}); "
            "re-save or re-copy it"
        ) from exc
    meta: dict[str, Any] = {}
    if "meta" in header:
        try:
            meta = dict(json.loads(header.pop("meta")))
        except (json.JSONDecodeError, TypeError, ValueError):
            meta = {}
    for key, text in header.items():
        try:
            meta.setdefault(key, json.loads(text))
        except json.JSONDecodeError:
            meta.setdefault(key, text)
    return tensors, meta


def _dict_meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata of a checkpoint dictionary, alike for every writer.

    The ``"meta"`` entry first (what :func:`flatness.train_network` writes); then, where
    ``"meta"`` does not say, the top-level entries of :data:`META_KEYS` (a plain
    ``torch.save({"state_dict": ..., "epoch": 7})`` as much as Lightning's) and the
    learning rate, batch size and seed of ``hyper_parameters``/``hparams``.
    ``learning_rate`` is read as ``lr``.
    """
    given = obj.get("meta")
    meta = dict(given) if isinstance(given, Mapping) else {}
    for key in META_KEYS:
        if key in obj and not isinstance(obj[key], Tensor):
            meta.setdefault("lr" if key == "learning_rate" else key, obj[key])
    for table in ("hyper_parameters", "hparams"):
        hp = obj.get(table)
        if isinstance(hp, Mapping):
            for key in HYPER_PARAMETER_KEYS:
                if key in hp:
                    meta.setdefault("lr" if key == "learning_rate" else key, hp[key])
    return meta


def _split_payload(path: Path, obj: Any) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
    if isinstance(obj, nn.Module):  # only reachable with trust_pickle
        return "module", dict(obj.state_dict()), {}
    if _is_state_dict(obj):
        return "state_dict", dict(obj), {}
    if isinstance(obj, Mapping):
        for key in WEIGHT_KEYS:
            weights: Any = obj.get(key)
            if isinstance(weights, nn.Module):
                weights = weights.state_dict()
            if _is_state_dict(weights):
                lightning = "pytorch-lightning_version" in obj
                return ("lightning" if lightning else "dict"), dict(weights), _dict_meta(obj)
    found = sorted(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"{path}: no weights found: expected a state_dict or a dictionary with one of "
        f"{list(WEIGHT_KEYS)}, found {found}; save model.state_dict()"
    )


def load_checkpoint(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> Checkpoint:
    """Read a checkpoint file's weights and metadata, safely.

    Args:
        path: A ``.pt``/``.pth``/``.ckpt`` file written by ``torch.save`` or a
            ``.safetensors`` file.
        trust_pickle: Allow full unpickling (``weights_only=False``). Only for files
            whose origin you trust: unpickling can run arbitrary code.

    Returns:
        The checkpoint, with every tensor on the CPU.

    Raises:
        CheckpointError: If the file is missing, corrupt, truncated, holds no weights,
            holds non-finite values, or needs unpickling without ``trust_pickle``. The
            message names the file and the fix.

    Examples:
        >>> import tempfile, torch
        >>> f = tempfile.NamedTemporaryFile(suffix=".pt", delete=False).name
        >>> torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"batch_size": 64}}, f)
        >>> ckpt = load_checkpoint(f)
        >>> ckpt.format, ckpt.meta, list(ckpt.state_dict)
        ('dict', {'batch_size': 64}, ['w'])
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file; check the path in the manifest")
    sha = file_sha256(p)
    if p.suffix == ".safetensors":
        fmt = "safetensors"
        state, meta = _load_safetensors(p)
    else:
        fmt, state, meta = _split_payload(p, _torch_load(p, trust_pickle))
    if not state:
        raise CheckpointError(f"{p}: the checkpoint holds no tensors")
    check_finite(state, where=str(p))
    return Checkpoint(path=p, sha256=sha, format=fmt, state_dict=state, meta=meta)


def check_finite(state: Mapping[str, Tensor], *, where: str) -> None:
    """Raise :class:`CheckpointError` naming the tensors that hold NaN or Inf values.

    Raises:
        CheckpointError: If a floating-point tensor holds NaN or Inf.

    Examples:
        >>> check_finite({"w": torch.tensor([1.0, float("nan")])}, where="run.pt")
        Traceback (most recent call last):
        ...
        flatness.pipeline.checkpoints.CheckpointError: run.pt: NaN or Inf values in w; ...
    """
    bad = [k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(
            f"{where}: NaN or Inf values in {shown}; the run diverged or the file is "
            "damaged: score an earlier checkpoint of this run"
        )


def _strip_prefix(state: Mapping[str, Tensor], wanted: set[str]) -> dict[str, Tensor]:
    """Drop the attribute prefix (``model.``, ``module.``) that hides the model's keys."""
    if wanted <= set(state):
        return dict(state)
    prefixes: Counter[str] = Counter()
    for key in state:
        for name in wanted:
            if key.endswith("." + name):
                prefixes[key[: len(key) - len(name)]] += 1
    for prefix, _ in prefixes.most_common():
        stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if wanted <= set(stripped):
            return stripped
    return dict(state)


def load_into(model: nn.Module, checkpoint: Checkpoint) -> nn.Module:
    """Load a checkpoint's weights into ``model`` (in place) and return it in eval mode.

    A prefix that wraps every key (Lightning's ``model.``, DataParallel's ``module.``)
    is stripped when that makes the keys match.

    Returns:
        ``model``, holding the weights, in eval mode.

    Raises:
        CheckpointError: If keys are missing or unexpected, or shapes differ; the message
            lists them and names the file.

    Examples:
        >>> import tempfile
        >>> f = tempfile.NamedTemporaryFile(suffix=".ckpt", delete=False).name
        >>> net = nn.Linear(2, 1)
        >>> torch.save({"state_dict": {"model.weight": torch.ones(1, 2),
        ...             "model.bias": torch.zeros(1)}}, f)
        >>> load_into(net, load_checkpoint(f)).weight.tolist()
        [[1.0, 1.0]]
    """
    own = model.state_dict()
    state = _strip_prefix(checkpoint.state_dict, set(own))
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if keys:
                shown = ", ".join(keys[:6]) + (
                    f", ... ({len(keys)} in all)" if len(keys) > 6 else ""
                )
                parts.append(f"{label}: {shown}")
        raise CheckpointError(
            f"{checkpoint.path}: the state_dict does not match the model ({'; '.join(parts)}); "
            "check the manifest's [model] factory and kwargs against the run that wrote it"
        )
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    return model.eval()


def meta_number(meta: Mapping[str, Any], key: str) -> float | None:
    """A numeric metadata entry as a float, or ``None`` when absent or not a finite number.

    Returns:
        The number, or ``None``.

    Examples:
        >>> meta_number({"lr": "0.1"}, "lr"), meta_number({}, "lr")
        (0.1, None)
    """
    value = meta.get(key)
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
