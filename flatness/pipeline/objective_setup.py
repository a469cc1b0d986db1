"""From a manifest to the objective its measures are computed on.

A manifest names a model factory, a data set (built-in, a factory, or in-memory data
when the manifest is built in code) and ``[scoring]`` settings: the device, the
precision, the batch size and a fixed, seeded subset of the training examples. This
module turns those into the pieces :func:`flatness.score` uses for every checkpoint
(:func:`manifest_data`, :func:`model_builder`, :func:`scoring_device`,
:func:`training_subset`) and into the objective itself (:func:`scoring_objective`), so
a number computed on it can be set beside the stored ones.

Factories and plugins named by a manifest read from a file are imported with the
manifest's folder searched first (:mod:`flatness.factories`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flatness.batchnorm import recompute_batchnorm
from flatness.curvature.objective import Objective
from flatness.dataset import DataSplit, ScoringData, coerce_data, objective_data, split_examples
from flatness.factories import import_factory, import_plugin, is_factory_spec, search_folder
from flatness.pipeline.checkpoints import load_checkpoint, load_into
from flatness.pipeline.manifest import Manifest, manifest_from_dict, read_manifest
from flatness.pipeline.named_losses import ScoringLoss, resolve_loss
from flatness.zoo.data import load_dataset

__all__ = [
    "ManifestLike",
    "as_manifest",
    "import_plugins",
    "manifest_code",
    "manifest_data",
    "model_builder",
    "scoring_device",
    "manifest_folder",
    "scoring_dtype",
    "scoring_loss",
    "scoring_objective",
    "training_subset",
]

ManifestLike = Manifest | Mapping[str, Any] | str | os.PathLike[str]
"""What :func:`flatness.score` accepts as a manifest: a file, a parsed dictionary or a
:class:`~flatness.pipeline.manifest.Manifest`."""


def as_manifest(target: ManifestLike) -> Manifest:
    """The validated manifest ``target`` names.

    Args:
        target: A manifest file, a parsed manifest dictionary or a
            :class:`~flatness.pipeline.manifest.Manifest`.

    Returns:
        The manifest.

    Raises:
        TypeError: For anything else.
        ManifestError: If the manifest is invalid.
    """
    if isinstance(target, Manifest):
        return target
    if isinstance(target, Mapping):
        return manifest_from_dict(target)
    if isinstance(target, str | os.PathLike):
        return read_manifest(target)
    raise TypeError(
        f"score() takes a manifest path, a Manifest or a manifest dictionary, "
        f"not {type(target).__name__}"
    )


def manifest_folder(manifest: Manifest) -> Path | None:
    """The folder searched first for the modules a manifest names: the manifest's own.

    Returns:
        The manifest file's folder, or ``None`` for a manifest built in code.
    """
    return manifest.path.parent if manifest.path is not None else None


_folder = manifest_folder


def import_plugins(manifest: Manifest) -> None:
    """Import the modules the manifest's ``[scoring] plugins`` names (their code runs).

    Raises:
        ImportError: If one cannot be imported.
    """
    for name in manifest.scoring.get("plugins") or ():
        import_plugin(str(name), folder=_folder(manifest))


def manifest_code(manifest: Manifest) -> str | None:
    """One line naming the code a manifest runs: its factories and plugins.

    Only what the manifest names by a string (``"package.module:function"``, plugin
    modules) is listed: a built-in data set's name, or a callable put into a
    :class:`~flatness.pipeline.manifest.Manifest` in code, runs nothing the caller did
    not write.

    Returns:
        ``"<manifest> runs code: model factory ..., data factory ..., plugins ..."``, or
        ``None`` when it names no code.

    Examples:
        >>> man = Manifest("mypkg.models:build", "mnist1d", runs=(), scoring={"plugins": ["m"]})
        >>> manifest_code(man)
        'the manifest runs code: model factory mypkg.models:build, plugins m'
    """
    parts = []
    if isinstance(manifest.model_factory, str):
        parts.append(f"model factory {manifest.model_factory}")
    if isinstance(manifest.data, str) and ":" in manifest.data:
        parts.append(f"data factory {manifest.data}")
    plugins = [str(p) for p in manifest.scoring.get("plugins") or ()]
    if plugins:
        parts.append(f"plugins {', '.join(plugins)}")
    if not parts:
        return None
    where = manifest.path if manifest.path is not None else "the manifest"
    return f"{where} runs code: {', '.join(parts)}"


def manifest_data(manifest: Manifest) -> ScoringData:
    """The data set the manifest names.

    A data factory may return the forms of :mod:`flatness.dataset` (``(X, y)`` pairs of
    any dtype, dicts of tensors, lists of batches, map-style data sets); it is called
    with the manifest's folder first on ``sys.path``.

    Returns:
        A built-in data set, a data factory's, or the in-memory data of a manifest
        built in code.

    Raises:
        KeyError, ImportError, ValueError, TypeError: If the data set cannot be built
            (the message says why and names the factory).
    """
    data = manifest.data
    if isinstance(data, str) and is_factory_spec(data):
        factory = import_factory(data, kind="data factory", folder=_folder(manifest))
        with search_folder(_folder(manifest)):
            value = factory(**manifest.data_kwargs)
        return coerce_data(value, name=data, settings=manifest.data_kwargs)
    if isinstance(data, str):
        return load_dataset(data, **manifest.data_kwargs)
    return coerce_data(data, name="<in-memory data>", settings=manifest.data_kwargs)


def scoring_loss(manifest: Manifest) -> ScoringLoss:
    """The loss ``[scoring] loss`` or ``batch_loss`` names (default: cross-entropy).

    Returns:
        The loss, its function imported (the manifest's folder searched first).

    Raises:
        ValueError, ImportError, AttributeError, TypeError: If the setting names no
            loss; the message names the setting.
    """
    return resolve_loss(manifest.scoring, folder=_folder(manifest))


def model_builder(manifest: Manifest) -> Callable[[], nn.Module]:
    """A function that builds a fresh model with the manifest's factory and kwargs.

    Returns:
        The builder; it raises :class:`TypeError` when the factory returns something
        other than a :class:`torch.nn.Module`.

    Raises:
        ImportError, AttributeError, ValueError, TypeError: If the factory cannot be
            imported.
    """
    factory = manifest.model_factory
    fn = (
        import_factory(factory, kind="model factory", folder=_folder(manifest))
        if isinstance(factory, str)
        else factory
    )

    def build() -> nn.Module:
        with search_folder(_folder(manifest)):
            model = fn(**manifest.model_kwargs)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"the model factory returned a {type(model).__name__}, not a torch.nn.Module"
            )
        return model

    return build


def scoring_device(name: str, env: Mapping[str, str] | None = None) -> torch.device:
    """The device to score on; a bare ``"cuda"`` under ``torchrun`` means this rank's GPU.

    Several processes can score one manifest into one store (each task is claimed
    before it is computed), so ``torchrun --nproc-per-node 4 -m flatness score m.toml
    --device cuda`` spreads a sweep over four GPUs: each process takes
    ``cuda:$LOCAL_RANK``.

    Args:
        name: The device's name (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        env: The environment to read ``LOCAL_RANK`` from (default ``os.environ``).

    Returns:
        The device.

    Examples:
        >>> r = {"LOCAL_RANK": "3"}
        >>> scoring_device("cuda", r), scoring_device("cuda:1", r), scoring_device("cpu", r)
        (device(type='cuda', index=3), device(type='cuda', index=1), device(type='cpu'))
    """
    env = os.environ if env is None else env
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in env:
        return torch.device("cuda", int(env["LOCAL_RANK"]))
    return device


def scoring_dtype(manifest: Manifest) -> torch.dtype:
    """The precision of ``[scoring] dtype``.

    Returns:
        The torch dtype it names (``torch.float32`` for ``"float32"``).

    Examples:
        >>> scoring_dtype(Manifest("m:f", "mnist1d", runs=(), scoring={"dtype": "bfloat16"}))
        torch.bfloat16
    """
    return getattr(torch, str(manifest.scoring["dtype"]))  # type: ignore[no-any-return]


def training_subset(data: ScoringData, examples: int | str | None, seed: int) -> DataSplit:
    """The fixed, seeded subset of ``examples`` training examples (all when ``None``/``"all"``).

    Args:
        data: The data set.
        examples: How many training examples to keep.
        seed: Seeds the choice.

    Returns:
        The kept examples in their original order: ``(inputs, targets)``, or a dict of
        tensors; a list of batches is returned whole.

    Raises:
        ValueError: If a subset of a list of batches is asked for.

    Examples:
        >>> X, y = torch.arange(10.0).reshape(10, 1), torch.zeros(10, dtype=torch.long)
        >>> d = coerce_data(((X, y), (X, y)), name="toy", settings={})
        >>> training_subset(d, 3, seed=0)[0].flatten().tolist()
        [1.0, 4.0, 7.0]
    """
    split: DataSplit = data.train
    n = split_examples(split)
    if examples is None or examples == "all" or int(examples) >= n:
        return split
    if isinstance(split, list):
        raise ValueError(
            f"[scoring] examples = {examples}: the data factory {data.name!r} returns a list "
            f"of {n} examples in batches, which are scored whole; leave examples unset or "
            '"all", or return (X, y) tensors or a dict of tensors to draw a subset from'
        )
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(n, generator=gen)[: int(examples)].sort().values
    if isinstance(split, dict):
        return {k: v[idx] for k, v in split.items()}
    x, y = split
    return x[idx], y[idx]


def scoring_objective(
    manifest: ManifestLike,
    checkpoint: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
) -> Objective:
    """The objective a manifest's measures are computed on, for one checkpoint.

    The same model (with BatchNorm statistics recomputed when ``[scoring]
    recompute_batchnorm`` asks), the same seeded subset of ``[scoring] examples``
    training examples, loss, batch size, device and dtype as :func:`flatness.score`
    uses, so a number computed on it can be set beside the stored ones (an analysis of
    a store's checkpoints, for example).

    Args:
        manifest: A manifest file, a :class:`~flatness.pipeline.manifest.Manifest` or
            a parsed manifest dictionary.
        checkpoint: The checkpoint file.
        trust_pickle: Allow a checkpoint that needs full unpickling (trusted files only).

    Returns:
        The objective.

    Raises:
        flatness.pipeline.CheckpointError: If the checkpoint cannot be read or does not
            fit the model.
    """
    man = as_manifest(manifest)
    scoring = man.scoring
    device = scoring_device(scoring["device"])
    dtype = scoring_dtype(man)
    data = manifest_data(man)
    model = load_into(model_builder(man)(), load_checkpoint(checkpoint, trust_pickle=trust_pickle))
    model = model.to(device=device, dtype=dtype)
    bs = int(scoring["batch_size"])
    subset = objective_data(training_subset(data, scoring["examples"], scoring["seed"]), bs)
    if scoring["recompute_batchnorm"]:
        recompute_batchnorm(model, subset, batch_size=bs, inplace=True)
    return Objective(
        model,
        subset,
        batch_size=bs,
        device=device,
        dtype=dtype,
        **scoring_loss(man).objective_kwargs(),
    )
