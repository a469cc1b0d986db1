"""The exact Hessian trace of piecewise-linear networks trained with cross-entropy.

The Hessian of :math:`f(\\theta) = \\frac1N \\sum_i \\ell(z_i(\\theta), y_i)` splits into
the generalized Gauss-Newton matrix and a residual term (Schraudolph 2002; Martens
2020, "New insights and perspectives on the natural gradient method"):

.. math::

    \\nabla^2 f = \\frac1N \\sum_i J_i^\\top \\, \\nabla_z^2 \\ell_i \\, J_i
    + \\frac1N \\sum_i \\sum_c \\frac{\\partial \\ell_i}{\\partial z_{ic}}
      \\nabla_\\theta^2 z_{ic},

with :math:`J_i = \\partial z_i / \\partial \\theta`. When every parameter enters the
network output at most linearly (ReLU, max-pooling, linear and convolutional layers,
BatchNorm with running statistics; each parameterized layer applied once), the
diagonal of every :math:`\\nabla_\\theta^2 z_{ic}` vanishes almost everywhere, so
:math:`\\operatorname{tr} \\nabla^2 f = \\operatorname{tr} G`. For softmax
cross-entropy :math:`\\nabla_z^2 \\ell = \\operatorname{diag}(p) - p p^\\top = S S^\\top`
with columns :math:`s_c = \\sqrt{p_c}(e_c - p)`, hence

.. math::

    \\operatorname{tr} \\nabla^2 f = \\frac1N \\sum_i \\sum_{c=1}^{C}
    \\lVert J_i^\\top s_{ic} \\rVert^2,

computed from per-example vector-Jacobian products in about C backward passes, with
no sampling error. :func:`exact_hessian_trace` verifies that the network qualifies
(:func:`~flatness.curvature.piecewise_linear.check_piecewise_linear`, still importable
from here) and refuses otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flatness.curvature.attention import second_order_attention
from flatness.curvature.objective import Objective
from flatness.curvature.piecewise_linear import (
    PIECEWISE_LINEAR_FUNCTIONS,
    check_piecewise_linear,
)
from flatness.curvature.trace_result import ExactMethod, TraceResult
from flatness.losses import describe_batch
from flatness.results import Meter

__all__ = ["PIECEWISE_LINEAR_FUNCTIONS", "check_piecewise_linear", "exact_hessian_trace"]


def _chunk_size(objective: Objective, num_classes: int, memory_bytes: int) -> int:
    per_example = num_classes * objective.dim * objective.theta0.element_size() * 3
    return max(1, min(256, memory_bytes // max(per_example, 1)))


_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.modules.batchnorm._BatchNorm)


def _layer_plan(objective: Objective) -> dict[str, tuple[nn.Module, list[str]]] | None:
    """Map each parameterized module to its selected parameter names, or ``None`` when
    some module has no closed form here (then the generic per-example path is used)."""
    selected = set(objective.param_names)
    plan: dict[str, tuple[nn.Module, list[str]]] = {}
    for name, module in objective.model.named_modules():
        own = [n for n, _ in module.named_parameters(recurse=False)]
        if not own:
            continue
        full = [f"{name}.{n}" if name else n for n in own]
        chosen = [f for f in full if f in selected]
        if not chosen:
            continue
        if not isinstance(module, _LAYER_TYPES) or set(own) - {"weight", "bias"}:
            return None
        if isinstance(module, nn.Conv1d | nn.Conv2d) and (
            module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str)
        ):
            return None
        plan[name] = (module, [f.rsplit(".", 1)[-1] for f in chosen])
    return plan


def _unfold(module: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
    """Convolution patches ``(n, in·k, positions)`` of the input of a Conv1d/Conv2d."""
    if isinstance(module, nn.Conv1d):  # a 1-D convolution is a 2-D one of height 1
        return F.unfold(
            x.unsqueeze(2),
            (1, module.kernel_size[0]),
            dilation=(1, module.dilation[0]),
            padding=(0, int(module.padding[0])),
            stride=(1, module.stride[0]),
        )
    return F.unfold(
        x,
        module.kernel_size,
        dilation=module.dilation,
        padding=module.padding,  # type: ignore[arg-type]
        stride=module.stride,
    )


def _layer_sq_norms(
    module: nn.Module, names: list[str], x: Tensor, g: Tensor, cache: dict[str, Tensor]
) -> Tensor:
    """Sum over examples of the squared per-example gradient norms of one layer.

    ``x`` is the layer's input ``(n, ...)`` and ``g`` the back-propagated signal at
    its output, with a leading class dimension ``(C, n, ...)``. ``cache`` keeps what
    depends on the input only (patches, their Gram matrices) across class chunks.
    """
    total = torch.zeros((), device=g.device, dtype=torch.float64)
    if isinstance(module, nn.Linear) and x.ndim == 2:
        # per-example weight gradient g_i a_i^T has norm |g_i| |a_i|
        g_sq = (g**2).sum(-1)  # (C, n)
        if "weight" in names:
            total += (g_sq * (x**2).sum(-1)).sum().double()
        if "bias" in names:
            total += g_sq.double().sum()
    elif isinstance(module, nn.Linear):
        lead = (g.shape[0], g.shape[1], -1)
        gs, xs = g.reshape(*lead, g.shape[-1]), x.reshape(x.shape[0], -1, x.shape[-1])
        if "weight" in names:
            total += (torch.einsum("cnto,nti->cnoi", gs, xs) ** 2).sum().double()
        if "bias" in names:
            total += (gs.sum(2) ** 2).sum().double()
    elif isinstance(module, nn.Conv1d | nn.Conv2d):
        gs = g.flatten(3) if g.ndim > 4 else g.reshape(g.shape[0], g.shape[1], g.shape[2], -1)
        if "weight" in names:
            if "patches" not in cache:
                cache["patches"] = _unfold(module, x)  # (n, in*k, P)
            patches = cache["patches"]
            kdim, positions = patches.shape[1], patches.shape[2]
            if positions < kdim:
                # |g U^T|_F^2 = <U^T U, g^T g>: Gram matrices over positions are smaller
                # than the per-example gradients when there are fewer positions than
                # patch entries
                if "gram" not in cache:
                    cache["gram"] = torch.einsum("nkp,nkq->npq", patches, patches)
                gram_u = cache["gram"]
                gram_g = torch.einsum("cnop,cnoq->cnpq", gs, gs)
                total += (gram_g * gram_u.unsqueeze(0)).sum().double()
            else:
                total += (torch.einsum("cnop,nkp->cnok", gs, patches) ** 2).sum().double()
        if "bias" in names:
            total += (gs.sum(-1) ** 2).sum().double()
    else:  # BatchNorm with running statistics: y = gamma * xhat + beta
        assert isinstance(module, nn.modules.batchnorm._BatchNorm)
        assert module.running_mean is not None and module.running_var is not None
        shape = (1, -1) + (1,) * (x.ndim - 2)
        xhat = (x - module.running_mean.view(shape)) / torch.sqrt(
            module.running_var.view(shape) + module.eps
        )
        gs = g.reshape(g.shape[0], g.shape[1], g.shape[2], -1)
        if "weight" in names:
            total += (
                ((gs * xhat.reshape(1, x.shape[0], x.shape[1], -1)).sum(-1) ** 2).sum().double()
            )
        if "bias" in names:
            total += (gs.sum(-1) ** 2).sum().double()
    return total


def _cotangents(probs: Tensor) -> Tensor:
    """``S[c, i] = sqrt(p_ic) (e_c - p_i)``, shape ``(C, n, C)``.

    For each example, :math:`S_i S_i^\\top = \\operatorname{diag}(p_i) - p_i p_i^\\top`.
    """
    num_classes = probs.shape[-1]
    eye = torch.eye(num_classes, device=probs.device, dtype=probs.dtype)
    return probs.T.sqrt().unsqueeze(-1) * (eye.unsqueeze(1) - probs.unsqueeze(0))


def _batch_trace_by_layers(
    objective: Objective,
    plan: dict[str, tuple[nn.Module, list[str]]],
    x: Tensor,
    memory_bytes: int,
) -> tuple[Tensor, int]:
    r"""The sum :math:`\sum_i \sum_c \lVert J_i^\top s_{ic} \rVert^2` of one batch, from
    the back-propagated signals at each layer's output, and the number of classes."""
    inputs: dict[str, Tensor] = {}
    outputs: dict[str, Tensor] = {}

    def capture(name: str) -> Any:
        def hook(_m: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
            inputs[name] = args[0].detach()
            outputs[name] = out

        return hook

    modules = dict(objective.model.named_modules())
    handles = [modules[name].register_forward_hook(capture(name)) for name in plan]
    try:
        # differentiate through the inputs, not the parameters: the backward passes then
        # compute only the signals, never the weight gradients
        logits = objective.model_fn()(x.detach().requires_grad_(True))
    finally:
        for h in handles:
            h.remove()
    probs = torch.softmax(logits.detach(), dim=-1)
    S = _cotangents(probs)
    names = list(plan)
    total = torch.zeros((), device=x.device, dtype=torch.float64)
    # the signals of one class are as large as the layers' outputs (times ~3 for the
    # closed forms' temporaries)
    per_class = 3 * sum(o.numel() * o.element_size() for o in outputs.values())
    class_chunk = max(1, memory_bytes // max(per_class, 1))
    caches: dict[str, dict[str, Tensor]] = {name: {} for name in names}
    for c0 in range(0, S.shape[0], class_chunk):
        block = S[c0 : c0 + class_chunk]
        batched = block.shape[0] > 1
        signals = torch.autograd.grad(
            logits,
            [outputs[n] for n in names],
            grad_outputs=block if batched else block[0],
            is_grads_batched=batched,
            retain_graph=True,
        )
        for name, g in zip(names, signals, strict=True):
            module, params = plan[name]
            g = g if batched else g.unsqueeze(0)
            total += _layer_sq_norms(module, params, inputs[name], g, caches[name])
    return total, int(S.shape[0])


def _batch_trace_by_examples(
    objective: Objective, x: Tensor, chunk: int | None, memory_bytes: int
) -> tuple[Tensor, int]:
    """The same sum from per-example vector-Jacobian products (any layer types)."""
    obj = objective
    params = obj.unflatten(obj.theta0)

    def example_sum(x_i: Tensor, s_i: Tensor) -> Tensor:
        def logits(p: dict[str, Tensor]) -> Tensor:
            out: Tensor = obj.model_fn(p)(x_i.unsqueeze(0)).squeeze(0)
            return out

        pullback = torch.func.vjp(logits, params)[1]
        grads: dict[str, Tensor] = torch.func.vmap(pullback)(s_i)[0]
        return torch.stack([(g**2).sum() for g in grads.values()]).sum()

    with torch.no_grad():
        probs = torch.softmax(obj.model_fn()(x), dim=-1)
    S = _cotangents(probs).transpose(0, 1)  # (n, C, C)
    size = chunk or _chunk_size(obj, probs.shape[-1], memory_bytes)
    total = torch.zeros((), device=x.device, dtype=torch.float64)
    # vmapped vector-Jacobian products: the math attention kernel has the batching rules
    with second_order_attention():
        for i in range(0, x.shape[0], size):
            total += torch.func.vmap(example_sum)(x[i : i + size], S[i : i + size]).sum().double()
    return total, int(probs.shape[-1])


def _require_class_pairs(objective: Objective) -> None:
    """Refuse objectives whose loss is not cross-entropy of ``(inputs, labels)`` pairs."""
    first = objective.batches.host[0]
    pairs = all(
        isinstance(b, tuple | list) and len(b) == 2 and all(isinstance(t, Tensor) for t in b)
        for b in objective.batches.host
    )
    if objective.batch_loss is None and pairs:
        return
    if objective.batch_loss is not None:
        hook = getattr(objective.batch_loss, "__name__", type(objective.batch_loss).__name__)
        why = f"its loss is a batch_loss hook ({hook}"
        why += (
            f", a mean over {objective.weighted_by})"
            if objective.weighted_by != "examples"
            else ")"
        )
    else:
        why = (
            "its batches are not (inputs, class labels) pairs (the first is "
            f"{describe_batch(first)})"
        )
    raise ValueError(
        f"the exact trace cannot be taken of this objective: {why}. It is exact only for "
        "softmax cross-entropy over (inputs, class labels) of a piecewise-linear network "
        "(it sums per-example Gauss-Newton terms, which a language model's token loss or "
        "a model's own .loss does not expose). Use method='hutchpp' (a stochastic "
        "estimate with a standard error) instead."
    )


def exact_hessian_trace(
    objective: Objective,
    *,
    chunk_size: int | None = None,
    memory_bytes: int = 256 * 2**20,
    check: bool = True,
    method: ExactMethod = "auto",
) -> TraceResult:
    """The exact :math:`\\operatorname{tr}\\nabla^2 f` of a piecewise-linear network.

    Two ways compute the same sum. ``"layers"`` back-propagates the C cotangents
    :math:`s_{ic}` once each (vectorized) to the outputs of every parameterized
    layer and takes the per-example gradient norms in closed form (for a linear
    layer :math:`\\lVert g_i a_i^\\top\\rVert^2 = \\lVert g_i\\rVert^2\\lVert a_i\\rVert^2`;
    convolutions through their patches; BatchNorm from the normalized input), in the
    spirit of BackPACK (Dangel et al. 2020). ``"examples"`` forms per-example
    gradients with :func:`torch.func.vmap` and works for any layer, more slowly.

    Args:
        objective: A cross-entropy objective of a network built from linear,
            convolutional, eval-mode BatchNorm, ReLU and pooling layers.
        chunk_size: ``"examples"``: examples whose per-class gradients are held at
            once (default: as many as fit in ``memory_bytes``).
        memory_bytes: Memory for one chunk of per-example or per-class work.
        check: Verify that the network qualifies (recommended).
        method: ``"auto"`` (``"layers"`` when every parameterized module is a
            Linear, Conv1d/Conv2d or BatchNorm layer), ``"layers"`` or ``"examples"``.

    Returns:
        A :class:`~flatness.curvature.trace_result.TraceResult` with ``method="exact"``,
        ``stderr=0`` and ``matvecs=0``: it uses one forward and C backward passes per
        batch for C classes (vectorized), no Hessian-vector products, so its cost is
        ``gradients=C`` (nominally C full gradients).

    Raises:
        ValueError: If the network or loss does not qualify (see
            :func:`check_piecewise_linear`), and always, whatever ``check``, for
            batches that are not ``(inputs, labels)`` pairs or a ``batch_loss`` hook
            (dict batches, language models' token losses).

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        >>> obj = Objective(net, (torch.randn(20, 4), torch.randint(0, 3, (20,))))
        >>> from flatness.curvature.hessian import HessianOperator
        >>> dense = torch.trace(HessianOperator(obj).to_dense())
        >>> bool(torch.isclose(torch.tensor(exact_hessian_trace(obj).estimate), dense, rtol=1e-4))
        True
    """
    meter = Meter()
    if method not in ("auto", "layers", "examples"):
        raise ValueError(f"method must be 'auto', 'layers' or 'examples', got {method!r}")
    _require_class_pairs(objective)
    if check:
        check_piecewise_linear(objective)
    plan = _layer_plan(objective) if method != "examples" else None
    if method == "layers" and plan is None:
        raise ValueError(
            "method='layers' needs every parameterized module to be Linear, Conv1d/Conv2d "
            "(groups=1, zero padding) or BatchNorm; use method='examples'"
        )
    total = torch.zeros((), device=objective.device, dtype=torch.float64)
    classes = 0
    for weight, (x, _) in zip(objective.weights, objective.batches, strict=True):
        if plan is not None:
            batch_total, classes = _batch_trace_by_layers(objective, plan, x, memory_bytes)
        else:
            with torch.no_grad():
                batch_total, classes = _batch_trace_by_examples(
                    objective, x, chunk_size, memory_bytes
                )
        total += weight * batch_total / x.shape[0]
    total = objective.reduce(total)
    meter.count(gradients=classes)
    meter.stop()
    return TraceResult(
        estimate=float(total),
        stderr=0.0,
        method="exact",
        matvecs=0,
        seconds=meter.seconds,
        probes=0,
        converged=True,
        gradients=meter.gradients,
        gradient_equivalents=meter.gradient_equivalents,
        settings={
            "chunk_size": chunk_size,
            "memory_bytes": memory_bytes,
            "check": check,
            "method": method,
        },
    )
