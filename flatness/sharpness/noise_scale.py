r"""The gradient noise scale :math:`B_\mathrm{simple}` of McCandlish et al. (2018).

McCandlish, Kaplan, Amodei & the OpenAI Dota Team ("An Empirical Model of Large-Batch
Training", arXiv:1812.06162, 2018) predict the largest useful batch size from the ratio
of the gradient noise to the gradient signal,

.. math::

    B_\mathrm{simple} = \frac{\operatorname{tr}(\Sigma)}{\lVert G \rVert^2}, \qquad
    G = \mathbb E_i[\nabla \ell_i(\theta)], \quad
    \Sigma = \operatorname{Cov}_i[\nabla \ell_i(\theta)],

with :math:`\ell_i` the loss of one example. A batch of :math:`B` examples has gradient
noise :math:`\operatorname{tr}(\Sigma)/B`, so :math:`B_\mathrm{simple}` is the batch
size at which noise and signal are of equal size.

Both terms are estimated from *units*: single examples (``method="examples"``,
:math:`n_u = 1`) or the objective's batches (``method="batches"``, :math:`n_u` the batch
size), with mean gradients :math:`g_u`, :math:`K` units and :math:`N = \sum_u n_u`
examples:

.. math::

    \bar g = \frac1N \sum_u n_u g_u, \qquad
    \widehat{\operatorname{tr}\Sigma} = \frac{1}{K - 1} \sum_u n_u \lVert g_u - \bar g\rVert^2,
    \qquad
    \widehat{\lVert G\rVert^2} = \lVert \bar g \rVert^2
        - \frac{\widehat{\operatorname{tr}\Sigma}}{N}.

Both are unbiased when each :math:`g_u` averages :math:`n_u` independent examples
(:math:`\mathbb E[n_u \lVert g_u - \bar g\rVert^2] = (1 - n_u/N)\operatorname{tr}\Sigma`).
The plug-in :math:`\lVert \bar g\rVert^2` is biased upward by
:math:`\operatorname{tr}(\Sigma)/N`, hence the correction. For equal batch sizes
:math:`b` this is exactly McCandlish et al.'s unbiased pair (their App. A.1) with
:math:`B_\mathrm{small} = b` and :math:`B_\mathrm{big} = N`:
:math:`\widehat{\lVert G\rVert^2} = (B_\mathrm{big}\lVert G_{B_\mathrm{big}}\rVert^2
- B_\mathrm{small}\lVert G_{B_\mathrm{small}}\rVert^2)/(B_\mathrm{big} - B_\mathrm{small})`
and :math:`\widehat{\operatorname{tr}\Sigma} = (\lVert G_{B_\mathrm{small}}\rVert^2 -
\lVert G_{B_\mathrm{big}}\rVert^2)/(1/B_\mathrm{small} - 1/B_\mathrm{big})`, where
:math:`\lVert G_{B_\mathrm{small}}\rVert^2` is averaged over the batches. The ratio
:math:`\hat B = \widehat{\operatorname{tr}\Sigma}/\widehat{\lVert G\rVert^2}` is
consistent (biased only at order :math:`1/N`).

Standard errors come from a delete-a-group jackknife: the units are split at random
(seeded) into ``groups`` groups, every estimate is recomputed with one group left out,
and :math:`\mathrm{se}^2 = \frac{m-1}{m}\sum_k (\hat\theta_{(k)} - \bar\theta)^2` over
the :math:`m` groups. Only per-group sums are kept (``groups`` vectors of the parameter
dimension), never all per-example gradients.

Under a process group (a data-parallel objective) each rank takes the gradients of its
own units at their global positions, so the seeded split into groups is one process's,
and the per-group sums are summed over the ranks
(:mod:`flatness.sharpness.noise_statistics` says what is reduced): the result is one
process's on all the data. With ``method="batches"`` the units are the objective's
batches on each rank: the same as one process's in training mode (whole batches are
shared out) and wherever the shards' boundaries fall between batches; a batch that an
evaluation-mode objective cuts at a shard boundary counts as two smaller units.

It accepts a non-deterministic objective (:mod:`flatness.sharpness.checks`): with
``method="batches"`` the dropout masks of a training-mode objective are part of the
training gradient noise it measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias, get_args

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

from flatness.curvature.objective import Batch, Objective
from flatness.results import Meter, Record, finite_or_none, format_float, gradient_equivalents
from flatness.sharpness.checks import check_integer
from flatness.sharpness.contract import NoConvergenceTest, SharpnessResult
from flatness.sharpness.noise_statistics import GroupAccumulator, GroupSums, jackknife
from flatness.sharpness.ranks import block_start, rank_of

__all__ = ["NoiseScaleMethod", "NoiseScaleResult", "gradient_noise_scale"]

NoiseScaleMethod: TypeAlias = Literal["examples", "batches"]
"""The units gradients are taken over: single examples or the objective's batches."""

NOISE_SCALE_METHODS: tuple[NoiseScaleMethod, ...] = get_args(NoiseScaleMethod)
"""The values :func:`gradient_noise_scale` accepts for ``method``."""


@dataclass(frozen=True, eq=False)
class NoiseScaleResult(NoConvergenceTest, SharpnessResult):
    """The gradient noise scale with its two ingredients and their error bars.

    Besides the fields below it has the result contract's names: ``value`` (an alias
    of ``b_simple``), ``stderr`` (of ``b_simple_stderr``), ``converged`` (``True``: no
    iteration), ``evaluations`` (0), ``gradients`` (``num_gradients``), ``matvecs``
    (0), ``gradient_equivalents`` and ``settings``. Its store rows are the headline
    and the two ingredients (:meth:`records`).

    Attributes:
        b_simple: :math:`\\widehat{\\operatorname{tr}\\Sigma}/\\widehat{\\lVert G\\rVert^2}`
            (``inf`` when the unbiased :math:`\\lVert G\\rVert^2` estimate is not positive:
            the gradient is not resolved above the noise).
        b_simple_stderr: Its jackknife standard error (``nan`` when unavailable).
        trace_cov: :math:`\\widehat{\\operatorname{tr}\\Sigma}`, the per-example gradient
            covariance trace.
        trace_cov_stderr: Its jackknife standard error.
        grad_norm_sq: The unbiased :math:`\\widehat{\\lVert G\\rVert^2}`.
        grad_norm_sq_stderr: Its jackknife standard error.
        grad_norm_sq_biased: The plug-in :math:`\\lVert\\bar g\\rVert^2` (the squared norm
            of the objective's full gradient), biased upward by
            :math:`\\operatorname{tr}(\\Sigma)/N`.
        method: ``"examples"`` or ``"batches"``.
        num_gradients: Number of unit gradients (examples or batches) computed.
        num_examples: Number of examples :math:`N`.
        mean_batch_size: Mean examples per unit (1 for ``"examples"``).
        groups: Jackknife groups used.
        seed: Seed of the random split into groups.
        seconds: Wall-clock seconds.
        chunk_size: Examples per vectorized chunk (memory and speed only).
        vectorize: Whether per-example gradients were vectorized with ``vmap``.
    """

    setting_fields: ClassVar[tuple[str, ...]] = (
        "method",
        "chunk_size",
        "groups",
        "vectorize",
        "seed",
    )

    b_simple: float
    b_simple_stderr: float
    trace_cov: float
    trace_cov_stderr: float
    grad_norm_sq: float
    grad_norm_sq_stderr: float
    grad_norm_sq_biased: float
    method: NoiseScaleMethod
    num_gradients: int
    num_examples: int
    mean_batch_size: float
    groups: int
    seed: int
    seconds: float
    chunk_size: int = 128
    vectorize: bool = True

    @property
    def value(self) -> float:
        """The headline :math:`B_\\mathrm{simple}`: an alias of :attr:`b_simple`."""
        return self.b_simple

    @property
    def stderr(self) -> float:
        """Its standard error: an alias of :attr:`b_simple_stderr`."""
        return self.b_simple_stderr

    @property
    def evaluations(self) -> int:
        """Loss evaluations without a gradient: none."""
        return 0

    @property
    def gradients(self) -> int:
        """Gradient evaluations: one per unit (example or batch), ``num_gradients``."""
        return self.num_gradients

    @property
    def gradient_equivalents(self) -> float:
        """The cost in full gradients: 1, the units together cover the data once.

        Nominal: per-example gradients by ``vmap`` cost more than one batched gradient
        in practice.
        """
        return gradient_equivalents(gradients=1)

    def records(self) -> list[Record]:
        """The rows this result contributes to the results store.

        Returns:
            Three rows with standard errors and no convergence flag: the headline
            :math:`B_\\mathrm{simple}` (component ``""``), ``"trace_cov"`` and
            ``"grad_norm_sq"``.
        """
        return [
            Record("", self.b_simple, finite_or_none(self.b_simple_stderr), "stderr"),
            Record("trace_cov", self.trace_cov, finite_or_none(self.trace_cov_stderr), "stderr"),
            Record(
                "grad_norm_sq",
                self.grad_norm_sq,
                finite_or_none(self.grad_norm_sq_stderr),
                "stderr",
            ),
        ]

    def __repr__(self) -> str:
        return (
            f"NoiseScaleResult(b_simple={format_float(self.b_simple)} "
            f"± {format_float(self.b_simple_stderr, 3)}, "
            f"trace_cov={format_float(self.trace_cov)} "
            f"± {format_float(self.trace_cov_stderr, 3)}, "
            f"grad_norm_sq={format_float(self.grad_norm_sq)} "
            f"± {format_float(self.grad_norm_sq_stderr, 3)}, method={self.method!r}, "
            f"num_gradients={self.num_gradients}, groups={self.groups}, "
            f"seconds={format_float(self.seconds, 3)})"
        )


# ---------------------------------------------------------------- gradients
def _check_examples_method(obj: Objective) -> None:
    if obj.batch_loss is not None or obj.loss_fn is None:
        raise ValueError(
            "method='examples' needs per-example losses loss_fn(output, target), but the "
            "objective uses a custom batch_loss; use method='batches' instead"
        )
    if obj.train_mode:
        raise ValueError(
            "method='examples' is undefined for an objective with train_mode=True: "
            "BatchNorm in training mode normalizes with batch statistics, which couples "
            "the examples of a batch. Use method='batches' or an eval-mode objective."
        )
    for b in obj.batches:
        if not (
            isinstance(b, tuple | list)
            and len(b) == 2
            and isinstance(b[0], Tensor)
            and isinstance(b[1], Tensor)
        ):
            raise ValueError(
                "method='examples' needs (inputs, targets) tensor batches; got a batch of "
                f"type {type(b).__name__}. Use method='batches' for other batches."
            )


def _example_gradients(
    obj: Objective,
    chunk_size: int,
    vectorize: bool,
    consume: Callable[[Tensor, Tensor], None],
) -> None:
    """Feed ``(gradients (c, dim), ones (c,))`` chunks of per-example gradients."""
    names = [b.name for b in obj.blocks]
    params = {n: t.detach() for n, t in obj.unflatten(obj.theta0).items()}
    rest = {k: v for k, v in obj.state().items() if k not in params}
    model, loss_fn = obj.model, obj.loss_fn
    assert loss_fn is not None

    def loss_one(p: Mapping[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(model, {**rest, **p}, (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))
    was_training = model.training
    model.eval()
    try:
        for x, y in obj.batches:
            for lo in range(0, x.shape[0], chunk_size):
                xc, yc = x[lo : lo + chunk_size], y[lo : lo + chunk_size]
                c = xc.shape[0]
                if vectorize:
                    try:
                        g = per_example(params, xc, yc)
                    except Exception as err:
                        raise RuntimeError(
                            "per-example gradients with torch.func.vmap failed for this "
                            f"model ({type(err).__name__}: {err}); pass vectorize=False "
                            "for a loop over examples, or use method='batches'"
                        ) from err
                    flat = torch.cat([g[n].reshape(c, -1) for n in names], dim=1)
                else:
                    flat = torch.stack(
                        [_batch_gradient(obj, (xc[i : i + 1], yc[i : i + 1])) for i in range(c)]
                    )
                consume(flat.detach(), torch.ones(c, dtype=torch.float64))
    finally:
        model.train(was_training)


def _batch_gradient(obj: Objective, batch: Batch) -> Tensor:
    leaves = obj.leaves()
    loss = obj.batch_mean_loss(leaves, batch)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return obj.flatten(
        [
            torch.zeros_like(t) if g is None else g
            for g, t in zip(grads, leaves.values(), strict=True)
        ]
    ).detach()


def _group_sums(
    obj: Objective,
    method: NoiseScaleMethod,
    num_units: int,
    m: int,
    *,
    chunk_size: int,
    vectorize: bool,
    seed: int,
) -> GroupSums:
    """The unit gradients, accumulated into ``m`` randomly (seeded) assigned groups.

    Under a process group each rank accumulates its own units at their global
    positions and the groups are summed over the ranks
    (:meth:`~flatness.sharpness.noise_statistics.GroupAccumulator.combine`).
    """
    rank, world = rank_of(obj)
    local = obj.local_examples if method == "examples" else len(obj.batches)
    start = block_start(obj, local)[0] if world > 1 else 0
    work_dtype = obj.dtype if obj.dtype in (torch.float32, torch.float64) else torch.float32
    acc = GroupAccumulator(
        num_units, m, obj.dim, seed=seed, device=obj.device, dtype=work_dtype, start=start
    )
    if method == "examples":
        _example_gradients(obj, chunk_size, vectorize, acc.consume)
    else:
        for b, n in zip(obj.batches, obj.batch_weights, strict=True):  # examples or tokens
            sizes = torch.tensor([float(n)], dtype=torch.float64)
            acc.consume(_batch_gradient(obj, b)[None], sizes)
    if world > 1:
        acc.combine(obj.reduce, rank)
    return acc.sums()


def gradient_noise_scale(
    obj: Objective,
    *,
    method: NoiseScaleMethod = "examples",
    chunk_size: int = 128,
    groups: int = 20,
    vectorize: bool = True,
    seed: int = 0,
) -> NoiseScaleResult:
    r"""Estimate the gradient noise scale :math:`B_\mathrm{simple}` at :math:`\theta_0`.

    Args:
        obj: The objective; its examples are taken as a sample of the data
            distribution and its :math:`\theta_0` is where gradients are taken.
        method: ``"examples"``: per-example gradients (``torch.func.vmap`` of
            ``torch.func.grad`` over chunks of examples; needs ``(x, y)`` batches, a
            ``loss_fn`` and an eval-mode objective). ``"batches"``: the mean gradient of
            each of the objective's batches (works with any objective, needs at least two
            batches; batches should be random samples, i.e. the data in random order).
            A batch weighs what the objective weighs it by (``obj.batch_weights``: its
            examples, or the tokens of a token-mean loss, when :math:`\bar g` is the
            objective's gradient and :math:`B_\mathrm{simple}` counts tokens).
        chunk_size: Examples per vectorized chunk (memory grows as
            ``chunk_size * obj.dim``).
        groups: Jackknife groups for the standard errors (at most one per unit). One
            running sum of the parameter dimension is kept per group, so memory grows as
            ``groups * obj.dim``.
        vectorize: Use ``vmap``; ``False`` loops over examples (for models that
            ``vmap`` cannot trace).
        seed: Seed of the random split of the units into jackknife groups.

    Returns:
        A :class:`NoiseScaleResult`.

    Raises:
        ValueError: For an unknown ``method``, bad ``chunk_size``/``groups``, fewer than
            two units, or ``method="examples"`` on an objective with a custom
            ``batch_loss`` or ``train_mode=True``.

    Examples:
        >>> from torch import nn
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> obj = Objective(net, (torch.randn(40, 3), torch.randint(0, 2, (40,))))
        >>> res = gradient_noise_scale(obj, seed=0)
        >>> res.num_gradients, res.trace_cov > 0, res.groups
        (40, True, 20)
        >>> g = obj.gradient()
        >>> abs(res.grad_norm_sq_biased - float(g @ g)) < 1e-5
        True
    """
    if method not in NOISE_SCALE_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {NOISE_SCALE_METHODS}")
    check_integer("chunk_size", chunk_size, minimum=1)
    check_integer("groups", groups, minimum=2)
    if method == "examples":
        _check_examples_method(obj)
        num_units = obj.num_examples
    else:
        num_units = block_start(obj, len(obj.batches))[1]
    if num_units < 2:
        raise ValueError(
            f"method={method!r} needs at least two {method} to estimate a covariance, got "
            f"{num_units}"
            + (" (give the Objective a smaller batch_size)" if method == "batches" else "")
        )

    m = min(groups, num_units)
    with Meter() as meter:
        sums = _group_sums(
            obj, method, num_units, m, chunk_size=chunk_size, vectorize=vectorize, seed=seed
        )
        trace, g2, b, plug_in = sums.estimate(np.ones(m, dtype=bool))
        se_trace, se_g2, se_b = jackknife(sums)
    if not math.isfinite(b):
        se_b = math.nan
    return NoiseScaleResult(
        b_simple=b,
        b_simple_stderr=se_b,
        trace_cov=trace,
        trace_cov_stderr=se_trace,
        grad_norm_sq=g2,
        grad_norm_sq_stderr=se_g2,
        grad_norm_sq_biased=plug_in,
        method=method,
        num_gradients=num_units,
        num_examples=obj.num_examples,
        mean_batch_size=obj.num_examples / num_units,
        groups=m,
        seed=seed,
        seconds=meter.seconds,
        chunk_size=chunk_size,
        vectorize=bool(vectorize),
    )
