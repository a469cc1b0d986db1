"""What a training loop owns and a tracker must leave exactly as it found it.

A measurement in the middle of training runs forward and backward passes and draws
random numbers; the loop around it must not notice. :func:`loop_state_kept` saves and
restores, bit for bit:

- the random number generators the loop may use: torch's CPU generator, every CUDA
  device's generator (when CUDA is initialized), Python's :mod:`random` and NumPy's
  global generator, so a seeded run draws the same batches and dropout masks with
  and without a tracker;
- the autograd state: grad mode, and each parameter's ``.grad`` (the tensors
  themselves, so an optimizer holding them is not disturbed);
- each module's train/eval mode.

The estimators read the model through :func:`torch.func.functional_call` on copies of
the parameters and never write them; this context is the belt to those braces.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

__all__ = ["loop_state_kept"]


@contextmanager
def loop_state_kept(model: nn.Module) -> Iterator[None]:
    """Within the context, anything goes; on exit the loop's state is as it was.

    Args:
        model: The model being trained (its modes and ``.grad`` tensors are kept).

    Yields:
        Nothing; gradients are enabled inside (the estimators need them).

    Examples:
        >>> net = nn.Linear(2, 1)
        >>> before = torch.get_rng_state()
        >>> with torch.no_grad(), loop_state_kept(net):
        ...     _ = torch.randn(3)
        ...     inside = torch.is_grad_enabled()
        >>> inside, bool(torch.equal(before, torch.get_rng_state()))
        (True, True)
    """
    cpu = torch.get_rng_state()
    cuda = (
        torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else None
    )
    python = random.getstate()
    numpy = np.random.get_state()  # noqa: NPY002 - the loop's legacy global generator
    grad_mode = torch.is_grad_enabled()
    grads = [(p, p.grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.enable_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training
        for p, g in grads:
            if p.grad is not g:
                p.grad = g
        torch.set_grad_enabled(grad_mode)
        np.random.set_state(numpy)  # noqa: NPY002
        random.setstate(python)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        torch.set_rng_state(cpu)
