"""The empirical loss that every curvature and sharpness measure is taken of.

An :class:`Objective` is the mean loss of a model over a fixed, deterministic set of
examples, seen as a function of a flat parameter vector :math:`\\theta`:

.. math::

    f(\\theta) = \\frac{1}{N} \\sum_{b} n_b \\, \\bar\\ell_b(\\theta),

where :math:`\\bar\\ell_b` is the mean loss of batch :math:`b` with :math:`n_b`
examples. Weighting each batch by its size makes the value, gradient and
Hessian-vector products independent of how the examples are batched (loss-landscape
summed batch means without this weighting and so scaled its eigenvalues).

A loss may declare the weight of a batch (:class:`~flatness.losses.WeightedBatchLoss`,
e.g. the tokens of :data:`~flatness.losses.causal_lm_loss`); :math:`n_b` is then that
weight and :math:`f` the mean over tokens. Batches stay where the data put them and
move to the device one at a time (:class:`~flatness.curvature.batches.DeviceBatches`).
Second-order passes (``batch_mean_loss(..., second_order=True)``) route attention
through the math kernel (:mod:`flatness.curvature.attention`); float16/bfloat16 models
are analysed in float32 unless asked otherwise (:mod:`flatness.curvature.precision`).

The model is called functionally with :func:`torch.func.functional_call`: algorithms
never mutate it, and its parameters, buffers and training mode are left as found.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from flatness.curvature.attention import (
    SECOND_ORDER_ATTENTION,
    calls_sdpa,
    second_order_attention,
)
from flatness.curvature.batches import (
    Batch,
    DeviceBatches,
    batch_size_of,
    move_batch,
    require_fixed_order,
    split_batches,
)
from flatness.curvature.determinism import require_same_loss
from flatness.curvature.double_backward import second_derivative, zeros_for_none
from flatness.curvature.parameters import (
    ParameterBlock,
    ParamSelector,
    flatten,
    parameter_blocks,
    require_finite,
    select_parameter_names,
    unflatten,
)
from flatness.curvature.precision import (
    LOW_PRECISION,
    analysis_dtype,
    model_dtype,
    precision_warning,
)
from flatness.curvature.shards import objective_data
from flatness.distributed.group import ProcessGroupInfo, all_reduce_sum
from flatness.distributed.sharding import Distributed, resolve_group
from flatness.losses import BatchLossFn, LossFn, default_batch_loss

__all__ = [
    "Batch",
    "BatchLossFn",
    "LossFn",
    "Objective",
    "ParamSelector",
    "ParameterBlock",
    "batch_size_of",
    "move_batch",
    "second_derivative",
    "split_batches",
]


def _loss_name(loss: Any) -> str:
    """A loss's name that is the same in every process (no address in it)."""
    return str(getattr(loss, "__qualname__", type(loss).__qualname__))


class Objective:
    """The mean loss of a model over a fixed data set, as a function of flat parameters.

    Args:
        model: The network. It is never modified: it is evaluated with
            :func:`torch.func.functional_call` on copies of the parameters.
        data: An ``(inputs, targets)`` tensor pair (split into batches of
            ``batch_size``), a list of batches (pairs, or dicts of model inputs such as
            a Hugging Face tokenizer's output), or a DataLoader (iterated once; its
            batches are kept, so a shuffling loader is read in one fixed order, which
            does not change the mean in eval mode; in training mode it is refused).
            Batches stay where they are (cast to ``dtype`` there) and move to
            ``device`` one at a time, when used.
        loss_fn: ``loss_fn(output, target)`` returning the *mean* loss of a batch; the
            output's ``.logits`` when the model returns a Hugging Face ``ModelOutput``,
            the targets a dict batch's ``labels``. ``None`` with dict batches: the
            model's own ``.loss`` (see :func:`~flatness.losses.default_batch_loss`).
        batch_loss: Instead of ``loss_fn``, a hook ``batch_loss(model_fn, batch)``
            returning the mean loss of a batch (e.g. :data:`flatness.causal_lm_loss`).
            ``model_fn(*args, **kwargs)`` calls the model with the parameters being
            evaluated. A hook with a ``weight(batch)`` method (the tokens a language
            model's loss averages over) weights each batch by it, so that the value
            is the mean over all tokens.
        params: Which parameters are the variables: all trainable ones (``None``), a
            name or module prefix (``"layers.2"``), a list of those, or a predicate
            ``(name, parameter) -> bool``. The others are held fixed; this is how
            per-layer Hessians are taken.
        train_mode: Evaluate the model in training mode (BatchNorm batch statistics,
            dropout on). Off by default; the choice is recorded in :attr:`settings`.
        batch_size: Batch size used to split a tensor pair (ignored for batches).
        device: Where to evaluate (default: the model's device).
        dtype: Floating dtype for parameters, buffers and float inputs (default: the
            model's, but float32 for a float16/bfloat16 model, with a warning and
            ``settings["model_dtype"]``). ``torch.float64`` gives reference-quality
            results; an explicit float16/bfloat16 warns with the loss's measured
            relative error against float32 on the first batch.
        distributed: The process group to be data-parallel over: ``"auto"`` (the
            world under ``torchrun``; none in one process), ``None``/``False``,
            ``True`` or a group. Every rank passes the same data and keeps its block
            of the examples (:mod:`flatness.curvature.shards`): :attr:`num_examples`
            counts all ranks', :attr:`local_examples` this rank's, and :meth:`reduce`
            completes every weighted sum over :attr:`batches`.
        presharded: Each rank was given its own part already (a ``DistributedSampler``).

    Raises:
        ValueError: For a non-positive ``batch_size``, a parameter selector that
            matches nothing, training mode with a shuffling loader, an empty data set
            (or one whose batches all weigh 0), or parameters holding NaN or Inf;
            under a group, an empty shard or ranks with another model or data (named).
        TypeError: For data of another kind (see :func:`split_batches`).

    Examples:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> X, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
        >>> obj = Objective(net, (X, y), batch_size=4)
        >>> obj.dim, obj.num_examples, len(obj.batches)
        (26, 10, 3)
        >>> bool(torch.isclose(obj.value(), F.cross_entropy(net(X), y)))
        True
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        loss_fn: LossFn | None = F.cross_entropy,
        *,
        batch_loss: BatchLossFn | None = None,
        params: ParamSelector = None,
        train_mode: bool = False,
        batch_size: int = 1024,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        distributed: Distributed = "auto",
        presharded: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model
        self.loss_fn = loss_fn
        self.batch_loss = batch_loss
        self.train_mode = bool(train_mode)
        self._determinism: tuple[float, float] | None = None
        self._attention: str | bool | None = False  # False: not probed yet
        first = next(iter(model.parameters()), None)
        self.device = torch.device(
            device if device is not None else (first.device if first is not None else "cpu")
        )
        self.model_dtype = model_dtype(model)
        self.dtype = analysis_dtype(self.model_dtype, dtype)

        names = select_parameter_names(model, params)
        all_params = dict(model.named_parameters())
        self.param_names: tuple[str, ...] = tuple(names)
        self._fixed: dict[str, Tensor] = {
            n: self._cast(p) for n, p in all_params.items() if n not in set(names)
        }
        self._buffers: dict[str, Tensor] = {n: self._cast(b) for n, b in model.named_buffers()}
        self.blocks: tuple[ParameterBlock, ...] = parameter_blocks(model, names)
        self.dim = sum(b.numel for b in self.blocks)
        self.theta0: Tensor = torch.cat([self._cast(all_params[n]).reshape(-1) for n in names])

        require_fixed_order(data, self.train_mode)
        given = split_batches(data, batch_size)
        #: the process group the sums over :attr:`batches` are reduced over, or ``None``
        self.group: ProcessGroupInfo | None = resolve_group(distributed)
        self.presharded = bool(presharded)
        shard = objective_data(
            given,
            self.dtype,
            batch_loss,
            self.group,
            presharded=self.presharded,
            whole_batches=self.train_mode,
            model=[self.theta0, *self._fixed.values(), *self._buffers.values()],
            setup=repr(
                (self.param_names, self.train_mode, *map(_loss_name, (loss_fn, batch_loss)))
            ),
        )
        weighed = shard.weighed
        self.batches: DeviceBatches = DeviceBatches(weighed.batches, self.device)
        self.batch_sizes: tuple[int, ...] = weighed.sizes
        self.num_examples = shard.num_examples
        self.local_examples = shard.local_examples
        #: what each batch mean counts: its examples, or the weight the loss declares
        self.batch_weights: tuple[int, ...] = weighed.weights
        self.weights: tuple[float, ...] = tuple(c / shard.total_weight for c in self.batch_weights)
        self.weighted_by: str = weighed.unit
        require_finite(self.blocks, self.theta0)
        self.precision_error: float | None = None
        if dtype is not None and dtype in LOW_PRECISION:
            self.precision_error = self._measure_precision(given[0])

    # ------------------------------------------------------------------ helpers
    def _cast(self, t: Tensor) -> Tensor:
        t = t.detach()
        if t.is_floating_point():
            return t.to(device=self.device, dtype=self.dtype)
        return t.to(device=self.device)

    def _measure_precision(self, batch: Batch) -> float:
        """Warn with the first batch's loss in ``dtype`` against float32 (the batch as given)."""
        reference = Objective(
            self.model,
            [batch],
            self.loss_fn,
            batch_loss=self.batch_loss,
            params=list(self.param_names),
            train_mode=self.train_mode,
            device=self.device,
            dtype=torch.float32,
            distributed=None,
        ).value()
        with torch.no_grad():
            low = self.batch_mean_loss(self.theta0, self.batches[0])
        return precision_warning(self.dtype, float(low), float(reference))

    @property
    def attention(self) -> str | None:
        """The attention kernel of second-order passes, when the model calls one.

        ``"math"`` when the model's forward calls
        :func:`~torch.nn.functional.scaled_dot_product_attention` (second-order passes
        route it to the math kernel, see :mod:`flatness.curvature.attention`), ``None``
        when it makes no such call. Found out once, by one forward of the first batch
        with gradients on (:func:`~flatness.curvature.attention.calls_sdpa`).
        """
        if self._attention is False:
            leaves = self.leaves()
            routed = calls_sdpa(lambda: self.batch_mean_loss(leaves, self.batches[0]))
            self._attention = SECOND_ORDER_ATTENTION if routed else None
        return self._attention if isinstance(self._attention, str) else None

    @property
    def settings(self) -> dict[str, Any]:
        """What defines this objective, for the record kept with every result.

        Besides the sizes, the parameters, the mode, the device and the dtype:
        ``model_dtype`` (the model's own floating dtype), ``weighted_by``
        (``"examples"``, or ``"tokens"`` for a token-mean loss) and, for an explicit
        float16/bfloat16 ``dtype``, ``precision_error`` (the relative error of the
        first batch's loss against float32).
        """
        out: dict[str, Any] = {
            "num_examples": self.num_examples,
            "num_batches": len(self.batches),
            "num_params": self.dim,
            "params": "all"
            if len(self.param_names) == len([p for p in self.model.parameters() if p.requires_grad])
            else list(self.param_names),
            "train_mode": self.train_mode,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "model_dtype": None
            if self.model_dtype is None
            else str(self.model_dtype).replace("torch.", ""),
            "weighted_by": self.weighted_by,
        }
        if self.precision_error is not None:
            out["precision_error"] = self.precision_error
        if self.group is not None:
            out["world_size"] = self.group.world_size
        return out

    def reduce(self, partial: Tensor) -> Tensor:
        """Sum a finished weighted partial sum over :attr:`batches` over the ranks, in place.

        Returns:
            ``partial``, now the sum over the group's ranks (unchanged without a group).
        """
        return partial if self.group is None else all_reduce_sum(partial, self.group.group)

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Split a flat vector into named views shaped like the selected parameters.

        The split is one differentiable :func:`torch.split`, whose backward is a single
        concatenation, so gradients flow back to ``theta`` cheaply.

        Returns:
            ``{parameter name: view}`` (with ``theta``'s leading dimensions).

        Raises:
            ValueError: If ``theta``'s last dimension is not ``dim``.
        """
        return unflatten(self.blocks, theta)

    def flatten(self, tensors: Mapping[str, Tensor] | Sequence[Tensor]) -> Tensor:
        """Concatenate per-parameter tensors (by name or in order) into a flat vector.

        Returns:
            A vector of length ``dim``.
        """
        return flatten(self.blocks, tensors)

    def state(self, theta: Tensor | Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """All tensors for :func:`functional_call`: the variables, then the fixed rest.

        Args:
            theta: A flat vector, or the variables by name (default: θ₀).

        In training mode the buffers are cloned so that BatchNorm's running-statistics
        update cannot reach the model.

        Returns:
            ``{name: tensor}`` for every parameter and buffer of the model.
        """
        theta = self.theta0 if theta is None else theta
        variables = dict(theta) if isinstance(theta, Mapping) else self.unflatten(theta)
        buffers = (
            {n: b.clone() for n, b in self._buffers.items()} if self.train_mode else self._buffers
        )
        return {**self._fixed, **buffers, **variables}

    def leaves(self, theta: Tensor | None = None) -> dict[str, Tensor]:
        """Fresh leaf tensors for the variables, one per parameter.

        Returns:
            ``{parameter name: leaf}`` with ``requires_grad=True``, cloned from ``theta``
            (default: θ₀).
        """
        theta = (self.theta0 if theta is None else theta).detach()
        return {n: t.clone().requires_grad_(True) for n, t in self.unflatten(theta).items()}

    def model_fn(self, theta: Tensor | Mapping[str, Tensor] | None = None) -> Callable[..., Any]:
        """The model as a function of its parameters.

        Returns:
            A callable that runs the model with parameters ``theta`` (default: θ₀), in
            the objective's training or evaluation mode.
        """
        tensors = self.state(theta)
        model = self.model

        def call(*args: Any, **kwargs: Any) -> Any:
            was_training = model.training
            model.train(self.train_mode)
            try:
                return functional_call(model, tensors, args, kwargs)
            finally:
                model.train(was_training)

        return call

    def batch_mean_loss(
        self,
        theta: Tensor | Mapping[str, Tensor],
        batch: Batch,
        *,
        second_order: bool = False,
    ) -> Tensor:
        """Mean loss of one batch at ``theta``.

        Args:
            theta: A flat vector or the variables by name.
            batch: One batch (moved to the objective's device here if it is not there).
            second_order: The loss will be differentiated twice (a Hessian product):
                attention then runs through the math kernel, which supports double
                backward and forward-over-reverse (see
                :mod:`flatness.curvature.attention`). First-order work leaves it off
                and keeps the fused kernels.

        Returns:
            A 0-d tensor, differentiable in ``theta``.

        Raises:
            ValueError: If the loss is not a 0-d tensor, or for a batch the default
                loss cannot take (:func:`~flatness.losses.default_batch_loss`).
            TypeError: For a batch of a form the loss does not know.
        """
        fn = self.model_fn(theta)
        batch = move_batch(batch, self.device, None)
        if second_order:
            with second_order_attention():
                loss = self._loss(fn, batch)
        else:
            loss = self._loss(fn, batch)
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            what = self.batch_loss if self.batch_loss is not None else self.loss_fn
            name = getattr(what, "__name__", type(what).__name__)
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(
                f"the loss ({name}) returned {shape} for a batch, not a 0-d tensor: it must "
                "be the mean loss of the batch (use reduction='mean', or .mean() the "
                "per-example losses in batch_loss)"
            )
        return loss

    def _loss(self, fn: Callable[..., Any], batch: Batch) -> Tensor:
        if self.batch_loss is not None:
            return self.batch_loss(fn, batch)
        return default_batch_loss(fn, batch, self.loss_fn)

    # ------------------------------------------------------------- evaluations
    def value(self, theta: Tensor | None = None) -> Tensor:
        """The mean loss over all examples.

        Returns:
            :math:`f(\\theta)` as a 0-d tensor (default θ₀).
        """
        theta = self.theta0 if theta is None else theta
        with torch.no_grad():
            total = torch.zeros((), device=self.device, dtype=self.dtype)
            for w, b in zip(self.weights, self.batches, strict=True):
                total = total + w * self.batch_mean_loss(theta, b)
        return self.reduce(total)

    def value_and_gradient(self, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The mean loss and its gradient.

        Returns:
            :math:`f(\\theta)` (0-d) and :math:`\\nabla f(\\theta)` as a flat vector.
        """
        total = torch.zeros((), device=self.device, dtype=self.dtype)
        grad = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        for w, b in zip(self.weights, self.batches, strict=True):
            leaves = self.leaves(theta)
            loss = self.batch_mean_loss(leaves, b)
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            grad.add_(self.flatten(zeros_for_none(grads, leaves)), alpha=w)
            total = total + w * loss.detach()
        both = self.reduce(torch.cat([total.reshape(1), grad]))  # one collective
        return both[0], both[1:]

    def gradient(self, theta: Tensor | None = None) -> Tensor:
        """The gradient of the mean loss.

        Returns:
            :math:`\\nabla f(\\theta)` as a flat vector.
        """
        return self.value_and_gradient(theta)[1]

    def hvp(self, v: Tensor, theta: Tensor | None = None) -> Tensor:
        """One Hessian-vector product :math:`\\nabla^2 f(\\theta) v` by double backward.

        For many products use :class:`~flatness.curvature.hessian.HessianOperator`,
        which picks the fastest strategy and reuses work between products. Attention
        runs through the math kernel (``second_order=True``).

        Returns:
            The product as a flat vector.
        """
        out = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        v_parts = list(self.unflatten(v.to(device=self.device, dtype=self.dtype)).values())
        for w, b in zip(self.weights, self.batches, strict=True):
            leaves = self.leaves(theta)
            params = list(leaves.values())
            grads = torch.autograd.grad(
                self.batch_mean_loss(leaves, b, second_order=True),
                params,
                create_graph=True,
                allow_unused=True,
            )
            out.add_(self.flatten(second_derivative(grads, params, v_parts)), alpha=w)
        return self.reduce(out)

    def check_determinism(self, *, rtol: float | None = None) -> None:
        """Evaluate the first batch twice and raise if the two losses differ.

        A loss that changes between two evaluations at the same parameters (dropout
        left on, a model with random layers) makes every curvature estimate and every
        sharpness measure built on loss differences meaningless, so it is refused with
        the likely causes named (the sharpness measures call this too, through
        :func:`~flatness.sharpness.checks.require_deterministic`).

        θ₀ and the batches are fixed at construction, so the two losses are computed
        once per objective: a check that passed is remembered (as the two losses), and
        later calls, whatever their ``rtol``, are answered from them without running
        the model again.

        Args:
            rtol: Relative (and absolute) tolerance between the two losses (default
                ``1e-10`` in float64, else ``1e-5``).

        Raises:
            FloatingPointError: If the loss is NaN or infinite.
            RuntimeError: If the two evaluations disagree.
        """
        rtol = rtol if rtol is not None else (1e-10 if self.dtype == torch.float64 else 1e-5)
        if self._determinism is None:
            with torch.no_grad():
                first = self.batch_mean_loss(self.theta0, self.batches[0])
                second = self.batch_mean_loss(self.theta0, self.batches[0])
            pair = (first.item(), second.item())
        else:
            pair = self._determinism
        require_same_loss(*pair, rtol=rtol)
        self._determinism = pair

    def __repr__(self) -> str:
        return (
            f"Objective({type(self.model).__name__}, params={self.dim}, "
            f"examples={self.num_examples}, batches={len(self.batches)}, "
            f"train_mode={self.train_mode}, device={self.device}, "
            f"dtype={str(self.dtype).replace('torch.', '')})"
        )
