"""Post-hoc scoring: checkpoints, manifests, the results store and :func:`score`.

Only this wing (and the command line) knows about files: it reads checkpoints
safely, builds the objective a manifest describes, runs the curvature and sharpness
estimators on it, and keeps every result in a resumable SQLite store.
"""

from flatness.pipeline.checkpoints import (
    Checkpoint,
    CheckpointError,
    file_sha256,
    load_checkpoint,
    load_into,
)
from flatness.pipeline.manifest import (
    Manifest,
    ManifestError,
    PairSpec,
    RunSpec,
    read_manifest,
)
from flatness.pipeline.measures import MEASURES, Measure, Record
from flatness.pipeline.scoring import (
    ScoreSummary,
    score,
    scoring_objective,
    summary_table,
    training_subset,
)
from flatness.pipeline.store import (
    ResultsStore,
    export_results,
    load_curves,
    load_failed_tasks,
    load_info,
    load_results,
    load_runs,
)

__all__ = [
    # checkpoints
    "Checkpoint",
    "CheckpointError",
    "file_sha256",
    "load_checkpoint",
    "load_into",
    # manifests and measures
    "MEASURES",
    "Manifest",
    "ManifestError",
    "Measure",
    "PairSpec",
    "Record",
    "RunSpec",
    "read_manifest",
    # scoring and the store
    "ResultsStore",
    "ScoreSummary",
    "export_results",
    "load_curves",
    "load_results",
    "load_failed_tasks",
    "load_info",
    "load_runs",
    "score",
    "scoring_objective",
    "summary_table",
    "training_subset",
]
