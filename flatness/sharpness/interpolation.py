r"""Loss and accuracy along a path between two checkpoints (Keskar's parametric plot).

Keskar et al. (ICLR 2017, "On Large-Batch Training for Deep Learning: Generalization Gap
and Sharp Minima", Sec. 2.2 and Fig. 3) compare a small-batch minimizer
:math:`x_{SB}` with a large-batch one :math:`x_{LB}` by evaluating the loss and accuracy,
on the training and the test set, along the line through both,

.. math::

    x(\alpha) = \alpha\, x_{LB} + (1 - \alpha)\, x_{SB}, \qquad \alpha \in [-1, 2],

so that :math:`\alpha = 0` is the SB model and :math:`\alpha = 1` the LB model. A sharp
minimizer shows up as a loss that rises steeply on its side of the plot. Their
Appendix D also follows a curvilinear path; here it is

.. math::

    x(\alpha) = \cos(\tfrac{\pi\alpha}{2})\, x_{SB} + \sin(\tfrac{\pi\alpha}{2})\, x_{LB},

which also passes through :math:`x_{SB}` at :math:`\alpha = 0` and :math:`x_{LB}` at
:math:`\alpha = 1` (the formula is defined for every :math:`\alpha`, with period 4; its
default range here is :math:`[0, 1]`).

Every point is evaluated with the model in ``eval()`` mode: dropout off, BatchNorm
normalizing with running statistics. (Keskar's plotting script evaluated with BatchNorm
in training mode, so each point depended on how the examples were batched.) Running
statistics are either interpolated with the same coefficients as the weights
(``bn="interpolate"``) or recomputed on the training data at every point
(``bn="recompute"``, cumulative averages over the training batches, as after a weight
average in SWA).

Accuracy is the fraction of examples whose arg-max output equals the target; it is
computed when the model outputs ``(n, classes)`` scores and the targets are integer class
labels of shape ``(n,)``, and is ``None`` otherwise.

The result's headline ``value`` (the result contract's one number) is the *loss
barrier* of the training loss between the two checkpoints, the largest rise above the
straight line joining the endpoints' losses over the evaluated :math:`\alpha \in [0, 1]`
(Frankle et al. 2020; Entezari et al. 2022),

.. math::

    B = \max_{\alpha \in [0, 1]}\ L(x(\alpha)) - \bigl((1 - \alpha) L(x_0) + \alpha L(x_1)\bigr)
    \ \ge 0,

NaN when :math:`\alpha = 0` or :math:`\alpha = 1` was not evaluated. The curves
themselves are the result (:meth:`InterpolationResult.to_frame`).

References:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017). On
    large-batch training for deep learning: Generalization gap and sharp minima. ICLR.

    J. Frankle, G. K. Dziugaite, D. M. Roy and M. Carbin (2020). Linear mode
    connectivity and the lottery ticket hypothesis. ICML.

    R. Entezari, H. Sedghi, O. Saukh and B. Neyshabur (2022). The role of permutation
    invariance in linear mode connectivity of neural networks. ICLR.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flatness.curvature.batches import DeviceBatches, split_batches, weigh_batches
from flatness.curvature.objective import Batch
from flatness.distributed.sharding import Distributed, resolve_group
from flatness.evaluation import mean_loss_and_accuracy
from flatness.losses import BatchLossFn, LossFn
from flatness.results import Meter
from flatness.sharpness.interpolation_result import InterpolationResult
from flatness.sharpness.path_ranks import rank_data, shared_statistics
from flatness.sharpness.paths import (
    BN_MODES,
    PATHS,
    BatchNormMode,
    Checkpoint,
    Data,
    InterpolationPath,
    check_compatible,
    norm_layers,
    path_coefficients,
    state_of,
)

__all__ = [
    "BatchNormMode",
    "Checkpoint",
    "Data",
    "InterpolationPath",
    "InterpolationResult",
    "interpolate_checkpoints",
    "mean_loss_and_accuracy",
    "parametric_plot",
    "path_coefficients",
]


def _device_batches(
    data: Data,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    batch_loss: BatchLossFn | None,
    what: str,
) -> list[Batch]:
    """The data's batches that enter the loss, cast and on ``device`` (pairs or dicts)."""
    try:
        weighed = weigh_batches(split_batches(data, batch_size), dtype, batch_loss)
    except ValueError as err:
        raise ValueError(f"{what} holds no examples ({err})") from None
    return list(DeviceBatches(weighed.batches, device))


def interpolate_checkpoints(
    start: Checkpoint,
    end: Checkpoint,
    *,
    train: Data,
    test: Data | None = None,
    model: nn.Module | None = None,
    alphas: Sequence[float] | np.ndarray | None = None,
    path: InterpolationPath = "linear",
    bn: BatchNormMode = "interpolate",
    loss_fn: LossFn | None = F.cross_entropy,
    batch_loss: BatchLossFn | None = None,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    distributed: Distributed = "auto",
    presharded: bool = False,
) -> InterpolationResult:
    r"""Loss and accuracy at points :math:`x(\alpha)` on a path from ``start`` to ``end``.

    With :math:`x_0` the start and :math:`x_1` the end checkpoint,

    .. math::

        x(\alpha) = c_0(\alpha)\, x_0 + c_1(\alpha)\, x_1, \qquad
        (c_0, c_1) = \begin{cases}
            (1 - \alpha,\ \alpha) & \text{linear} \\
            (\cos\frac{\pi\alpha}{2},\ \sin\frac{\pi\alpha}{2}) & \text{curvilinear}
        \end{cases}

    applied to every floating-point entry of the state dicts (parameters and, with
    ``bn="interpolate"``, running statistics); integer buffers such as
    ``num_batches_tracked`` are taken from ``start``. Each point is evaluated in
    ``eval()`` mode on a private copy of the model: the inputs are never modified.

    Args:
        start: The point at :math:`\alpha = 0`: a model or a state dict.
        end: The point at :math:`\alpha = 1`: a model or a state dict with the same keys
            and shapes.
        train: Training data: an ``(inputs, targets)`` pair (split into batches of
            ``batch_size``), a list of ``(inputs, targets)`` batches, or a list of
            dict batches (model inputs by name, as a Hugging Face tokenizer gives them).
        test: Test data in the same form, or ``None``.
        model: The architecture to load the states into (needed when ``start`` is a state
            dict; default: ``start`` itself). It is copied, never modified.
        alphas: The path coordinates (default: 25 points on :math:`[-1, 2]` for the
            linear path, as in Keskar et al.; 25 points on :math:`[0, 1]` for the
            curvilinear one).
        path: ``"linear"`` or ``"curvilinear"``.
        bn: ``"interpolate"``: running means and variances follow the weights (a variance
            that comes out negative when extrapolating is clamped to 0 and the
            :math:`\alpha` recorded). ``"recompute"``: at each point the running
            statistics are reset and recomputed as the plain average over the training
            batches (normalization layers alone in training mode, momentum ``None``, no
            gradients), then the model is evaluated in ``eval()`` mode.
        loss_fn: ``loss_fn(output, target)`` returning the mean loss of a batch
            (``None``: a dict batch's model's own ``.loss``); the loss definition of
            :class:`~flatness.curvature.objective.Objective` (see
            :func:`~flatness.losses.default_batch_loss`).
        batch_loss: Instead of ``loss_fn``, a ``batch_loss(model_fn, batch)`` hook such
            as :data:`flatness.causal_lm_loss`, the same as the Objective's (a loss
            that weighs its batches by tokens gives the token mean).
        batch_size: Batch size for tensor pairs (also the batches of the recomputation).
        device: Where to evaluate (default: the device of ``start``'s or ``model``'s
            parameters).
        dtype: Floating dtype of the evaluation (default: the model's).
        distributed: The process group the evaluation is data-parallel over, as for
            :class:`~flatness.Objective`: ``"auto"`` (the world under ``torchrun``,
            none in a single process), ``None``/``False``, ``True`` or a group. Every
            rank passes the same checkpoints and data, evaluates its block of the
            examples and gets the values of one process on all the data
            (:mod:`flatness.sharpness.path_ranks`).
        presharded: Under a group, each rank was given its own part of the data.

    Returns:
        An :class:`InterpolationResult`.

    Raises:
        ValueError: For an unknown ``path`` or ``bn``, checkpoints whose keys or shapes
            differ, or data the loss cannot take (not ``(inputs, targets)``, nor dicts
            with ``labels``, nor what ``batch_loss`` takes); under a group, a rank
            without training examples or with other checkpoints or data (named).
        TypeError: If ``start`` or ``end`` is neither a model nor a state dict.

    Examples:
        >>> torch.manual_seed(0) and None
        >>> a, b = nn.Linear(4, 3), nn.Linear(4, 3)
        >>> X, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
        >>> res = interpolate_checkpoints(a, b, train=(X, y), alphas=[0.0, 0.5, 1.0])
        >>> bool(res.train_loss[0] == F.cross_entropy(a(X), y))
        True
        >>> list(res.to_frame().columns)
        ['alpha', 'split', 'metric', 'value']
    """
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; expected one of {PATHS}")
    if bn not in BN_MODES:
        raise ValueError(f"unknown bn mode {bn!r}; expected one of {BN_MODES}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if model is None:
        if not isinstance(start, nn.Module):
            raise ValueError(
                "start is a state dict: pass the architecture as model=... to load it into"
            )
        model = start
    if alphas is None:
        alphas = np.linspace(-1.0, 2.0, 25) if path == "linear" else np.linspace(0.0, 1.0, 25)
    alpha_arr = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if alpha_arr.size == 0 or not np.isfinite(alpha_arr).all():
        raise ValueError("alphas must be a non-empty sequence of finite numbers")

    state0, state1 = state_of(start, "start"), state_of(end, "end")
    template = {k: v.detach() for k, v in model.state_dict().items()}
    check_compatible([("start", state0), ("end", state1), ("model", template)])

    first = next(iter(model.parameters()), None)
    if device is None:
        src = start if isinstance(start, nn.Module) else model
        p = next(iter(src.parameters()), first)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    if dtype is None:
        dtype = first.dtype if first is not None else torch.get_default_dtype()

    with Meter() as meter:
        work = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
        ranks = rank_data(
            _device_batches(train, batch_size, device, dtype, batch_loss, "train"),
            None
            if test is None
            else _device_batches(test, batch_size, device, dtype, batch_loss, "test"),
            resolve_group(distributed),
            presharded=presharded,
            states=(state0, state1),
            dtype=dtype,
            batch_loss=batch_loss,
        )
        train_batches, test_batches = ranks.train, ranks.test
        reduce = None if ranks.info is None else ranks.reduce
        layers = norm_layers(work)
        variance_keys = {f"{n}.running_var" if n else "running_var" for n, _ in layers}

        def cast(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype)

        floats = {k for k, v in state0.items() if v.is_floating_point()}
        x0 = {k: cast(v) for k, v in state0.items() if k in floats}
        x1 = {k: cast(v) for k, v in state1.items() if k in floats}
        fixed = {k: v for k, v in state0.items() if k not in floats}

        series: dict[str, list[float]] = {"train_loss": [], "test_loss": []}
        accs: dict[str, list[float | None]] = {"train_acc": [], "test_acc": []}
        clamped: list[float] = []
        for alpha in alpha_arr:
            c0, c1 = path_coefficients(float(alpha), path)
            point = {k: c0 * x0[k] + c1 * x1[k] for k in floats}
            if bn == "interpolate":
                negative = [k for k in variance_keys if k in point and bool((point[k] < 0).any())]
                if negative:
                    clamped.append(float(alpha))
                    for k in negative:
                        point[k] = point[k].clamp_min(0.0)
            work.load_state_dict({**fixed, **point}, strict=True)
            if bn == "recompute" and layers:
                shared_statistics(work, ranks)
                meter.count(evaluations=1)
            work.eval()
            loss, acc = mean_loss_and_accuracy(
                work, train_batches, loss_fn, batch_loss=batch_loss, what="train", reduce=reduce
            )
            series["train_loss"].append(float(loss))
            accs["train_acc"].append(acc)
            meter.count(evaluations=1)
            if test_batches is not None:
                loss, acc = mean_loss_and_accuracy(
                    work, test_batches, loss_fn, batch_loss=batch_loss, what="test", reduce=reduce
                )
                series["test_loss"].append(float(loss))
                accs["test_acc"].append(acc)
                meter.count(evaluations=1)

    def array(values: list[float | None]) -> np.ndarray | None:
        if not values or any(v is None for v in values):
            return None
        return np.asarray(values, dtype=np.float64)

    return InterpolationResult(
        alphas=alpha_arr,
        train_loss=np.asarray(series["train_loss"], dtype=np.float64),
        train_accuracy=array(accs["train_acc"]),
        test_loss=None if test_batches is None else np.asarray(series["test_loss"]),
        test_accuracy=None if test_batches is None else array(accs["test_acc"]),
        path=path,
        bn=bn,
        seconds=meter.seconds,
        evaluations=meter.evaluations,
        clamped_alphas=tuple(clamped),
        num_train=ranks.num_train,
        num_test=ranks.num_test,
        device=str(device),
        dtype=str(dtype).replace("torch.", ""),
        batch_size=batch_size,
    )


def parametric_plot(
    model_sb: Checkpoint,
    model_lb: Checkpoint,
    *,
    train: Data,
    test: Data | None = None,
    alphas: Sequence[float] | np.ndarray | None = None,
    path: InterpolationPath = "linear",
    bn: BatchNormMode = "interpolate",
    loss_fn: LossFn | None = F.cross_entropy,
    batch_loss: BatchLossFn | None = None,
    model: nn.Module | None = None,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    distributed: Distributed = "auto",
    presharded: bool = False,
) -> InterpolationResult:
    r"""Keskar et al.'s parametric plot: :math:`f(\alpha x_{LB} + (1 - \alpha) x_{SB})`.

    The loss and accuracy on the training and test sets along the line from the
    small-batch minimizer (:math:`\alpha = 0`) through the large-batch one
    (:math:`\alpha = 1`), by default at 25 points of :math:`\alpha \in [-1, 2]`
    (Keskar et al., ICLR 2017, Fig. 3), or along the curvilinear path
    :math:`\cos(\frac{\pi\alpha}{2}) x_{SB} + \sin(\frac{\pi\alpha}{2}) x_{LB}`
    (their Appendix D) with ``path="curvilinear"``. Models are evaluated in ``eval()``
    mode. This is :func:`interpolate_checkpoints` with the start and end named after the
    paper; see it for the arguments.

    Returns:
        An :class:`InterpolationResult`.

    Raises:
        ValueError: As :func:`interpolate_checkpoints`.

    Examples:
        >>> torch.manual_seed(0) and None
        >>> sb, lb = nn.Linear(4, 3), nn.Linear(4, 3)
        >>> X, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
        >>> res = parametric_plot(sb, lb, train=(X, y), test=(X[:10], y[:10]))
        >>> len(res.alphas), res.test_loss is not None, res.evaluations
        (25, True, 50)
    """
    return interpolate_checkpoints(
        model_sb,
        model_lb,
        train=train,
        test=test,
        model=model,
        alphas=alphas,
        path=path,
        bn=bn,
        loss_fn=loss_fn,
        batch_loss=batch_loss,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        distributed=distributed,
        presharded=presharded,
    )
