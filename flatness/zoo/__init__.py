"""The zoo: built-in data sets, reference networks and training.

The zoo feeds checkpoints to the rest of the toolkit and knows nothing about
curvature: it generates data offline (MNIST-1D, scikit-learn's digits), builds
Keskar et al.'s reference networks at small scale (F1, C1) and trains them into
checkpoints with metadata plus a manifest ready for ``flatness score``.
"""

from flatness.dataset import Dataset
from flatness.evaluation import evaluate
from flatness.zoo.config import TrainConfig, resolve_batch_size
from flatness.zoo.data import (
    cache_dir,
    dataset_names,
    digits,
    load_dataset,
    mnist1d,
    register_dataset,
)
from flatness.zoo.factories import import_factory
from flatness.zoo.manifests import manifest_document, write_manifest
from flatness.zoo.networks import (
    MLP,
    ConvNet,
    build_network,
    load_network_factory,
    network_names,
    register_network,
)
from flatness.zoo.sweep import (
    SweepResult,
    SweepRun,
    SweepSpec,
    load_sweep,
    parse_sweep,
    sweep_from_batch_sizes,
    train_sweep,
)
from flatness.zoo.train import TrainResult, train_network

__all__ = [
    # networks
    "MLP",
    "ConvNet",
    # data
    "Dataset",
    # training
    "SweepResult",
    "SweepRun",
    "SweepSpec",
    "TrainConfig",
    "TrainResult",
    "build_network",
    "cache_dir",
    "dataset_names",
    "digits",
    "evaluate",
    # factories and manifests
    "import_factory",
    "load_dataset",
    "load_network_factory",
    "load_sweep",
    "manifest_document",
    "mnist1d",
    "network_names",
    "parse_sweep",
    "register_dataset",
    "register_network",
    "resolve_batch_size",
    "sweep_from_batch_sizes",
    "train_network",
    "train_sweep",
    "write_manifest",
]
