"""Attention in second-order passes: the math kernel, and a clear word when that is not enough.

PyTorch's fused attention kernels (flash attention on the host and on CUDA,
memory-efficient attention, cuDNN) have a backward pass but no derivative of that
backward and no forward-mode AD, so every Hessian-vector product through
:func:`torch.nn.functional.scaled_dot_product_attention` fails with "derivative for
aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented" (double
backward) or "Trying to use forward AD with _scaled_dot_product_flash_attention_for_cpu
that does not support it" (forward over reverse). The math kernel computes the same
attention from matrix products and a softmax, which autograd differentiates to any order.

:func:`second_order_attention` routes every scaled-dot-product attention call to the
math kernel with :func:`torch.nn.attention.sdpa_kernel`. The objective enters it for
every second-order pass, always rather than on detection: no fused kernel has a
second derivative, so a pass through one would only fail, and the context costs
nothing for models without attention. First-order work (values, gradients,
ε-sharpness ascent, noise scale) runs outside it and keeps the fast kernels.
:func:`calls_sdpa` finds out, for the record, whether a forward calls the kernel at
all. Models used this way: ``nn.MultiheadAttention``, ``nn.TransformerEncoder`` and
``nn.TransformerDecoder``, Hugging Face models with ``attn_implementation="sdpa"``, and
any module calling the function directly.

A forward that still cannot be differentiated twice (a fused kernel called by its
ATen name, an operation without a derivative formula for its backward) fails inside
:func:`second_order_errors` with one :class:`SecondOrderError` naming the operation
PyTorch named and what to try.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = [
    "SECOND_ORDER_ATTENTION",
    "SecondOrderError",
    "calls_sdpa",
    "explain_second_order_failure",
    "second_order_attention",
    "second_order_errors",
]

SECOND_ORDER_ATTENTION = "math"
"""The name of the attention kernel second-order passes use (recorded with results)."""

# what PyTorch says when no kernel is allowed (host / CUDA wording)
_NO_KERNEL = ("No viable backend for scaled_dot_product_attention", "No available kernel")

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"derivative for '?([\w:.]+)'? is not implemented"), "double backward"),
    (re.compile(r"forward AD with '?([\w:.]+)'? that does not support it"), "forward-mode AD"),
)


class SecondOrderError(RuntimeError):
    """The model's forward cannot be differentiated twice by the strategy in use."""


@contextmanager
def second_order_attention() -> Iterator[None]:
    """Route :func:`~torch.nn.functional.scaled_dot_product_attention` to the math kernel.

    Yields:
        Nothing; inside the context every attention call uses the math kernel, whose
        backward can be differentiated again (double backward, forward over reverse).

    Examples:
        >>> import torch
        >>> q = torch.randn(1, 2, 3, 4, requires_grad=True)
        >>> with second_order_attention():
        ...     out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
        >>> (g,) = torch.autograd.grad(out.sum(), q, create_graph=True)
        >>> g.requires_grad
        True
    """
    with sdpa_kernel([SDPBackend.MATH]):
        yield


def calls_sdpa(forward: Callable[[], object]) -> bool:
    """Whether ``forward()`` calls scaled-dot-product attention.

    ``forward`` runs with every attention kernel switched off, so it stops with
    PyTorch's "no viable backend" error at its first attention call (or finishes, when
    it makes none). Run it as the second-order pass would (gradients on): modules such
    as ``nn.TransformerEncoderLayer`` take another path when nothing needs a gradient.

    Args:
        forward: The forward pass to probe; its result is discarded.

    Returns:
        ``True`` if the forward reached an attention call.

    Raises:
        RuntimeError: Any other error of the forward, unchanged.
    """
    try:
        # CUDA warns why each fused kernel was not used; here that is the point
        with sdpa_kernel([]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            forward()
    except RuntimeError as err:
        if any(text in str(err) for text in _NO_KERNEL):
            return True
        raise
    return False


def explain_second_order_failure(err: BaseException, *, strategy: str) -> SecondOrderError | None:
    """Turn autograd's "not implemented" error of a second-order pass into advice.

    Args:
        err: The error a Hessian-vector product raised.
        strategy: The product's strategy (``"double_backward"``, ``"retained"``,
            ``"forward_over_reverse"``), named in the message.

    Returns:
        A :class:`SecondOrderError` naming the operation PyTorch named and what to try,
        or ``None`` when ``err`` is not a missing second derivative.
    """
    text = str(err)
    for pattern, kind in _PATTERNS:
        found = pattern.search(text)
        if found is None:
            continue
        op = found.group(1)
        tries = []
        if kind == "forward-mode AD":
            tries.append(
                'strategy="double_backward" (HessianOptions(strategy="double_backward") or '
                "the estimators' strategy setting), which needs reverse mode only"
            )
        tries.append(
            "math attention: call torch.nn.functional.scaled_dot_product_attention (flatness "
            "routes it to the math kernel in second-order passes) instead of a fused kernel "
            "by its ATen name, or force it with torch.nn.attention.sdpa_kernel"
            "([SDPBackend.MATH])"
        )
        tries.append('eager attention: load a Hugging Face model with attn_implementation="eager"')
        return SecondOrderError(
            f"the model's forward cannot be differentiated twice (strategy {strategy!r}): "
            f"{kind} of {op} is not implemented in PyTorch ({text.splitlines()[0]}). "
            "Hessian-vector products need it. Try: " + "; or ".join(tries) + "."
        )
    return None


@contextmanager
def second_order_errors(strategy: str) -> Iterator[None]:
    """Re-raise a missing second derivative inside the context as a :class:`SecondOrderError`.

    Args:
        strategy: The strategy of the products computed inside, for the message.

    Yields:
        Nothing.

    Raises:
        SecondOrderError: From :func:`explain_second_order_failure`; other errors pass
            unchanged.
    """
    try:
        yield
    except RuntimeError as err:  # NotImplementedError (forward AD) is a RuntimeError
        explained = explain_second_order_failure(err, strategy=strategy)
        if explained is None:
            raise
        raise explained from err
