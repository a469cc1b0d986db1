"""Post-hoc scoring: checkpoints, manifests, the results store and :func:`score`.

Only this wing (and the command line) knows about files: it reads checkpoints
safely, builds the objective a manifest describes, runs the curvature and sharpness
estimators on it, and keeps every result in a resumable SQLite store. The modules
follow the flow of the data:

- :mod:`~flatness.pipeline.checkpoints` -- reading checkpoint files safely;
- :mod:`~flatness.pipeline.manifest` -- reading and validating a manifest;
  :mod:`~flatness.pipeline.scoring_settings` -- its ``[scoring]`` table;
  :mod:`~flatness.pipeline.named_losses` -- the loss it names;
  :mod:`~flatness.pipeline.groups` -- the parameter groups it scores one by one;
- :mod:`~flatness.pipeline.measures` -- the measures a manifest may name (built-in and
  registered with :func:`register_measure`); :mod:`~flatness.pipeline.measure_tasks` --
  one measure's settings, the tasks they expand into and one task's rows;
  :mod:`~flatness.pipeline.task_plan` -- a manifest's tasks, through the registry;
- :mod:`~flatness.pipeline.objective_setup` -- the objective a manifest describes;
  :mod:`~flatness.pipeline.run_setup` -- one checkpoint made ready for its tasks (its
  loss and accuracy, the BatchNorm check, the objectives of its parameter groups);
- :mod:`~flatness.pipeline.scoring`, :mod:`~flatness.pipeline.scorer` -- :func:`score`
  and the per-checkpoint work (claims, tasks, pairs);
- :mod:`~flatness.pipeline.store`, :mod:`~flatness.pipeline.schema`,
  :mod:`~flatness.pipeline.readers` -- writing the results store (its tables) and
  reading it into pandas; :mod:`~flatness.pipeline.claims`,
  :mod:`~flatness.pipeline.heartbeat` -- processes sharing a store (task claims,
  heartbeats, the objective); :mod:`~flatness.pipeline.database` -- opening the
  SQLite file, waiting out locks and full disks, one clear error per failure;
- :mod:`~flatness.pipeline.summary` -- the table ``flatness score`` prints;
  :mod:`~flatness.pipeline.progress` -- its progress bars.
"""

from flatness.pipeline.checkpoints import (
    Checkpoint,
    CheckpointError,
    file_sha256,
    load_checkpoint,
    load_into,
)
from flatness.pipeline.database import StoreError, check_store
from flatness.pipeline.groups import GroupError
from flatness.pipeline.manifest import (
    Manifest,
    ManifestError,
    PairSpec,
    RunSpec,
    read_manifest,
)
from flatness.pipeline.measures import (
    MEASURES,
    Measure,
    MeasureValue,
    Record,
    register_measure,
)
from flatness.pipeline.named_losses import BUILT_IN_LOSSES
from flatness.pipeline.objective_setup import (
    scoring_device,
    scoring_objective,
    training_subset,
)
from flatness.pipeline.readers import (
    export_results,
    load_curves,
    load_failed_tasks,
    load_info,
    load_results,
    load_runs,
)
from flatness.pipeline.scoring import ScoreSummary, score
from flatness.pipeline.scoring_settings import SettingError
from flatness.pipeline.store import ResultsStore
from flatness.pipeline.summary import summary_table

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
    "MeasureValue",
    "PairSpec",
    "Record",
    "RunSpec",
    "read_manifest",
    "register_measure",
    "BUILT_IN_LOSSES",
    "GroupError",
    "SettingError",
    # scoring and the store
    "ResultsStore",
    "ScoreSummary",
    "StoreError",
    "check_store",
    "export_results",
    "load_curves",
    "load_results",
    "load_failed_tasks",
    "load_info",
    "load_runs",
    "score",
    "scoring_device",
    "scoring_objective",
    "summary_table",
    "training_subset",
]
