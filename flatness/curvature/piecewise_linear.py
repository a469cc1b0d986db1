"""When the Hessian's trace equals the Gauss-Newton trace: piecewise-linear networks.

The Hessian of a loss :math:`\\ell(z(\\theta))` splits into the generalized Gauss-Newton
matrix :math:`J^\\top \\nabla_z^2 \\ell\\, J` and the term
:math:`\\sum_c \\partial_{z_c}\\ell\\, \\nabla_\\theta^2 z_c` (Schraudolph 2002;
Martens 2020). When every parameter enters the network output at most linearly --
ReLU, max-pooling, linear and convolutional layers, BatchNorm with running statistics,
each parameterized layer applied once -- the diagonal of every
:math:`\\nabla_\\theta^2 z_c` vanishes almost everywhere, so both traces agree and
:func:`~flatness.curvature.exact_trace.exact_hessian_trace` can sum the exact trace
from vector-Jacobian products. :func:`check_piecewise_linear` decides whether an
Objective qualifies, by recording the functions one forward pass calls.

References:
    N. N. Schraudolph (2002). Fast curvature matrix-vector products for second-order
    gradient descent. Neural Computation 14(7), 1723–1738.

    J. Martens (2020). New insights and perspectives on the natural gradient method.
    JMLR 21(146), 1–76.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from flatness.curvature.objective import Objective

__all__ = ["PIECEWISE_LINEAR_FUNCTIONS", "check_piecewise_linear"]

#: Functions under which every parameter stays (piecewise) linear.
PIECEWISE_LINEAR_FUNCTIONS = frozenset(
    {
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "batch_norm",
        "relu",
        "relu_",
        "leaky_relu",
        "leaky_relu_",
        "hardtanh",
        "relu6",
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "feature_alpha_dropout",
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "max_pool1d_with_indices",
        "max_pool2d_with_indices",
        "max_pool3d_with_indices",
        "avg_pool1d",
        "avg_pool2d",
        "avg_pool3d",
        "adaptive_avg_pool1d",
        "adaptive_avg_pool2d",
        "adaptive_avg_pool3d",
        "adaptive_max_pool1d",
        "adaptive_max_pool2d",
        "adaptive_max_pool3d",
        "flatten",
        "unflatten",
        "view",
        "reshape",
        "unsqueeze",
        "squeeze",
        "permute",
        "transpose",
        "contiguous",
        "dim",
        "size",
        "__getitem__",
        "add",
        "__add__",
        "__radd__",
        "__iadd__",
        "add_",
        "cat",
        "pad",
        "clone",
        "t",
        "float",
        "to",
        "type",
        "detach",
        "identity",
        "fn",
        "__get__",
        "numel",
        "expand",
        "repeat",
        "chunk",
        "split",
        "narrow",
        "select",
        "index_select",
    }
)


class _FunctionRecorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: Counter[str] = Counter()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names[getattr(func, "__name__", repr(func))] += 1
        return func(*args, **(kwargs or {}))


def _is_cross_entropy(loss_fn: Any) -> bool:
    if loss_fn is F.cross_entropy:
        return True
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        return (
            loss_fn.reduction == "mean"
            and loss_fn.weight is None
            and loss_fn.label_smoothing == 0.0
        )
    return False


def check_piecewise_linear(objective: Objective) -> None:
    """Check that the exact-trace identity holds for ``objective``.

    It needs softmax cross-entropy (mean reduction, no class weights or label
    smoothing), evaluation mode, class-index targets, a forward pass that calls only
    piecewise-linear functions, and every parameterized module called once.

    Returns:
        ``None`` when the objective qualifies.

    Raises:
        ValueError: Listing every reason why it does not.
    """
    reasons = []
    if objective.batch_loss is not None or not _is_cross_entropy(objective.loss_fn):
        reasons.append("the loss is not plain softmax cross-entropy (F.cross_entropy)")
    if objective.train_mode:
        reasons.append("the model is evaluated in training mode (batch statistics)")
    x, y = objective.batches[0]
    if y.dtype.is_floating_point or y.ndim != 1:
        reasons.append("targets are not class indices")
    calls: Counter[str] = Counter()
    handles = [
        m.register_forward_hook(lambda mod, _i, _o, name=name: calls.update([name]))
        for name, m in objective.model.named_modules()
        if any(True for _ in m.parameters(recurse=False))
    ]
    try:
        with torch.no_grad(), _FunctionRecorder() as recorder:
            objective.model_fn()(x[:2])
    finally:
        for h in handles:
            h.remove()
    unsupported = sorted(set(recorder.names) - PIECEWISE_LINEAR_FUNCTIONS)
    if unsupported:
        reasons.append(f"the forward pass calls non-piecewise-linear functions {unsupported}")
    reused = sorted(n for n, c in calls.items() if c > 1)
    if reused:
        reasons.append(f"parameterized modules are applied more than once: {reused}")
    if reasons:
        raise ValueError(
            "the exact trace needs a piecewise-linear network with cross-entropy, but "
            + "; ".join(reasons)
            + ". Use method='hutchpp' (a stochastic estimate with a standard error) instead."
        )
