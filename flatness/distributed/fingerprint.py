"""Fingerprints that ranks compare before they compute together.

A data-parallel objective is only the mean over all the data when every rank holds
the same model and the same data set. At construction each rank hashes its
parameters and buffers and the data (the content when every rank passes the same
data, the structure when the user sharded it), the fingerprints are all-gathered, and
a rank that differs from rank 0 is refused by name on every rank, so no rank is left
waiting in a later collective.

Hashes are SHA-256 of the tensors' bytes (Merkle-Damgård over dtype, shape and data);
a tensor of more than :data:`SAMPLED_ABOVE` elements contributes a strided sample of
its elements and its float64 sum, so the check stays cheap for large models.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from flatness.distributed.group import ProcessGroupInfo

__all__ = [
    "SAMPLED_ABOVE",
    "Fingerprint",
    "gather_fingerprints",
    "require_agreement",
    "tensor_digest",
]

SAMPLED_ABOVE = 2**22
"""Tensors with more elements are hashed by a strided sample and their sum."""


def _update(h: Any, t: Tensor) -> None:
    t = t.detach()
    h.update(f"{t.dtype}{tuple(t.shape)};".encode())
    flat = t.reshape(-1)
    if flat.numel() > SAMPLED_ABOVE:
        step = -(-flat.numel() // SAMPLED_ABOVE)
        h.update(repr(float(flat.double().sum()) if flat.is_floating_point() else 0).encode())
        flat = flat[::step]
    h.update(flat.contiguous().cpu().view(torch.uint8).numpy().tobytes())


def tensor_digest(tensors: Iterable[Tensor], *, structure_only: bool = False) -> str:
    """A SHA-256 hex digest of tensors, in order.

    Args:
        tensors: The tensors.
        structure_only: Hash only each tensor's dtype and trailing shape (what does not
            depend on which examples a rank holds).

    Returns:
        The digest (64 hex characters).

    Examples:
        >>> a = tensor_digest([torch.ones(2)])
        >>> a == tensor_digest([torch.ones(2)]), a == tensor_digest([torch.zeros(2)])
        (True, False)
        >>> tensor_digest([torch.ones(2, 3)], structure_only=True) == tensor_digest(
        ...     [torch.zeros(5, 3)], structure_only=True)
        True
    """
    h = hashlib.sha256()
    for t in tensors:
        if structure_only:
            h.update(f"{t.dtype}{tuple(t.shape[1:])};".encode())
        else:
            _update(h, t)
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What one rank of a data-parallel objective holds.

    Attributes:
        rank: The rank in the objective's group.
        model: Digest of the parameters and buffers (and the names of the variables).
        data: Digest of the data (content, or structure when presharded).
        examples: The examples of this rank's shard.
        weight: The shard's total weight (examples, or the loss's tokens).
        error: Why this rank could not take its shard (``None`` when it could).
    """

    rank: int
    model: str
    data: str
    examples: int
    weight: int
    error: str | None = None


def gather_fingerprints(mine: Fingerprint, info: ProcessGroupInfo) -> list[Fingerprint]:
    """All-gather every rank's fingerprint over the group (bounded by its timeout).

    Returns:
        The fingerprints in rank order.
    """
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, mine, group=info.group)
    return [f for f in out if isinstance(f, Fingerprint)]


def require_agreement(prints: list[Fingerprint]) -> None:
    """Refuse ranks that failed or hold another model or data set than rank 0.

    Every rank calls it with the same list, so every rank raises the same error.

    Args:
        prints: The gathered fingerprints (:func:`gather_fingerprints`).

    Raises:
        ValueError: Naming the ranks with an error, another model or other data.
    """
    failed = [f for f in prints if f.error is not None]
    if failed:
        raise ValueError(
            "a rank of the objective's process group could not take its data: "
            + "; ".join(f"rank {f.rank}: {f.error}" for f in failed)
        )
    first = prints[0]
    for field, what, remedy in (
        (
            "model",
            "model (parameters, buffers or the selected parameters)",
            "load the same checkpoint on every rank",
        ),
        (
            "data",
            "data",
            "pass the same data on every rank (or presharded=True for shards "
            "of one data set with the same features)",
        ),
    ):
        odd = [f.rank for f in prints if getattr(f, field) != getattr(first, field)]
        if odd:
            raise ValueError(
                f"rank(s) {odd} hold another {what} than rank 0: a data-parallel objective "
                f"needs the same on every rank; {remedy}"
            )
