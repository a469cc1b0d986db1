"""Sharpness, flatness and landscape measures evaluated on an :class:`~flatness.Objective`.

Each measure is a plain function taking the objective (or models and data, for
landscapes) first and keyword-only settings after it, and returning a frozen result
dataclass that honours the result contract of :mod:`flatness.results` (``value``,
``stderr``, ``converged``, the cost, ``seconds``, ``settings``, ``records()``; see
:mod:`flatness.sharpness.contract` for what the sharpness results share). The choices
of the options are ``Literal`` types, exported here.
"""

from flatness.evaluation import mean_loss_and_accuracy
from flatness.sharpness.adaptive import AdaptiveSharpnessResult, adaptive_sharpness
from flatness.sharpness.average import AverageSharpnessResult, average_sharpness
from flatness.sharpness.checks import Norm, NormSpec
from flatness.sharpness.contract import SharpnessResult
from flatness.sharpness.interpolation import (
    BatchNormMode,
    Checkpoint,
    InterpolationPath,
    InterpolationResult,
    interpolate_checkpoints,
    parametric_plot,
)
from flatness.sharpness.jiang2019pacbayes import (
    Criterion,
    PacBayesFlatnessResult,
    pacbayes_flatness,
    pacbayes_mag_flatness,
)
from flatness.sharpness.keskar import (
    KESKAR_EPS,
    KeskarResult,
    Solver,
    Start,
    keskar_sharpness,
    random_subspace,
)
from flatness.sharpness.landscape import (
    LandscapeResult,
    filter_normalized_directions,
    loss_landscape_2d,
)
from flatness.sharpness.noise_scale import (
    NoiseScaleMethod,
    NoiseScaleResult,
    gradient_noise_scale,
)

__all__ = [
    # Keskar et al. (2017) epsilon-sharpness
    "KESKAR_EPS",
    "KeskarResult",
    "keskar_sharpness",
    "random_subspace",
    # reparametrization-aware measures
    "AdaptiveSharpnessResult",
    "AverageSharpnessResult",
    "PacBayesFlatnessResult",
    "adaptive_sharpness",
    "average_sharpness",
    "pacbayes_flatness",
    "pacbayes_mag_flatness",
    # landscapes
    "InterpolationResult",
    "LandscapeResult",
    "filter_normalized_directions",
    "interpolate_checkpoints",
    "loss_landscape_2d",
    "mean_loss_and_accuracy",
    "parametric_plot",
    # gradient noise scale
    "NoiseScaleResult",
    "gradient_noise_scale",
    # the results' common base and the option types
    "SharpnessResult",
    "BatchNormMode",
    "Checkpoint",
    "Criterion",
    "InterpolationPath",
    "NoiseScaleMethod",
    "Norm",
    "NormSpec",
    "Solver",
    "Start",
]
