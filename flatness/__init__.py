"""flatness: sharpness and minima analysis for PyTorch.

Score checkpoints with the Hessian's top eigenvalues, its trace and spectral density,
all computed from Hessian-vector products over a fixed data set, on any device; with
Keskar et al.'s epsilon-sharpness and reparametrization-aware sharpness measures; and
with loss landscapes and the gradient noise scale. Sweeps of checkpoints are scored
into a resumable results store (:func:`score`, :func:`load_results`).

Examples:
    >>> import torch, flatness as fl
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> obj = fl.Objective(net, (torch.randn(64, 4), torch.randint(0, 3, (64,))))
    >>> eig = fl.hessian_eigenvalues(obj, k=2, seed=0)
    >>> eig.all_converged
    True
"""

from flatness import zoo
from flatness.batchnorm import BatchNormCheck, batchnorm_check, recompute_batchnorm
from flatness.curvature import (
    DenseOperator,
    DensityResult,
    EigenResult,
    HessianOperator,
    HessianOptions,
    Objective,
    SecondOrderError,
    SymmetricOperator,
    Target,
    TraceResult,
    as_operator,
    check_piecewise_linear,
    exact_hessian_trace,
    hessian_eigenvalues,
    hessian_trace,
    hutchinson_trace,
    hutchpp_trace,
    operator_for,
    power_iteration,
    spectral_density,
    to_scipy,
)
from flatness.dataset import BatchData, coerce_data
from flatness.losses import (
    CausalLMLoss,
    SequenceClassificationLoss,
    WeightedBatchLoss,
    causal_lm_loss,
    sequence_classification_loss,
)
from flatness.pipeline import (
    CheckpointError,
    Manifest,
    ManifestError,
    MeasureValue,
    ResultsStore,
    RunSpec,
    ScoreSummary,
    export_results,
    load_checkpoint,
    load_curves,
    load_results,
    load_runs,
    read_manifest,
    register_measure,
    score,
)
from flatness.pipeline.readers import load_tracks
from flatness.results import Result
from flatness.sharpness import (
    KESKAR_EPS,
    AdaptiveSharpnessResult,
    AverageSharpnessResult,
    InterpolationResult,
    KeskarResult,
    LandscapeResult,
    NoiseScaleResult,
    PacBayesFlatnessResult,
    adaptive_sharpness,
    average_sharpness,
    gradient_noise_scale,
    interpolate_checkpoints,
    keskar_sharpness,
    loss_landscape_2d,
    pacbayes_flatness,
    pacbayes_mag_flatness,
    parametric_plot,
    random_subspace,
)
from flatness.tracking import Tracker
from flatness.zoo import (
    Dataset,
    TrainConfig,
    TrainResult,
    build_network,
    load_dataset,
    train_network,
    train_sweep,
)

__version__ = "0.1.0"

__all__ = [
    # the objective and its operators
    "DenseOperator",
    "HessianOperator",
    "HessianOptions",
    "Objective",
    "SecondOrderError",
    "SymmetricOperator",
    "Target",
    "as_operator",
    "operator_for",
    "to_scipy",
    # losses of a batch (Hugging Face models, language models' token means)
    "CausalLMLoss",
    "SequenceClassificationLoss",
    "WeightedBatchLoss",
    "causal_lm_loss",
    "sequence_classification_loss",
    # spectrum
    "EigenResult",
    "hessian_eigenvalues",
    "power_iteration",
    # trace
    "TraceResult",
    "check_piecewise_linear",
    "exact_hessian_trace",
    "hessian_trace",
    "hutchinson_trace",
    "hutchpp_trace",
    # density
    "DensityResult",
    "spectral_density",
    # sharpness
    "KESKAR_EPS",
    "KeskarResult",
    "keskar_sharpness",
    "random_subspace",
    "AdaptiveSharpnessResult",
    "AverageSharpnessResult",
    "PacBayesFlatnessResult",
    "adaptive_sharpness",
    "average_sharpness",
    "pacbayes_flatness",
    "pacbayes_mag_flatness",
    # landscapes and the gradient noise scale
    "InterpolationResult",
    "LandscapeResult",
    "NoiseScaleResult",
    "gradient_noise_scale",
    "interpolate_checkpoints",
    "loss_landscape_2d",
    "parametric_plot",
    # BatchNorm running statistics (stale ones are said; recomputed on demand)
    "BatchNormCheck",
    "batchnorm_check",
    "recompute_batchnorm",
    # scoring checkpoints into a results store
    "CheckpointError",
    "Manifest",
    "ManifestError",
    "MeasureValue",
    "ResultsStore",
    "RunSpec",
    "ScoreSummary",
    "export_results",
    "load_checkpoint",
    "load_curves",
    "load_results",
    "load_runs",
    "read_manifest",
    "register_measure",
    "score",
    # sharpness during training
    "Tracker",
    "load_tracks",
    # built-in data, networks and training
    "BatchData",
    "Dataset",
    "coerce_data",
    "TrainConfig",
    "TrainResult",
    "build_network",
    "load_dataset",
    "train_network",
    "train_sweep",
    "zoo",
    # torch.distributed (imported on first use: flatness.distributed.launched_group())
    "distributed",
    # comparison reports (imported on first use: flatness.report.build(df, out))
    "report",
    # studies (imported on first use: flatness.study.run_study, flatness.studies.get_study)
    "studies",
    "study",
    # results
    "Result",
    "__version__",
]


def __getattr__(name: str) -> object:
    # ``flatness.report`` pulls in matplotlib and seaborn, and the studies and
    # ``flatness.demo`` the whole pipeline; import them only when asked for.
    if name in ("report", "demo", "study", "studies", "distributed"):
        import importlib

        return importlib.import_module(f"flatness.{name}")
    raise AttributeError(f"module 'flatness' has no attribute {name!r}")
